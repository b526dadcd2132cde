"""Forwarding to an Anthropic provider (``wire = "anthropic"``): Messages, whole or streamed.

The provider gets the system key as ``x-api-key`` and the client's ``anthropic-version`` and
``anthropic-beta`` headers (features such as the 1-hour cache are switched on by them). A
stream passes untouched: its input usage (cache reads and writes included) arrives in
``message_start``, its cumulative output count in ``message_delta``, so a stream the client
leaves early is still recorded with the input the provider bills.

Base URLs may be written with or without ``/v1`` (the Anthropic SDK's has none, Anthropic's
documentation often shows it): ``https://api.anthropic.com`` and
``https://api.anthropic.com/v1`` both reach ``https://api.anthropic.com/v1/messages``.
"""

from __future__ import annotations

import re
from typing import Any, Final

from starlette.datastructures import Headers
from starlette.responses import Response

from meterline.common.config import ProviderConfig
from meterline.ingress.errors import anthropic_error_body, anthropic_error_type
from meterline.ingress.metering import RequestRecord
from meterline.ingress.providers.dialect import EventScanner
from meterline.ingress.providers.upstream import Upstream
from meterline.ingress.routing import Route
from meterline.ingress.sse import dumps, typed_event
from meterline.ingress.usage import (
    Usage,
    from_anthropic_usage,
    merge_anthropic_usage,
)

FORWARDED_HEADERS: Final = ("anthropic-version", "anthropic-beta")


class AnthropicDialect:
    """Anthropic's error format (``{"type": "error", "error": {"type", "message"}}``) and
    usage."""

    def error_body(self, status: int, message: str, code: str) -> bytes:
        return anthropic_error_body(status, message)

    def stream_error(self, message: str, code: str) -> bytes:
        # The Anthropic SDK raises an API error for an "error" event.
        status = 504 if code == "upstream_timeout" else 502
        payload = {
            "type": "error",
            "error": {"type": anthropic_error_type(status), "message": message},
        }
        return typed_event(payload)

    def is_error(self, payload: dict[str, Any]) -> bool:
        return payload.get("type") == "error" and isinstance(payload.get("error"), dict)

    def answer(self, payload: dict[str, Any]) -> tuple[Usage | None, str | None]:
        stop_reason = payload.get("stop_reason")
        return (
            from_anthropic_usage(payload.get("usage")),
            stop_reason if isinstance(stop_reason, str) else None,
        )

    def error_type(self, payload: dict[str, Any], default: str) -> str:
        error = payload.get("error")
        kind = error.get("type") if isinstance(error, dict) else None
        return kind if isinstance(kind, str) and kind else default


_WANTED = re.compile(rb'"usage"\s*:\s*\{|"type"\s*:\s*"error"')


class MessagesScanner(EventScanner):
    """A Messages stream: ``message_start`` (input usage), ``message_delta`` (stop reason,
    cumulative usage) and ``error`` events are decoded; the content deltas are not."""

    def __init__(self) -> None:
        super().__init__()
        self._usage: dict[str, Any] = {}

    def wanted(self, block: bytes) -> bool:
        return _WANTED.search(block) is not None

    def handle(self, payload: dict[str, Any]) -> None:
        kind = payload.get("type")
        if kind == "message_start":
            message = payload.get("message")
            usage = message.get("usage") if isinstance(message, dict) else None
            if isinstance(usage, dict):
                self._usage = usage
                self.usage = from_anthropic_usage(usage)
        elif kind == "message_delta":
            usage = payload.get("usage")
            if isinstance(usage, dict):
                self._usage = merge_anthropic_usage(self._usage, usage)
                self.usage = from_anthropic_usage(self._usage)
            delta = payload.get("delta")
            reason = delta.get("stop_reason") if isinstance(delta, dict) else None
            if isinstance(reason, str):
                self.finish_reason = reason
        elif kind == "error":
            self.error_type = AnthropicDialect().error_type(payload, "upstream_stream_error")


class AnthropicWire:
    """Sends Messages requests to Anthropic providers."""

    def __init__(self, upstream: Upstream):
        self._upstream = upstream
        self._dialect = AnthropicDialect()

    async def messages(
        self, route: Route, body: dict[str, Any], headers: Headers, record: RequestRecord
    ) -> Response:
        """Forward one Messages request; ``body`` is the client's, already without
        ``providerOptions``, and is changed in place; ``headers`` are the client's."""
        body["model"] = route.model
        url = self._upstream.endpoint(route.provider, messages_path(route.provider))
        return await self._upstream.forward(
            route.provider,
            url,
            _upstream_headers(route, headers),
            dumps(body),
            record,
            self._dialect,
            MessagesScanner,
        )

    async def count_tokens(self, route: Route, body: dict[str, Any], headers: Headers) -> Response:
        """Forward a token count (``/v1/messages/count_tokens``): free at the provider, so
        not metered."""
        body["model"] = route.model
        path = messages_path(route.provider) + "/count_tokens"
        return await self._upstream.passthrough(
            route.provider,
            self._upstream.endpoint(route.provider, path),
            _upstream_headers(route, headers),
            dumps(body),
            self._dialect,
        )


def _upstream_headers(route: Route, headers: Headers) -> dict[str, str]:
    upstream_headers = {"content-type": "application/json"}
    for name in FORWARDED_HEADERS:
        value = headers.get(name)
        if value:
            upstream_headers[name] = value
    if route.credential.api_key:
        upstream_headers["x-api-key"] = route.credential.api_key
    return upstream_headers


def messages_path(provider: ProviderConfig) -> str:
    return "/messages" if provider.base_url.rstrip("/").endswith("/v1") else "/v1/messages"
