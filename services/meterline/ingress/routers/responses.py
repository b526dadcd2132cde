"""``POST /v1/responses``: the OpenAI Responses API (also what OpenResponses clients speak),
whole or streamed, to providers speaking the OpenAI wire.

Routing options and BYOK keys (``providerOptions.gateway``) work as for Chat Completions
(``routing.py``); the event names the route that answered."""

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

router = APIRouter()


async def responses(request: Request) -> Response:
    started_at, started = datetime.now(UTC), time.perf_counter()
    gateway = gateway_of(request)
    caller = authenticate(request, gateway)
    body = await read_json_object(request, gateway.settings.max_request_body_bytes)
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise BadRequest("model is required: a string 'provider/model'", param="model")
    # ``input`` may be left out (a stored prompt or a previous response can stand for it),
    # so only its type is checked; the provider judges the rest.
    items = body.get("input")
    if items is not None and not isinstance(items, str | list):
        raise BadRequest("input must be a string or an array of input items", param="input")
    stream = body.get("stream", False)
    if not isinstance(stream, bool):
        raise BadRequest("stream must be a boolean", param="stream")
    attribution, options = take_options(body, request.headers)
    routes = gateway.chat_router.plan(model, options, caller.team)
    first = routes[0]
    record = RequestRecord(
        team_id=caller.team.id,
        api_key_name=caller.key_name,
        api_surface="responses",
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
        # The wire sets the model in the body: each attempt gets its own copy.
        return await gateway.openai.responses(route, dict(body), record)

    if len(routes) == 1:
        return await send(first)
    return await first_success(routes, record, send)


# A plain Starlette route, as for Chat Completions (see deps.py).
router.add_route("/v1/responses", responses, methods=["POST"])
