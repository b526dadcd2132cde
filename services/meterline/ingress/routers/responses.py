"""``POST /v1/responses``: the OpenAI Responses API (also what OpenResponses clients speak),
whole or streamed, to providers speaking the OpenAI wire.

Routing options and BYOK keys (``providerOptions.gateway``) work as for Chat Completions
(``routing.py``); the event names the route that answered."""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.responses import Response

from meterline.ingress.errors import BadRequest
from meterline.ingress.routers.call import answer, begin, streamed
from meterline.ingress.routing import Route
from meterline.ingress.tagging import take_options

router = APIRouter()


async def responses(request: Request) -> Response:
    call = await begin(request)
    body = call.body
    # ``input`` may be left out (a stored prompt or a previous response can stand for it),
    # so only its type is checked; the provider judges the rest.
    items = body.get("input")
    if items is not None and not isinstance(items, str | list):
        raise BadRequest("input must be a string or an array of input items", param="input")
    stream = streamed(body)
    attribution, options = take_options(body, request.headers)
    gateway = call.gateway
    routes = gateway.responses_router.plan(call.model, options, call.caller.team)
    record = call.record("responses", routes, attribution, stream)

    async def send(route: Route) -> Response:
        # The wire sets the model in the body: each attempt gets its own copy.
        return await gateway.openai.responses(route, dict(body), record)

    return await answer(call, routes, record, send)


# A plain Starlette route, as for Chat Completions (see deps.py).
router.add_route("/v1/responses", responses, methods=["POST"])
