"""Forwarding one request to a provider and metering the answer, whatever the wire format.

What differs between wire formats (how errors look, where usage is) is a ``Dialect``; what
a stream carries is read by a ``StreamScanner``. Everything else is the same for every
surface: one pooled client, the timeouts, which failures are recorded (the provider got the
request and may bill it) and which are not (nothing reached it), the event id header, and
publishing after the caller has its answer.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
from collections.abc import AsyncIterator, Callable, Coroutine
from functools import partial
from typing import Any, Final, Protocol

import aiohttp
import anyio
from starlette.responses import Response
from yarl import URL

from meterline.common.config import ProviderConfig
from meterline.ingress.metering import (
    EVENT_ID_HEADER,
    MeteredResponse,
    MeteredStreamingResponse,
    RequestRecord,
    publish,
)
from meterline.ingress.publishing.protocol import UsagePublisher
from meterline.ingress.settings import IngressSettings
from meterline.ingress.transport import (
    ConnectionLost,
    ConnectTimedOut,
    ProviderClient,
    ProviderResponse,
    ReadTimedOut,
    UpstreamError,
    provider_timeout,
)
from meterline.ingress.usage import Usage

log = logging.getLogger("meterline.ingress.upstream")

PASSED_THROUGH_HEADERS: Final = frozenset(
    {b"retry-after", b"retry-after-ms", b"x-request-id", b"request-id"}
)
"""Provider response headers the client gets: when to retry, and the provider's request id
for support tickets (``x-request-id`` from OpenAI, ``request-id`` from Anthropic). Rate-limit
headers describe the gateway's shared account, not the caller's, so they stay behind."""

_EVENT_END = re.compile(rb"\r\n\r\n|\n\n")
MAX_SCAN_TAIL: Final = 1 << 20
"""Longest unfinished event kept for scanning when nothing has to be rewritten."""


class Dialect(Protocol):
    """How one wire format writes errors and usage."""

    def error_body(self, status: int, message: str, code: str) -> bytes:
        """An error the gateway answers itself, in this format."""
        ...

    def stream_error(self, message: str, code: str) -> bytes:
        """An error event ending a stream that already has its 200."""
        ...

    def is_error(self, payload: dict[str, Any]) -> bool:
        """Whether a provider's error body is already in this format."""
        ...

    def answer(self, payload: dict[str, Any]) -> tuple[Usage | None, str | None]:
        """Usage and finish reason of a whole successful answer."""
        ...

    def error_type(self, payload: dict[str, Any], default: str) -> str:
        """The most specific name for the error in a provider's error body."""
        ...


class StreamScanner(Protocol):
    """Follows a stream chunk by chunk and records usage, finish reason and errors."""

    usage: Usage | None
    finish_reason: str | None
    error_type: str | None

    def feed(self, chunk: bytes) -> bytes:
        """The bytes to send on to the client now."""
        ...

    def finish(self) -> bytes:
        """The end of the stream: whatever was held back."""
        ...


class EventScanner:
    """A scanner that never changes the stream: it passes every chunk on at once and decodes
    only the complete events ``wanted`` picks (a few byte searches each), which are the few
    that carry usage, a stop reason or an error. Subclasses say what to look for."""

    def __init__(self) -> None:
        self.usage: Usage | None = None
        self.finish_reason: str | None = None
        self.error_type: str | None = None
        self._tail = b""

    def wanted(self, block: bytes) -> bool:
        raise NotImplementedError

    def handle(self, payload: dict[str, Any]) -> None:
        raise NotImplementedError

    def feed(self, chunk: bytes) -> bytes:
        data = self._tail + chunk if self._tail else chunk
        end = last_event_end(data)
        if end == 0:
            # An oversized event is given up on rather than held in memory.
            self._tail = data if len(data) <= MAX_SCAN_TAIL else b""
            return chunk
        complete, self._tail = data[:end], data[end:]
        self._scan(complete)
        return chunk

    def finish(self) -> bytes:
        rest, self._tail = self._tail, b""
        if rest:
            self._scan(rest)
        return b""

    def _scan(self, block: bytes) -> None:
        if not self.wanted(block):
            return
        start = 0
        for match in _EVENT_END.finditer(block):
            self._event(block[start : match.end()])
            start = match.end()
        if start < len(block):
            self._event(block[start:])

    def _event(self, event: bytes) -> None:
        if self.wanted(event):
            payload = event_data(event)
            if payload is not None:
                self.handle(payload)


class Drains:
    """Streams whose client went away, read to their end in the background for the usage
    the provider bills. Tracked so that a shutdown waits for them (briefly) and so that a
    running task is never garbage-collected."""

    def __init__(self, seconds: float):
        self.seconds = seconds
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def enabled(self) -> bool:
        return self.seconds > 0

    def __len__(self) -> int:
        return len(self._tasks)

    def start(self, drain: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(drain)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def wait(self, timeout: float) -> None:
        """At shutdown: let the drains finish for up to ``timeout`` seconds, then cancel the
        rest, which publish what they have read so far."""
        if not self._tasks:
            return
        _, pending = await asyncio.wait(set(self._tasks), timeout=timeout)
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.wait(pending)


class SseRelay:
    """One upstream stream on its way to the client; publishes the request's event when
    it ends, however it ends."""

    def __init__(
        self,
        response: ProviderResponse,
        record: RequestRecord,
        publisher: UsagePublisher,
        scanner: StreamScanner,
        dialect: Dialect,
        drains: Drains,
    ):
        self._response = response
        self._record = record
        self._publisher = publisher
        self._scanner = scanner
        self._dialect = dialect
        self._drains = drains
        self._complete = False
        self._transport_error: str | None = None
        self._closed = False

    async def chunks(self) -> AsyncIterator[bytes]:
        try:
            async for chunk in self._response.chunks():
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
        except UpstreamError as error:
            # Too late for a status code: the client gets an error event in the stream,
            # which the SDKs raise as an API error.
            timed_out = isinstance(error, ReadTimedOut)
            self._transport_error = "upstream_timeout" if timed_out else "upstream_connection_error"
            message = "the provider stopped answering mid-stream"
            yield self._dialect.stream_error(message, self._transport_error)
        finally:
            await self.close()

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if not self._complete and self._transport_error is None and self._drains.enabled:
            # The client went away mid-stream. The provider bills the generation it already
            # started, and on the OpenAI wire its usage only comes in the last chunk: read
            # the rest of the stream in the background for it, off this (possibly
            # cancelled) task.
            self._drains.start(self._drain_and_finish())
            return
        await self._finish()

    async def _drain_and_finish(self) -> None:
        try:
            with anyio.fail_after(self._drains.seconds):
                # Resumes where the relay, consumed or cancelled, stopped reading.
                async for chunk in self._response.chunks():
                    if chunk:
                        self._scanner.feed(chunk)
            self._scanner.finish()
        except TimeoutError:
            log.warning(
                "event %s: the provider's stream did not end within %.0f s of the client "
                "leaving; recorded with the usage seen so far",
                self._record.event_id,
                self._drains.seconds,
            )
        except Exception:
            log.debug("draining an abandoned stream failed", exc_info=True)
        finally:
            await self._finish()

    async def _finish(self) -> None:
        self._response.close()
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
                http_status=self._response.status,
                usage=scanner.usage,
                finish_reason=scanner.finish_reason,
                error_type=error_type,
            ),
        )


class Upstream:
    """Sends requests to providers through one shared, pooled client."""

    def __init__(
        self, client: ProviderClient, settings: IngressSettings, publisher: UsagePublisher
    ):
        self._client = client
        self._settings = settings
        self._publisher = publisher
        self.drains = Drains(settings.upstream_drain_after_disconnect_seconds)
        self._endpoints: dict[tuple[str, str], tuple[URL, aiohttp.ClientTimeout]] = {}

    async def forward(
        self,
        provider: ProviderConfig,
        url: URL,
        headers: dict[str, str],
        content: bytes,
        record: RequestRecord,
        dialect: Dialect,
        scanner: Callable[[], StreamScanner],
        translate: Callable[[int, bytes], bytes] | None = None,
    ) -> Response:
        """POST ``content`` to ``url`` (from ``endpoint``) and answer the client, metered.

        ``translate(status, body)``: what the client gets for a whole answer, when the
        client speaks another wire format than the provider (a stream is translated by its
        scanner). Usage is still read from the provider's own answer."""
        if record.streamed:
            headers["accept"] = "text/event-stream"
            # Compressed SSE would only cost a decompression on the way through.
            headers["accept-encoding"] = "identity"
        else:
            headers["accept"] = "application/json"
        slug = provider.slug
        try:
            response = await self._client.post(url, headers, content, self.timeout(provider))
        except ConnectTimedOut:
            # Nothing reached the provider: nothing to bill, so no event either.
            return _unrecorded(
                dialect, 504, f"provider {slug!r} could not be reached in time", "upstream_timeout"
            )
        except ReadTimedOut:
            return self._failed(
                record,
                dialect,
                504,
                f"provider {slug!r} did not answer in time",
                "upstream_timeout",
            )
        except ConnectionLost:
            return self._failed(
                record,
                dialect,
                502,
                f"provider {slug!r} closed the connection",
                "upstream_connection_error",
            )
        except UpstreamError as error:
            log.warning("provider %s unreachable: %r", slug, error)
            return _unrecorded(
                dialect, 502, f"provider {slug!r} is unreachable", "upstream_unreachable"
            )

        content_type, client_headers = response_headers(response, record)
        if record.streamed and response.is_success and content_type.startswith("text/event-stream"):
            relay = SseRelay(response, record, self._publisher, scanner(), dialect, self.drains)
            client_headers["cache-control"] = "no-cache"
            # Tell a buffering reverse proxy (nginx) in front of the gateway to let each
            # event through at once.
            client_headers["x-accel-buffering"] = "no"
            return MeteredStreamingResponse(relay, response.status, client_headers, content_type)

        try:
            answer = await response.read()
        except ReadTimedOut:
            return self._failed(
                record,
                dialect,
                504,
                f"provider {slug!r} did not answer in time",
                "upstream_timeout",
            )
        except UpstreamError:
            return self._failed(
                record,
                dialect,
                502,
                f"provider {slug!r} closed the connection",
                "upstream_connection_error",
            )
        finally:
            response.close()

        status = response.status
        if not response.is_success and not dialect.is_error(_json_object(answer)):
            # A proxy's HTML page or a bare text error: the SDKs want their own format.
            text = answer.decode(errors="replace").strip()[:1000]
            answer = dialect.error_body(
                status, f"provider {slug!r} answered {status}: {text}", f"http_{status}"
            )
            content_type = "application/json"
        sent = answer
        if translate is not None:
            sent = translate(status, answer)
            content_type = "application/json"
        return MeteredResponse(
            sent,
            status,
            client_headers,
            content_type or "application/json",
            partial(self._answered, record, dialect, status, answer),
        )

    async def passthrough(
        self,
        provider: ProviderConfig,
        url: URL,
        headers: dict[str, str],
        content: bytes,
        dialect: Dialect,
    ) -> Response:
        """POST a request the provider does not bill (token counting) and answer with what
        it said, or an error in ``dialect``; nothing is recorded."""
        headers["accept"] = "application/json"
        slug = provider.slug
        try:
            response = await self._client.post(url, headers, content, self.timeout(provider))
            try:
                answer = await response.read()
            finally:
                response.close()
        except (ConnectTimedOut, ReadTimedOut):
            return _unrecorded(
                dialect, 504, f"provider {slug!r} did not answer in time", "upstream_timeout"
            )
        except UpstreamError as error:
            log.warning("provider %s unreachable: %r", slug, error)
            return _unrecorded(
                dialect, 502, f"provider {slug!r} is unreachable", "upstream_unreachable"
            )
        status = response.status
        if not response.is_success and not dialect.is_error(_json_object(answer)):
            text = answer.decode(errors="replace").strip()[:1000]
            answer = dialect.error_body(
                status, f"provider {slug!r} answered {status}: {text}", f"http_{status}"
            )
        headers_out = {
            name.decode(): value.decode("latin-1")
            for name, value in response.raw_headers
            if name.lower() in PASSED_THROUGH_HEADERS
        }
        return Response(answer, status, headers_out, media_type="application/json")

    def _answered(
        self, record: RequestRecord, dialect: Dialect, status: int, answer: bytes
    ) -> None:
        """Just before a whole answer goes out: decode it (only now, once the response is
        under way) and publish the event."""
        payload = _json_object(answer)
        if 200 <= status < 300:
            usage, finish_reason = dialect.answer(payload)
            event = record.event(
                status="success",
                http_status=status,
                usage=usage,
                finish_reason=finish_reason,
            )
        else:
            event = record.event(
                status="error",
                http_status=status,
                error_type=dialect.error_type(payload, f"http_{status}"),
            )
        publish(self._publisher, event)

    def _failed(
        self, record: RequestRecord, dialect: Dialect, status: int, message: str, error_type: str
    ) -> Response:
        """The provider got the request but the answer was lost: the provider may bill it,
        so it is recorded."""
        return MeteredResponse(
            dialect.error_body(status, message, error_type),
            status,
            {EVENT_ID_HEADER: record.event_id},
            "application/json",
            lambda: publish(
                self._publisher,
                record.event(status="error", http_status=status, error_type=error_type),
            ),
        )

    def endpoint(self, provider: ProviderConfig, path: str) -> URL:
        """``path`` under the provider's base URL, built once: aiohttp would parse a URL
        string again on every request."""
        return self._cached(provider, path)[0]

    def timeout(self, provider: ProviderConfig) -> aiohttp.ClientTimeout:
        return self._cached(provider, "")[1]

    def _cached(self, provider: ProviderConfig, path: str) -> tuple[URL, aiohttp.ClientTimeout]:
        key = (provider.slug, path)
        endpoint = self._endpoints.get(key)
        if endpoint is None:
            settings = self._settings
            read = settings.upstream_read_timeout_seconds or provider.timeout_seconds
            timeout = provider_timeout(
                connect=settings.upstream_connect_timeout_seconds,
                pool=settings.upstream_pool_timeout_seconds,
                read=read,
            )
            url = URL(provider.base_url.rstrip("/") + path)
            endpoint = self._endpoints[key] = (url, timeout)
        return endpoint


def _unrecorded(dialect: Dialect, status: int, message: str, code: str) -> Response:
    """No event, so no event id header either."""
    return Response(
        dialect.error_body(status, message, code), status_code=status, media_type="application/json"
    )


def response_headers(
    response: ProviderResponse, record: RequestRecord
) -> tuple[str, dict[str, str]]:
    """The provider's content type, and the headers the client gets, in one pass over the
    raw headers."""
    content_type = ""
    headers = {EVENT_ID_HEADER: record.event_id}
    for name, value in response.raw_headers:
        lowered = name.lower()
        if lowered == b"content-type":
            content_type = value.decode("latin-1")
        elif lowered in PASSED_THROUGH_HEADERS:
            headers[lowered.decode()] = value.decode("latin-1")
    return content_type, headers


def last_event_end(data: bytes) -> int:
    """Where the last complete event in ``data`` ends (0: none is complete). Events end
    with a blank line; providers write ``\\n\\n``, the SSE specification also allows CRLFs."""
    end = data.rfind(b"\n\n")
    end = end + 2 if end >= 0 else 0
    if b"\r" in data:
        crlf = data.rfind(b"\r\n\r\n")
        if crlf >= 0:
            end = max(end, crlf + 4)
    return end


def event_data(event: bytes) -> dict[str, Any] | None:
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


def _json_object(answer: bytes) -> dict[str, Any]:
    try:
        payload = json.loads(answer)
    except ValueError:
        return {}
    return payload if isinstance(payload, dict) else {}


def dumps(value: Any) -> bytes:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode()
