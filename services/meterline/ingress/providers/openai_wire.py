"""Forwarding to an OpenAI-compatible provider (``wire = "openai"``): Chat Completions,
whole or streamed (server-sent events).

Streams pass through as the provider's bytes. The gateway needs the usage of every stream,
so it always asks for ``stream_options.include_usage``; when the client did not ask for it
itself, the usage-only chunk (and the ``"usage": null`` OpenAI then adds to every other
chunk) is taken out again, so the client sees what it would have seen without the gateway.
Usage is read from the stream as it passes, one event at a time, never by buffering the
whole stream.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import AsyncIterator
from functools import partial
from typing import Any, Final

import anyio
import httpx
from starlette.responses import Response

from meterline.common.config import ProviderConfig
from meterline.ingress.errors import error_body, error_response
from meterline.ingress.metering import (
    EVENT_ID_HEADER,
    MeteredResponse,
    MeteredStreamingResponse,
    RequestRecord,
    publish,
)
from meterline.ingress.publisher import UsagePublisher
from meterline.ingress.routing import Route
from meterline.ingress.settings import IngressSettings
from meterline.ingress.usage import Usage, first_finish_reason, from_openai_usage

log = logging.getLogger("meterline.ingress.openai")

PASSED_THROUGH_HEADERS: Final = frozenset({b"retry-after", b"retry-after-ms", b"x-request-id"})
"""Provider response headers the client gets: when to retry, and the provider's request id
for support tickets. Rate-limit headers describe the gateway's shared account, not the
caller's, so they stay behind."""

_EVENT_END = re.compile(rb"\r\n\r\n|\n\n")
# Events worth decoding: a usage object, a finish reason, or an error. Everything else (the
# token deltas, nearly every event) passes after a few searches for literals. Three
# patterns that each start with a literal are several times faster than one alternation.
_USAGE_OBJECT = re.compile(rb'"usage"\s*:\s*\{')
_FINISH_REASON = re.compile(rb'"finish_reason"\s*:\s*"')
_ERROR = re.compile(rb'^data:\s*\{\s*"error"\s*:', re.MULTILINE)
_NULL_USAGE = re.compile(rb',\s*"usage"\s*:\s*null(?=\s*[,}])|"usage"\s*:\s*null\s*,\s*')
_MAX_SCAN_TAIL: Final = 1 << 20
"""Longest unfinished event kept for scanning when nothing has to be rewritten."""


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
        self._tail = b""

    def feed(self, chunk: bytes) -> bytes:
        """The bytes to send on to the client now."""
        data = self._tail + chunk if self._tail else chunk
        end = _last_event_end(data)
        if end == 0:
            if self.hide_usage:
                self._tail = data
                return b""
            # Only scanning: an oversized event is given up on rather than held in memory.
            self._tail = data if len(data) <= _MAX_SCAN_TAIL else b""
            return chunk
        complete, self._tail = data[:end], data[end:]
        scanned = self._scan(complete)
        return scanned if self.hide_usage else chunk

    def finish(self) -> bytes:
        """The end of the stream: whatever was held back, scanned as a last event."""
        rest, self._tail = self._tail, b""
        if not rest:
            return b""
        scanned = self._scan(rest)
        return scanned if self.hide_usage else b""

    def _scan(self, block: bytes) -> bytes:
        if _interesting(block):
            parts: list[bytes] = []
            start = 0
            for match in _EVENT_END.finditer(block):
                parts.append(self._event(block[start : match.end()]))
                start = match.end()
            if start < len(block):
                parts.append(self._event(block[start:]))
            block = b"".join(parts)
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
        payload = _event_data(event)
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
        return b"data: " + _dumps(payload) + b"\n\n"


class SseRelay:
    """One upstream stream on its way to the client; publishes the request's event when
    it ends, however it ends."""

    def __init__(
        self,
        response: httpx.Response,
        record: RequestRecord,
        publisher: UsagePublisher,
        *,
        hide_usage: bool,
    ):
        self._response = response
        self._record = record
        self._publisher = publisher
        self._scanner = SseScanner(hide_usage=hide_usage)
        self._complete = False
        self._transport_error: str | None = None
        self._closed = False

    async def chunks(self) -> AsyncIterator[bytes]:
        try:
            async for chunk in self._response.aiter_bytes():
                if not chunk:
                    continue
                # Time to the first bytes of the answer: the provider sends its first
                # event together with the first token.
                self._record.mark_first_token()
                out = self._scanner.feed(chunk)
                if out:
                    yield out
            rest = self._scanner.finish()
            if rest:
                yield rest
            self._complete = True
        except httpx.TransportError as error:
            # Too late for a status code: the client gets an error event in the stream,
            # which the OpenAI SDKs raise as an APIError.
            timed_out = isinstance(error, httpx.TimeoutException)
            self._transport_error = "upstream_timeout" if timed_out else "upstream_connection_error"
            message = "the provider stopped answering mid-stream"
            body = error_body(message, "upstream_error", code=self._transport_error)
            yield b"data: " + body + b"\n\n"
        finally:
            await self.close()

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            # Shielded: this also runs in a task cancelled because the client went away.
            with anyio.CancelScope(shield=True):
                await self._response.aclose()
        except Exception:
            log.debug("closing the upstream stream failed", exc_info=True)
        scanner = self._scanner
        error_type = self._transport_error or scanner.error_type
        if error_type is not None:
            status = "error"
        elif self._complete:
            status = "success"
        else:
            status = "client_disconnected"
        publish(
            self._publisher,
            self._record.event(
                status=status,
                http_status=self._response.status_code,
                usage=scanner.usage,
                finish_reason=scanner.finish_reason,
                error_type=error_type,
            ),
        )


class OpenAIWire:
    """Sends requests to OpenAI-compatible providers through one shared, pooled client."""

    def __init__(
        self, client: httpx.AsyncClient, settings: IngressSettings, publisher: UsagePublisher
    ):
        self._client = client
        self._settings = settings
        self._publisher = publisher
        self._endpoints: dict[str, tuple[httpx.URL, httpx.Timeout]] = {}

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
        return await self._forward(route, _dumps(body), record, hide_usage=hide_usage)

    async def _forward(
        self, route: Route, content: bytes, record: RequestRecord, *, hide_usage: bool
    ) -> Response:
        headers = {"content-type": "application/json"}
        if record.streamed:
            headers["accept"] = "text/event-stream"
            # Compressed SSE would only cost a decompression on the way through.
            headers["accept-encoding"] = "identity"
        else:
            headers["accept"] = "application/json"
        if route.credential.api_key:
            headers["authorization"] = f"Bearer {route.credential.api_key}"
        url, timeout = self._endpoint(route.provider)
        request = self._client.build_request(
            "POST", url, content=content, headers=headers, timeout=timeout
        )
        slug = route.provider.slug
        try:
            response = await self._client.send(request, stream=True)
        except (httpx.ConnectTimeout, httpx.PoolTimeout):
            # Nothing reached the provider: nothing to bill, so no event either.
            return error_response(
                504,
                f"provider {slug!r} could not be reached in time",
                "upstream_error",
                code="upstream_timeout",
            )
        except httpx.ReadTimeout:
            return self._failed(
                record, 504, f"provider {slug!r} did not answer in time", "upstream_timeout"
            )
        except (httpx.ReadError, httpx.RemoteProtocolError):
            return self._failed(
                record, 502, f"provider {slug!r} closed the connection", "upstream_connection_error"
            )
        except httpx.TransportError as error:
            log.warning("provider %s unreachable: %r", slug, error)
            return error_response(
                502,
                f"provider {slug!r} is unreachable",
                "upstream_error",
                code="upstream_unreachable",
            )

        content_type, client_headers = _response_headers(response, record)
        if record.streamed and response.is_success and content_type.startswith("text/event-stream"):
            relay = SseRelay(response, record, self._publisher, hide_usage=hide_usage)
            stream_headers = client_headers
            stream_headers["cache-control"] = "no-cache"
            # Tell a buffering reverse proxy (nginx) in front of the gateway to let each
            # event through at once.
            stream_headers["x-accel-buffering"] = "no"
            return MeteredStreamingResponse(
                relay, response.status_code, stream_headers, content_type
            )

        try:
            answer = await response.aread()
        except httpx.TimeoutException:
            return self._failed(
                record, 504, f"provider {slug!r} did not answer in time", "upstream_timeout"
            )
        except httpx.TransportError:
            return self._failed(
                record, 502, f"provider {slug!r} closed the connection", "upstream_connection_error"
            )
        finally:
            await response.aclose()

        status = response.status_code
        if not response.is_success and not _is_openai_error(answer):
            # A proxy's HTML page or a bare text error: the SDKs want OpenAI's format.
            text = answer.decode(errors="replace").strip()[:1000]
            answer = error_body(
                f"provider {slug!r} answered {status}: {text}",
                "upstream_error",
                code=f"http_{status}",
            )
            content_type = "application/json"
        return MeteredResponse(
            answer,
            status,
            client_headers,
            content_type or "application/json",
            partial(self._answered, record, status, answer),
        )

    def _answered(self, record: RequestRecord, status: int, answer: bytes, delivered: bool) -> None:
        """After a whole answer was sent: decode it (only now, off the caller's clock) and
        publish the event."""
        try:
            payload = json.loads(answer)
        except ValueError:
            payload = None
        if not isinstance(payload, dict):
            payload = {}
        usage = from_openai_usage(payload.get("usage"))
        if 200 <= status < 300:
            event = record.event(
                status="success" if delivered else "client_disconnected",
                http_status=status,
                usage=usage,
                finish_reason=first_finish_reason(payload),
            )
        else:
            error = payload.get("error")
            event = record.event(
                status="error",
                http_status=status,
                usage=usage,
                error_type=_error_type(error if isinstance(error, dict) else {}, f"http_{status}"),
            )
        publish(self._publisher, event)

    def _failed(
        self, record: RequestRecord, status: int, message: str, error_type: str
    ) -> Response:
        """The provider got the request but the answer was lost: the provider may bill it,
        so it is recorded."""
        return MeteredResponse(
            error_body(message, "upstream_error", code=error_type),
            status,
            {EVENT_ID_HEADER: record.event_id},
            "application/json",
            lambda delivered: publish(
                self._publisher,
                record.event(status="error", http_status=status, error_type=error_type),
            ),
        )

    def _endpoint(self, provider: ProviderConfig) -> tuple[httpx.URL, httpx.Timeout]:
        """The provider's Chat Completions URL and timeouts, built once: httpx would parse
        a URL string again on every request."""
        endpoint = self._endpoints.get(provider.slug)
        if endpoint is None:
            settings = self._settings
            read = settings.upstream_read_timeout_seconds or provider.timeout_seconds
            timeout = httpx.Timeout(
                connect=settings.upstream_connect_timeout_seconds,
                read=read,
                write=read,
                pool=settings.upstream_pool_timeout_seconds,
            )
            url = httpx.URL(provider.base_url.rstrip("/") + "/chat/completions")
            endpoint = self._endpoints[provider.slug] = (url, timeout)
        return endpoint


def _response_headers(
    response: httpx.Response, record: RequestRecord
) -> tuple[str, dict[str, str]]:
    """The provider's content type, and the headers the client gets. One pass over the raw
    headers: each ``httpx.Headers.get`` walks and decodes all of them."""
    content_type = ""
    headers = {EVENT_ID_HEADER: record.event_id}
    for name, value in response.headers.raw:
        lowered = name.lower()
        if lowered == b"content-type":
            content_type = value.decode("latin-1")
        elif lowered in PASSED_THROUGH_HEADERS:
            headers[lowered.decode()] = value.decode("latin-1")
    return content_type, headers


def _interesting(data: bytes) -> bool:
    return bool(
        _USAGE_OBJECT.search(data)
        or _FINISH_REASON.search(data)
        or (b'"error"' in data and _ERROR.search(data))
    )


def _dumps(value: Any) -> bytes:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode()


def _last_event_end(data: bytes) -> int:
    """Where the last complete event in ``data`` ends (0: none is complete). Events end
    with a blank line; OpenAI writes ``\\n\\n``, the SSE specification also allows CRLFs."""
    end = data.rfind(b"\n\n")
    end = end + 2 if end >= 0 else 0
    if b"\r" in data:
        crlf = data.rfind(b"\r\n\r\n")
        if crlf >= 0:
            end = max(end, crlf + 4)
    return end


def _event_data(event: bytes) -> dict[str, Any] | None:
    """The JSON object in an event's ``data:`` lines, if there is one."""
    lines = [
        line[5:].removeprefix(b" ") for line in event.splitlines() if line.startswith(b"data:")
    ]
    if not lines:
        return None
    try:
        payload = json.loads(b"\n".join(lines))
    except ValueError:  # [DONE], or something we only pass along
        return None
    return payload if isinstance(payload, dict) else None


def _is_openai_error(answer: bytes) -> bool:
    try:
        payload = json.loads(answer)
    except ValueError:
        return False
    return isinstance(payload, dict) and isinstance(payload.get("error"), dict)


def _error_type(error: dict[str, Any], default: str) -> str:
    """``code`` says more than ``type`` where both exist (OpenAI's 429: type "tokens",
    code "rate_limit_exceeded")."""
    for name in ("code", "type"):
        value = error.get(name)
        if isinstance(value, str) and value:
            return value
    return default
