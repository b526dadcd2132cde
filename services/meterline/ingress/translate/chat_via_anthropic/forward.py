"""A Chat Completions request sent to an Anthropic provider, answered in Chat Completions:
the request is translated before it leaves, the answer (whole, streamed or an error) on its
way back, and the usage is read from the provider's own answer."""

from __future__ import annotations

from typing import Any

from starlette.responses import Response

from meterline.ingress.metering import RequestRecord
from meterline.ingress.providers.anthropic_wire import AnthropicDialect, messages_path
from meterline.ingress.providers.openai_wire import OpenAIDialect
from meterline.ingress.providers.upstream import Upstream
from meterline.ingress.routing import Route
from meterline.ingress.sse import dumps
from meterline.ingress.translate.chat_via_anthropic.stream import ChatStreamFromAnthropic
from meterline.ingress.translate.chat_via_anthropic.translation import (
    ANTHROPIC_VERSION,
    messages_request,
    translate_answer,
)


class ChatFromAnthropicDialect(AnthropicDialect):
    """Anthropic's answers and usage, the gateway's own errors in OpenAI's format."""

    _openai = OpenAIDialect()

    def error_body(self, status: int, message: str, code: str) -> bytes:
        return self._openai.error_body(status, message, code)

    def stream_error(self, message: str, code: str) -> bytes:
        return self._openai.stream_error(message, code)


_DIALECT = ChatFromAnthropicDialect()


async def chat_via_anthropic(
    upstream: Upstream, route: Route, chat: dict[str, Any], record: RequestRecord
) -> Response:
    """Forward one Chat Completions request (``providerOptions`` already taken out) to the
    Anthropic provider of ``route``."""
    body = messages_request(chat, route.model)
    options = chat.get("stream_options")
    include_usage = isinstance(options, dict) and options.get("include_usage") is True
    headers = {"content-type": "application/json", "anthropic-version": ANTHROPIC_VERSION}
    if route.credential.api_key:
        headers["x-api-key"] = route.credential.api_key

    def scanner() -> ChatStreamFromAnthropic:
        return ChatStreamFromAnthropic(include_usage=include_usage)

    return await upstream.forward(
        route.provider,
        upstream.endpoint(route.provider, messages_path(route.provider)),
        headers,
        dumps(body),
        record,
        _DIALECT,
        scanner,
        translate_answer,
    )
