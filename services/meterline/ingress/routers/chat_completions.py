"""``POST /v1/chat/completions``: OpenAI Chat Completions, whole or streamed, to providers
speaking the OpenAI wire and, translated (``translate/``), to Anthropic providers.

The request may go to several routes in turn (``routing.py``: ``order``, ``only``, fallback
``models``, BYOK keys before the system key); the event names the route that answered."""

from __future__ import annotations

import time
from datetime import UTC, datetime

from fastapi import APIRouter, Request
from starlette.responses import Response

from meterline.ingress.deps import authenticate, gateway_of, read_json_object
from meterline.ingress.errors import BadRequest
from meterline.ingress.metering import RequestRecord
from meterline.ingress.routing import Route, first_success
from meterline.ingress.tagging import take_options
from meterline.ingress.translate.wire import chat_via_anthropic

router = APIRouter()


async def chat_completions(request: Request) -> Response:
    # Both clocks first, so the duration includes reading the body. perf_counter for
    # durations: the wall clock may jump.
    started_at, started = datetime.now(UTC), time.perf_counter()
    gateway = gateway_of(request)
    caller = authenticate(request, gateway)
    body = await read_json_object(request, gateway.settings.max_request_body_bytes)
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise BadRequest("model is required: a string 'provider/model'", param="model")
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise BadRequest("messages is required: a non-empty array", param="messages")
    stream = body.get("stream", False)
    if not isinstance(stream, bool):
        raise BadRequest("stream must be a boolean", param="stream")
    attribution, options = take_options(body, request.headers)
    routes = gateway.completions_router.plan(model, options, caller.team)
    first = routes[0]
    record = RequestRecord(
        team_id=caller.team.id,
        api_key_name=caller.key_name,
        api_surface="chat_completions",
        model_requested=model,
        model=first.model,
        provider=first.provider.slug,
        credential_type=first.credential.type,
        streamed=stream,
        user_id=attribution.user,
        tags=attribution.tags,
        started_at=started_at,
        started=started,
    )

    async def send(route: Route) -> Response:
        if route.provider.wire == "anthropic":
            return await chat_via_anthropic(gateway.upstream, route, body, record)
        # The OpenAI wire changes the body in place (model, stream options): each attempt
        # gets its own copy.
        return await gateway.openai.chat_completions(route, dict(body), record)

    if len(routes) == 1:
        return await send(first)
    return await first_success(routes, record, send)


# A plain Starlette route: no request-model validation or dependency resolution on the hot
# path (see deps.py).
router.add_route("/v1/chat/completions", chat_completions, methods=["POST"])
