"""An AI SDK language-model call sent to an Anthropic provider as Messages, answered in the
protocol: the request is translated before it leaves, the answer (whole, streamed or an
error) on its way back, and the usage is read from the provider's own answer."""

from __future__ import annotations

from functools import partial
from typing import Any

from starlette.responses import Response

from meterline.ingress.metering import RequestRecord
from meterline.ingress.providers.anthropic_wire import AnthropicDialect, messages_path
from meterline.ingress.providers.upstream import Upstream
from meterline.ingress.routing import Route
from meterline.ingress.sse import dumps
from meterline.ingress.translate.chat_via_anthropic.translation import ANTHROPIC_VERSION
from meterline.ingress.translate.language_model import LanguageModelErrors
from meterline.ingress.translate.language_model_via_anthropic.stream import (
    LanguageModelStreamFromAnthropic,
)
from meterline.ingress.translate.language_model_via_anthropic.translation import (
    messages_request,
    translate_answer,
)


class LanguageModelFromAnthropicDialect(LanguageModelErrors, AnthropicDialect):
    """Anthropic's answers and usage, the gateway's own errors in the protocol's format."""


_DIALECT = LanguageModelFromAnthropicDialect()


async def language_model_via_anthropic(
    upstream: Upstream, route: Route, options: dict[str, Any], record: RequestRecord
) -> Response:
    """Forward one call (the SDK's call options) to the Anthropic provider of ``route``."""
    body, warnings = messages_request(options, route.model, stream=record.streamed)
    headers = {"content-type": "application/json", "anthropic-version": ANTHROPIC_VERSION}
    if route.credential.api_key:
        headers["x-api-key"] = route.credential.api_key

    def scanner() -> LanguageModelStreamFromAnthropic:
        return LanguageModelStreamFromAnthropic(event_id=record.event_id, warnings=warnings)

    return await upstream.forward(
        route.provider,
        upstream.endpoint(route.provider, messages_path(route.provider)),
        headers,
        dumps(body),
        record,
        _DIALECT,
        scanner,
        partial(translate_answer, event_id=record.event_id, warnings=warnings),
    )
