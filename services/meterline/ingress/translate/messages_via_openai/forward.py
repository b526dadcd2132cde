"""A Messages request sent to an OpenAI-compatible provider, answered in Messages: the
request is translated before it leaves, the answer (whole, streamed or an error) on its way
back, and the usage is read from the provider's own answer."""

from __future__ import annotations

from typing import Any

from starlette.responses import Response

from meterline.ingress.metering import RequestRecord
from meterline.ingress.providers.anthropic_wire import AnthropicDialect
from meterline.ingress.providers.openai_wire import OpenAIDialect
from meterline.ingress.providers.upstream import Upstream
from meterline.ingress.routing import Route
from meterline.ingress.sse import dumps
from meterline.ingress.translate.messages_via_openai.stream import MessagesStreamFromChat
from meterline.ingress.translate.messages_via_openai.translation import (
    chat_request,
    translate_answer,
)


class MessagesFromChatDialect(OpenAIDialect):
    """OpenAI's answers and usage, the gateway's own errors in Anthropic's format."""

    _anthropic = AnthropicDialect()

    def error_body(self, status: int, message: str, code: str) -> bytes:
        return self._anthropic.error_body(status, message, code)

    def stream_error(self, message: str, code: str) -> bytes:
        return self._anthropic.stream_error(message, code)


_MESSAGES_DIALECT = MessagesFromChatDialect()


async def messages_via_openai(
    upstream: Upstream, route: Route, body: dict[str, Any], record: RequestRecord
) -> Response:
    """Forward one Messages request (``providerOptions`` already taken out) to the
    OpenAI-compatible provider of ``route``."""
    chat = chat_request(body, route.model)
    headers = {"content-type": "application/json"}
    if route.credential.api_key:
        headers["authorization"] = f"Bearer {route.credential.api_key}"
    return await upstream.forward(
        route.provider,
        upstream.endpoint(route.provider, "/chat/completions"),
        headers,
        dumps(chat),
        record,
        _MESSAGES_DIALECT,
        MessagesStreamFromChat,
        translate_answer,
    )
