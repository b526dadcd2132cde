"""Forwarding to an OpenAI-compatible provider (``wire = "openai"``): Chat Completions and
Responses, whole or streamed (server-sent events).

Streams pass through as the provider's bytes. The gateway needs the usage of every stream.
Chat Completions reports it only when asked, so the gateway always asks for
``stream_options.include_usage``; when the client did not ask for it itself, the usage-only
chunk (and the ``"usage": null`` OpenAI then adds to every other chunk) is taken out again,
so the client sees what it would have seen without the gateway. A Responses stream always
ends with the whole ``response`` and its usage (``response.completed``, or
``response.incomplete`` / ``response.failed``), so it passes untouched. Usage is read from
the stream as it passes, one event at a time, never by buffering the whole stream.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from starlette.responses import Response

from meterline.ingress.errors import error_body
from meterline.ingress.metering import RequestRecord
from meterline.ingress.providers.dialect import EventScanner, StreamScanner
from meterline.ingress.providers.upstream import Upstream
from meterline.ingress.routing import Route
from meterline.ingress.sse import Splitter, data_event, dumps, event_data, events
from meterline.ingress.usage import (
    Usage,
    first_finish_reason,
    from_openai_usage,
    from_responses_usage,
)

# Events worth decoding: a usage object, a finish reason, or an error. Everything else (the
# token deltas, nearly every event) passes after a few searches for literals. Three
# patterns that each start with a literal are several times faster than one alternation.
_USAGE_OBJECT = re.compile(rb'"usage"\s*:\s*\{')
_FINISH_REASON = re.compile(rb'"finish_reason"\s*:\s*"')
_ERROR = re.compile(rb'^data:\s*\{\s*"error"\s*:', re.MULTILINE)
_NULL_USAGE = re.compile(rb',\s*"usage"\s*:\s*null(?=\s*[,}])|"usage"\s*:\s*null\s*,\s*')


class SseScanner:
    """Follows an SSE byte stream chunk by chunk and records usage, finish reason and
    errors. With ``hide_usage`` it also rewrites the stream: it holds back incomplete
    events (one provider write is nearly always whole events, so this rarely delays a
    byte) and removes the usage the client did not ask for."""

    def __init__(self, *, hide_usage: bool):
        self.hide_usage = hide_usage
        self.usage: Usage | None = None
        self.finish_reason: str | None = None
        self.error_type: str | None = None
        self._events = Splitter(hold=hide_usage)

    def feed(self, chunk: bytes) -> bytes:
        """The bytes to send on to the client now."""
        block = self._events.feed(chunk)
        scanned = self._scan(block) if block else b""
        return scanned if self.hide_usage else chunk

    def finish(self) -> bytes:
        """The end of the stream: whatever was held back, scanned as a last event."""
        rest = self._events.finish()
        if not rest:
            return b""
        scanned = self._scan(rest)
        return scanned if self.hide_usage else b""

    def _scan(self, block: bytes) -> bytes:
        if _interesting(block):
            block = b"".join(self._event(event) for event in events(block))
        if self.hide_usage and b'"usage"' in block:
            # The compact form first: a plain replace is many times faster than the regex,
            # which is left for spaced JSON.
            block = block.replace(b',"usage":null', b"")
            if b'"usage"' in block:
                block = _NULL_USAGE.sub(b"", block)
        return block

    def _event(self, event: bytes) -> bytes:
        if not _interesting(event):
            return event
        payload = event_data(event)
        if payload is None:
            return event
        error = payload.get("error")
        if isinstance(error, dict):
            self.error_type = _error_type(error, "upstream_stream_error")
        usage = from_openai_usage(payload.get("usage"))
        if usage is not None:
            self.usage = usage
        self.finish_reason = first_finish_reason(payload) or self.finish_reason
        if usage is None or not self.hide_usage:
            return event
        if not payload.get("choices"):
            return b""  # the usage-only chunk the gateway asked for on its own behalf
        # A provider that puts usage on a content chunk: keep the content, drop the usage.
        del payload["usage"]
        return data_event(payload)


class OpenAIDialect:
    """OpenAI's error format and usage, for Chat Completions and Responses alike."""

    def error_body(self, status: int, message: str, code: str) -> bytes:
        return error_body(message, "upstream_error", code=code)

    def stream_error(self, message: str, code: str) -> bytes:
        # The OpenAI SDKs raise an APIError for a data event with an "error" object.
        return b"data: " + error_body(message, "upstream_error", code=code) + b"\n\n"

    def is_error(self, payload: dict[str, Any]) -> bool:
        return isinstance(payload.get("error"), dict)

    def answer(self, payload: dict[str, Any]) -> tuple[Usage | None, str | None]:
        return from_openai_usage(payload.get("usage")), first_finish_reason(payload)

    def error_type(self, payload: dict[str, Any], default: str) -> str:
        error = payload.get("error")
        return _error_type(error if isinstance(error, dict) else {}, default)


class ResponsesDialect(OpenAIDialect):
    def answer(self, payload: dict[str, Any]) -> tuple[Usage | None, str | None]:
        return from_responses_usage(payload.get("usage")), responses_finish_reason(payload)


def responses_finish_reason(response: dict[str, Any]) -> str | None:
    """Why a ``response`` ended: the reason it is incomplete (``max_output_tokens``,
    ``content_filter``), else its status (``completed``, ``failed``)."""
    details = response.get("incomplete_details")
    if isinstance(details, dict) and isinstance(details.get("reason"), str):
        reason: str = details["reason"]
        return reason
    status = response.get("status")
    return status if isinstance(status, str) else None


_RESPONSES_WANTED = re.compile(
    rb'"usage"\s*:\s*\{|"type"\s*:\s*"(?:error|response\.failed|response\.incomplete)"'
)


class ResponsesScanner(EventScanner):
    """A Responses stream: the final ``response`` (with usage) arrives in
    ``response.completed``, ``response.incomplete`` or ``response.failed``; a stream may also
    end with an ``error`` event."""

    def wanted(self, block: bytes) -> bool:
        return _RESPONSES_WANTED.search(block) is not None

    def handle(self, payload: dict[str, Any]) -> None:
        kind = payload.get("type")
        if kind == "error":
            nested = payload.get("error")
            error = nested if isinstance(nested, dict) else payload
            self.error_type = _error_type(error, "upstream_stream_error")
            return
        response = payload.get("response")
        if not isinstance(response, dict):
            return
        usage = from_responses_usage(response.get("usage"))
        if usage is not None:
            self.usage = usage
        if kind in ("response.completed", "response.incomplete", "response.failed"):
            self.finish_reason = responses_finish_reason(response)
        if kind == "response.failed":
            failure = response.get("error")
            self.error_type = _error_type(failure if isinstance(failure, dict) else {}, "failed")


class OpenAIWire:
    """Sends requests to OpenAI-compatible providers."""

    def __init__(self, upstream: Upstream):
        self._upstream = upstream
        self._chat = OpenAIDialect()
        self._responses = ResponsesDialect()

    async def chat_completions(
        self, route: Route, body: dict[str, Any], record: RequestRecord
    ) -> Response:
        """Forward one Chat Completions request; ``body`` is the client's, already without
        ``providerOptions``, and is changed in place."""
        hide_usage = False
        if record.streamed:
            options = body.get("stream_options")
            if not (isinstance(options, dict) and options.get("include_usage") is True):
                hide_usage = True
                body["stream_options"] = {
                    **(options if isinstance(options, dict) else {}),
                    "include_usage": True,
                }
        body["model"] = route.model

        def scanner() -> SseScanner:
            return SseScanner(hide_usage=hide_usage)

        return await self._send(route, "/chat/completions", body, record, self._chat, scanner)

    async def responses(
        self, route: Route, body: dict[str, Any], record: RequestRecord
    ) -> Response:
        """Forward one Responses request (``body`` as for ``chat_completions``)."""
        body["model"] = route.model
        return await self._send(
            route, "/responses", body, record, self._responses, ResponsesScanner
        )

    async def _send(
        self,
        route: Route,
        path: str,
        body: dict[str, Any],
        record: RequestRecord,
        dialect: OpenAIDialect,
        scanner: Callable[[], StreamScanner],
    ) -> Response:
        headers = {"content-type": "application/json"}
        if route.credential.api_key:
            headers["authorization"] = f"Bearer {route.credential.api_key}"
        url = self._upstream.endpoint(route.provider, path)
        return await self._upstream.forward(
            route.provider, url, headers, dumps(body), record, dialect, scanner
        )


def _interesting(data: bytes) -> bool:
    return bool(
        _USAGE_OBJECT.search(data)
        or _FINISH_REASON.search(data)
        or (b'"error"' in data and _ERROR.search(data))
    )


def _error_type(error: dict[str, Any], default: str) -> str:
    """``code`` says more than ``type`` where both exist (OpenAI's 429: type "tokens",
    code "rate_limit_exceeded")."""
    for name in ("code", "type"):
        value = error.get(name)
        if isinstance(value, str) and value:
            return value
    return default
