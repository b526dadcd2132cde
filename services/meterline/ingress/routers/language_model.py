"""``POST /v3/ai/language-model``: the protocol of the AI SDK's gateway provider
(``@ai-sdk/gateway``, which a plain model string such as ``'anthropic/claude-sonnet-4.6'``
goes through), whole or streamed, to providers of both wires, each translated
(``translate/language_model_via_openai``, ``translate/language_model_via_anthropic``; the
protocol: ``translate/language_model.py``).

The SDK sends the gateway key as ``Authorization: Bearer``, the model as
``ai-language-model-id``, whether to stream as ``ai-language-model-streaming`` and its
interface version as ``ai-language-model-specification-version`` (only 3 is spoken); the
body is its call options. User, tags, routing options and BYOK keys come from
``providerOptions.gateway`` and the tag headers, as on every surface (``tagging.py``,
``routing.py``). Errors are in the protocol's format (``errors.py`` picks it by path), so
the SDK raises its own classes: a bad key ``GatewayAuthenticationError``, a model no
provider serves ``GatewayModelNotFoundError`` ...

The other model kinds the provider can call (embeddings, images, video, reranking, speech,
transcription) are answered with a 400 that says so."""

from __future__ import annotations

from typing import Final

from fastapi import APIRouter, Request
from starlette.responses import Response

from meterline.ingress.deps import authenticate, gateway_of
from meterline.ingress.errors import BadRequest, NoSuchModel
from meterline.ingress.routers.call import answer, begin
from meterline.ingress.routing import Route
from meterline.ingress.tagging import take_options
from meterline.ingress.translate.language_model import SPECIFICATION_VERSION
from meterline.ingress.translate.language_model_via_anthropic.forward import (
    language_model_via_anthropic,
)
from meterline.ingress.translate.language_model_via_openai.forward import (
    language_model_via_openai,
)

router = APIRouter()

BASE: Final = "/v3/ai"
MODEL_HEADER: Final = "ai-language-model-id"
STREAMING_HEADER: Final = "ai-language-model-streaming"
VERSION_HEADER: Final = "ai-language-model-specification-version"

OTHER_MODEL_KINDS: Final = {
    "embedding-model": "embedding",
    "image-model": "image",
    "video-model": "video",
    "reranking-model": "reranking",
    "speech-model": "speech",
    "transcription-model": "transcription",
}


def _streamed(request: Request) -> bool:
    value = request.headers.get(STREAMING_HEADER, "false").strip().lower()
    if value not in ("true", "false"):
        raise BadRequest(f"{STREAMING_HEADER} must be true or false", param=STREAMING_HEADER)
    return value == "true"


async def language_model(request: Request) -> Response:
    call = await begin(request, model_header=MODEL_HEADER)
    version = request.headers.get(VERSION_HEADER, "").strip()
    if version != SPECIFICATION_VERSION:
        raise BadRequest(
            f"{VERSION_HEADER}: only version {SPECIFICATION_VERSION} of the language model "
            f"specification is supported (got {version[:16]!r})",
            param=VERSION_HEADER,
        )
    stream = _streamed(request)
    body = call.body
    if not isinstance(body.get("prompt"), list) or not body["prompt"]:
        raise BadRequest("prompt is required: a non-empty array of messages", param="prompt")
    # A copy: take_options removes providerOptions, and the translations still read the
    # ``openai`` and ``anthropic`` entries of it. No part of the body goes upstream as it is.
    attribution, options = take_options(dict(body), request.headers, standard_user=False)
    gateway = call.gateway
    try:
        routes = gateway.language_model_router.plan(call.model, options, call.caller.team)
    except BadRequest as error:
        if error.code == "model_not_found" and error.param == "model":
            raise NoSuchModel(error.message, call.model) from None
        raise
    record = call.record("language_model", routes, attribution, stream)

    async def send(route: Route) -> Response:
        if route.provider.wire == "anthropic":
            return await language_model_via_anthropic(gateway.upstream, route, body, record)
        return await language_model_via_openai(gateway.upstream, route, body, record)

    return await answer(call, routes, record, send)


async def other_model_kind(request: Request) -> Response:
    authenticate(request, gateway_of(request))
    kind = OTHER_MODEL_KINDS[request.url.path.rsplit("/", 1)[-1]]
    raise BadRequest(
        f"{kind} models are not supported by this gateway: it meters language models "
        f"(POST {BASE}/language-model) only",
        code="unsupported_model_type",
    )


# Plain Starlette routes, as for the other surfaces (see deps.py).
router.add_route(f"{BASE}/language-model", language_model, methods=["POST"])
for _path in OTHER_MODEL_KINDS:
    router.add_route(f"{BASE}/{_path}", other_model_kind, methods=["POST"])
