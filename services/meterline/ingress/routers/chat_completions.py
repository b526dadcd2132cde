"""``POST /v1/chat/completions``: OpenAI Chat Completions, whole or streamed, to providers
speaking the OpenAI wire and, translated (``translate/``), to Anthropic providers.

The request may go to several routes in turn (``routing.py``: ``order``, ``only``, fallback
``models``, BYOK keys before the system key); the event names the route that answered."""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.responses import Response

from meterline.ingress.errors import BadRequest
from meterline.ingress.routers.call import answer, begin, streamed
from meterline.ingress.routing import Route
from meterline.ingress.tagging import take_options
from meterline.ingress.translate.chat_via_anthropic.forward import chat_via_anthropic

router = APIRouter()


async def chat_completions(request: Request) -> Response:
    call = await begin(request)
    body = call.body
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise BadRequest("messages is required: a non-empty array", param="messages")
    stream = streamed(body)
    attribution, options = take_options(body, request.headers)
    gateway = call.gateway
    routes = gateway.completions_router.plan(call.model, options, call.caller.team)
    record = call.record("chat_completions", routes, attribution, stream)

    async def send(route: Route) -> Response:
        if route.provider.wire == "anthropic":
            return await chat_via_anthropic(gateway.upstream, route, body, record)
        # The OpenAI wire changes the body in place (model, stream options): each attempt
        # gets its own copy.
        return await gateway.openai.chat_completions(route, dict(body), record)

    return await answer(call, routes, record, send)


# A plain Starlette route: no request-model validation or dependency resolution on the hot
# path (see deps.py).
router.add_route("/v1/chat/completions", chat_completions, methods=["POST"])
