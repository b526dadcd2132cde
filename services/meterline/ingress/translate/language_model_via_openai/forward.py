"""An AI SDK language-model call sent to an OpenAI-compatible provider as Chat Completions,
answered in the protocol: the request is translated before it leaves, the answer (whole,
streamed or an error) on its way back, and the usage is read from the provider's own
answer."""

from __future__ import annotations

from functools import partial
from typing import Any

from starlette.responses import Response

from meterline.ingress.metering import RequestRecord
from meterline.ingress.providers.openai_wire import OpenAIDialect
from meterline.ingress.providers.upstream import Upstream
from meterline.ingress.routing import Route
from meterline.ingress.sse import dumps
from meterline.ingress.translate.language_model import LanguageModelErrors
from meterline.ingress.translate.language_model_via_openai.stream import (
    LanguageModelStreamFromChat,
)
from meterline.ingress.translate.language_model_via_openai.translation import (
    chat_request,
    translate_answer,
)


class LanguageModelFromChatDialect(LanguageModelErrors, OpenAIDialect):
    """OpenAI's answers and usage, the gateway's own errors in the protocol's format."""


_DIALECT = LanguageModelFromChatDialect()


async def language_model_via_openai(
    upstream: Upstream, route: Route, options: dict[str, Any], record: RequestRecord
) -> Response:
    """Forward one call (the SDK's call options) to the OpenAI-compatible provider of
    ``route``."""
    chat, warnings = chat_request(options, route.model, stream=record.streamed)
    headers = {"content-type": "application/json"}
    if route.credential.api_key:
        headers["authorization"] = f"Bearer {route.credential.api_key}"

    def scanner() -> LanguageModelStreamFromChat:
        return LanguageModelStreamFromChat(event_id=record.event_id, warnings=warnings)

    return await upstream.forward(
        route.provider,
        upstream.endpoint(route.provider, "/chat/completions"),
        headers,
        dumps(chat),
        record,
        _DIALECT,
        scanner,
        partial(translate_answer, event_id=record.event_id, warnings=warnings),
    )
