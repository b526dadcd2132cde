"""Forwarding one request to a provider and metering the answer, whatever the wire format.

What differs between wire formats (how errors look, where usage is) is a ``Dialect``; what
a stream carries is read by a ``StreamScanner``. Everything else is the same for every
surface: one pooled client, the timeouts, which failures are recorded (the provider got the
request and may bill it) and which are not (nothing reached it), the event id header, and
publishing after the caller has its answer.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from functools import partial
from typing import Any, Final

import aiohttp
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
from meterline.ingress.observe import IngressMetrics, waited_for_provider
from meterline.ingress.providers.dialect import Dialect, StreamScanner
from meterline.ingress.publishing.protocol import UsagePublisher
from meterline.ingress.relay import Drains, SseRelay
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

log = logging.getLogger("meterline.ingress.upstream")

PASSED_THROUGH_HEADERS: Final = frozenset(
    {b"retry-after", b"retry-after-ms", b"x-request-id", b"request-id"}
)
"""Provider response headers the client gets: when to retry, and the provider's request id
for support tickets (``x-request-id`` from OpenAI, ``request-id`` from Anthropic). Rate-limit
headers describe the gateway's shared account, not the caller's, so they stay behind."""


class Upstream:
    """Sends requests to providers through one shared, pooled client."""

    def __init__(
        self,
        client: ProviderClient,
        settings: IngressSettings,
        publisher: UsagePublisher,
        metrics: IngressMetrics | None = None,
    ):
        self._client = client
        self._metrics = metrics or IngressMetrics()
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
        errors = self._metrics.upstream_errors
        began = time.perf_counter()
        try:
            response = await self._client.post(url, headers, content, self.timeout(provider))
        except ConnectTimedOut:
            errors.inc(slug, "timeout")
            # Nothing reached the provider: nothing to bill, so no event either.
            return _unrecorded(
                dialect, 504, f"provider {slug!r} could not be reached in time", "upstream_timeout"
            )
        except ReadTimedOut:
            errors.inc(slug, "timeout")
            return self._failed(
                record,
                dialect,
                504,
                f"provider {slug!r} did not answer in time",
                "upstream_timeout",
            )
        except ConnectionLost:
            errors.inc(slug, "connection_lost")
            return self._failed(
                record,
                dialect,
                502,
                f"provider {slug!r} closed the connection",
                "upstream_connection_error",
            )
        except UpstreamError as error:
            errors.inc(slug, "connect")
            log.warning("provider %s unreachable: %r", slug, error)
            return _unrecorded(
                dialect, 502, f"provider {slug!r} is unreachable", "upstream_unreachable"
            )
        finally:
            waited_for_provider(began)

        content_type, client_headers = response_headers(response, record)
        if record.streamed and response.is_success and content_type.startswith("text/event-stream"):
            relay = SseRelay(response, record, self._publisher, scanner(), dialect, self.drains)
            client_headers["cache-control"] = "no-cache"
            # Tell a buffering reverse proxy (nginx) in front of the gateway to let each
            # event through at once.
            client_headers["x-accel-buffering"] = "no"
            return MeteredStreamingResponse(relay, response.status, client_headers, content_type)

        began = time.perf_counter()
        try:
            answer = await response.read()
        except ReadTimedOut:
            errors.inc(slug, "timeout")
            return self._failed(
                record,
                dialect,
                504,
                f"provider {slug!r} did not answer in time",
                "upstream_timeout",
            )
        except UpstreamError:
            errors.inc(slug, "connection_lost")
            return self._failed(
                record,
                dialect,
                502,
                f"provider {slug!r} closed the connection",
                "upstream_connection_error",
            )
        finally:
            response.close()
            waited_for_provider(began)

        status = response.status
        if status >= 400:
            errors.inc(slug, "5xx" if status >= 500 else "4xx")
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


def _json_object(answer: bytes) -> dict[str, Any]:
    try:
        payload = json.loads(answer)
    except ValueError:
        return {}
    return payload if isinstance(payload, dict) else {}
