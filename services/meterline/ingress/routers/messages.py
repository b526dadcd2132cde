"""``POST /v1/messages``: the Anthropic Messages API, whole or streamed.

Every error on this surface is in Anthropic's format (``errors.py`` picks it by path). The
gateway key is accepted as ``x-api-key`` (what the Anthropic SDK sends) or as
``Authorization: Bearer``. The end user comes from the gateway's own sources first
(``tagging.py``), then from Anthropic's ``metadata.user_id``. Routing options and BYOK keys
(``providerOptions.gateway``) work as for Chat Completions (``routing.py``)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.responses import Response

from meterline.common.events import MAX_USER_LENGTH
from meterline.ingress.deps import Caller, Gateway, authenticate
from meterline.ingress.errors import BadRequest, Unauthorized
from meterline.ingress.routers.call import answer, begin, streamed
from meterline.ingress.routing import Route
from meterline.ingress.tagging import Attribution, take_options
from meterline.ingress.translate.messages_via_openai.forward import messages_via_openai

router = APIRouter()


def authenticate_anthropic(request: Request, gateway: Gateway) -> Caller:
    token = request.headers.get("x-api-key", "").strip()
    if not token:
        return authenticate(request, gateway)
    found = gateway.keys.authenticate(token)
    if found is None:
        raise Unauthorized("incorrect gateway key", code="invalid_api_key")
    team, key = found
    return Caller(team, key.name)


def metadata_user(body: dict[str, object], attribution: Attribution) -> Attribution:
    if attribution.user is not None:
        return attribution
    metadata = body.get("metadata")
    user = metadata.get("user_id") if isinstance(metadata, dict) else None
    if user is None or user == "":
        return attribution
    if not isinstance(user, str):
        raise BadRequest("metadata.user_id must be a string", param="metadata.user_id")
    if len(user) > MAX_USER_LENGTH:
        raise BadRequest(
            f"metadata.user_id is {len(user)} characters long; the limit is {MAX_USER_LENGTH}",
            param="metadata.user_id",
        )
    return Attribution(user, attribution.tags)


async def messages(request: Request) -> Response:
    call = await begin(request, authenticate_anthropic, anthropic=True)
    body = call.body
    history = body.get("messages")
    if not isinstance(history, list) or not history:
        raise BadRequest("messages: a non-empty array is required", param="messages")
    stream = streamed(body, anthropic=True)
    attribution, options = take_options(body, request.headers, standard_user=False)
    attribution = metadata_user(body, attribution)
    gateway = call.gateway
    routes = gateway.messages_router.plan(call.model, options, call.caller.team)
    record = call.record("messages", routes, attribution, stream)

    async def send(route: Route) -> Response:
        if route.provider.wire == "openai":
            return await messages_via_openai(gateway.upstream, route, body, record)
        # The wire sets the model in the body: each attempt gets its own copy.
        return await gateway.anthropic.messages(route, dict(body), request.headers, record)

    return await answer(call, routes, record, send)


async def count_tokens(request: Request) -> Response:
    """``POST /v1/messages/count_tokens``: answered by the model's provider (its first route,
    with that route's credential), not metered: providers do not bill it."""
    call = await begin(request, authenticate_anthropic, anthropic=True)
    _, options = take_options(call.body, request.headers, standard_user=False)
    route = call.gateway.messages_router.plan(call.model, options, call.caller.team)[0]
    if route.provider.wire != "anthropic":
        raise BadRequest(
            f"model: provider {route.provider.slug!r} speaks the {route.provider.wire} wire "
            "format, which has no token counting endpoint",
            param="model",
        )
    return await call.gateway.anthropic.count_tokens(route, call.body, request.headers)


router.add_route("/v1/messages", messages, methods=["POST"])
router.add_route("/v1/messages/count_tokens", count_tokens, methods=["POST"])
