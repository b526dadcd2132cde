"""What the ingress measures of each request, and its access log.

``Observed`` wraps the application: it starts an ``Exchange`` for the request in a context
variable, which the forwarding code adds to (the time spent waiting for the provider, the
usage event once it is published), and at the end counts the request, observes its
durations and writes one line to the ``meterline.access`` logger.

Added latency is what the gateway itself costs a caller before the answer starts: the time
from the request's arrival to the response's first byte (its status line), less the time
spent waiting for the provider before it (connecting, sending, reading a whole answer, or
a stream's headers). Every route tried counts in the provider's time.

Nothing here locks or awaits: a request costs a context variable, a few clock reads, one
counter and two histogram observations."""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, Final

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from meterline.common.events import UsageEvent
from meterline.common.metrics import (
    LATENCY_BUCKETS,
    SLOW_BUCKETS,
    Counter,
    Histogram,
    Registry,
    RouteTemplates,
    status_class,
)

access_log = logging.getLogger("meterline.access")

UNOBSERVED_PATHS: Final = frozenset({"/metrics", "/livez", "/readyz", "/healthz"})
"""Scrapes and probes: neither counted nor logged (they would drown the traffic)."""

SURFACES: Final = {
    "/v1/chat/completions": "chat_completions",
    "/v1/responses": "responses",
    "/v1/messages": "messages",
    "/v1/messages/count_tokens": "count_tokens",
    "/v3/ai/language-model": "language_model",
    "/v1/models": "models",
    "/v1/models/{model_id:path}": "models",
    "/v3/ai/config": "config",
}
"""The surface of a request that published no event (refused before the provider, or not
metered), by route template; anything else is ``other``."""

UPSTREAM_ERROR_KINDS: Final = ("timeout", "connect", "connection_lost", "4xx", "5xx")


@dataclass(slots=True)
class Exchange:
    started: float
    upstream_seconds: float = 0.0
    """Time spent waiting for providers so far."""
    forwarded: bool = False
    event: UsageEvent | None = None


current: ContextVar[Exchange | None] = ContextVar("meterline_exchange", default=None)


def waited_for_provider(since: float) -> None:
    """Count the time since ``since`` (perf_counter) as the provider's."""
    exchange = current.get()
    if exchange is not None:
        exchange.upstream_seconds += time.perf_counter() - since
        exchange.forwarded = True


def published(event: UsageEvent) -> None:
    exchange = current.get()
    if exchange is not None:
        exchange.event = event


class IngressMetrics:
    def __init__(self, *, team_label: bool = False) -> None:
        self.team_label = team_label
        labels = ("surface", "provider", "status_class")
        self.registry = Registry()
        add = self.registry.add
        self.requests = add(
            Counter(
                "meterline_ingress_requests_total",
                "Requests answered, by surface, provider and status class.",
                (*labels, "team") if team_label else labels,
            )
        )
        self.duration = add(
            Histogram(
                "meterline_ingress_request_duration_seconds",
                "Whole request duration, provider and streaming included.",
                SLOW_BUCKETS,
                ("surface", "provider"),
            )
        )
        self.added_latency = add(
            Histogram(
                "meterline_ingress_added_latency_seconds",
                "Time the gateway adds before the answer starts, the provider's time excluded.",
                LATENCY_BUCKETS,
                ("surface", "provider"),
            )
        )
        self.ttft = add(
            Histogram(
                "meterline_ingress_time_to_first_token_seconds",
                "Time from the request to the first token of a streamed answer.",
                SLOW_BUCKETS,
                ("surface", "provider"),
            )
        )
        self.upstream_errors = add(
            Counter(
                "meterline_ingress_upstream_errors_total",
                "Provider calls that failed, by kind: timeout, connect, connection_lost, 4xx, 5xx.",
                ("provider", "kind"),
            )
        )

    def upstream_error(self, provider: str, kind: str) -> None:
        self.upstream_errors.inc(provider, kind)

    def finished(
        self,
        scope: Scope,
        template: str | None,
        exchange: Exchange,
        status: int,
        head_at: float | None,
        head_wait: float,
    ) -> None:
        end = time.perf_counter()
        event = exchange.event
        if event is not None:
            surface, provider, team = event.api_surface, event.provider, event.team_id
        else:
            surface = SURFACES.get(template, "other") if template is not None else "other"
            provider, team = "none", ""
        klass = status_class(status)
        if self.team_label:
            self.requests.inc(surface, provider, klass, team or "none")
        else:
            self.requests.inc(surface, provider, klass)
        duration = end - exchange.started
        self.duration.observe(duration, surface, provider)
        added: float | None = None
        if exchange.forwarded and head_at is not None:
            added = max(0.0, head_at - exchange.started - head_wait)
            self.added_latency.observe(added, surface, provider)
        ttft_ms = event.time_to_first_token_ms if event is not None else None
        if event is not None and event.streamed and ttft_ms is not None:
            self.ttft.observe(ttft_ms / 1000, surface, provider)
        if access_log.isEnabledFor(logging.INFO):
            _log_access(scope, status, duration, added, event, surface, provider)


def _log_access(
    scope: Scope,
    status: int,
    duration: float,
    added: float | None,
    event: UsageEvent | None,
    surface: str,
    provider: str,
) -> None:
    """One line per request: who, what, how it ended, how long. Never a key, a header or a
    body: the caller's prompt and credentials stay out of the logs."""
    if not access_log.isEnabledFor(logging.INFO):  # built per request: not when unread
        return
    duration_ms = round(duration * 1000, 1)
    added_ms = round(added * 1000, 2) if added is not None else None
    fields = {
        "method": scope.get("method", ""),
        "path": scope.get("path", ""),
        "status": status,
        "duration_ms": duration_ms,
        "added_ms": added_ms,
        "surface": surface,
        "provider": provider,
        "event_id": event.event_id if event is not None else None,
        "team": event.team_id if event is not None else None,
        "model": event.model if event is not None else None,
        "ttft_ms": event.time_to_first_token_ms if event is not None else None,
        "outcome": event.status if event is not None else None,
    }
    message = f"{fields['method']} {fields['path']} {status} {duration_ms}ms"
    if event is not None:
        message += (
            f" team={event.team_id} provider={provider} model={event.model} event={event.event_id}"
        )
    access_log.info(message, extra=fields)


class Observed:
    """The ASGI middleware around the ingress (see the module's docstring)."""

    def __init__(self, app: ASGIApp, metrics: IngressMetrics, routes: Sequence[Any]) -> None:
        self.app = app
        self.metrics = metrics
        self.templates = RouteTemplates(routes)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in UNOBSERVED_PATHS:
            await self.app(scope, receive, send)
            return
        exchange = Exchange(time.perf_counter())
        status = 500
        head_at: float | None = None
        head_wait = 0.0

        async def send_observed(message: Message) -> None:
            nonlocal status, head_at, head_wait
            if message["type"] == "http.response.start":
                status = message["status"]
                head_at = time.perf_counter()
                head_wait = exchange.upstream_seconds
            await send(message)

        token = current.set(exchange)
        try:
            await self.app(scope, receive, send_observed)
        finally:
            current.reset(token)
            self.metrics.finished(
                scope, self.templates.of(scope), exchange, status, head_at, head_wait
            )
