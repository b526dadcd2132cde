"""What the query service measures of each request, and its access log.

``Observed`` wraps the application: each request gets an ``Exchange`` in a context variable,
which authentication (the team) and the warehouse (the rows it returned) add to; at the end
the request is counted under its route template (never the raw path: a path may hold an
event id) and logged on ``meterline.access``."""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, Final

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from meterline.common.metrics import (
    LATENCY_BUCKETS,
    ROWS_BUCKETS,
    SLOW_BUCKETS,
    Counter,
    Gauge,
    Histogram,
    Registry,
    RouteTemplates,
    status_class,
)

access_log = logging.getLogger("meterline.access")

UNOBSERVED_PATHS: Final = frozenset({"/metrics", "/livez", "/readyz", "/healthz"})


@dataclass(slots=True)
class Exchange:
    team: str | None = None
    rows: int | None = None


current: ContextVar[Exchange | None] = ContextVar("meterline_query_exchange", default=None)


def authenticated(team: str) -> None:
    exchange = current.get()
    if exchange is not None:
        exchange.team = team


def returned(rows: int) -> None:
    """Rows a warehouse query returned for the request under way (summed over its queries)."""
    exchange = current.get()
    if exchange is not None:
        exchange.rows = (exchange.rows or 0) + rows


class QueryMetrics:
    def __init__(self, *, team_label: bool = False) -> None:
        self.team_label = team_label
        self.registry = Registry()
        add = self.registry.add
        labels = ("route", "status_class")
        self.requests = add(
            Counter(
                "meterline_query_requests_total",
                "Requests answered, by route template and status class.",
                (*labels, "team") if team_label else labels,
            )
        )
        self.duration = add(
            Histogram(
                "meterline_query_request_duration_seconds",
                "Request latency by route template.",
                (*LATENCY_BUCKETS, *SLOW_BUCKETS[SLOW_BUCKETS.index(2.5) :]),
                ("route",),
            )
        )
        self.rows = add(
            Histogram(
                "meterline_query_rows_returned",
                "Rows the warehouse returned per request, by route template.",
                ROWS_BUCKETS,
                ("route",),
            )
        )
        self.warehouse_up = add(
            Gauge(
                "meterline_query_warehouse_up",
                "1 when the warehouse answered the last check (a scrape or /readyz), else 0.",
            )
        )

    def finished(
        self, scope: Scope, template: str | None, exchange: Exchange, status: int, duration: float
    ) -> None:
        route = template or "other"
        klass = status_class(status)
        if self.team_label:
            self.requests.inc(route, klass, exchange.team or "none")
        else:
            self.requests.inc(route, klass)
        self.duration.observe(duration, route)
        if exchange.rows is not None:
            self.rows.observe(exchange.rows, route)
        if access_log.isEnabledFor(logging.INFO):
            duration_ms = round(duration * 1000, 1)
            fields = {
                "method": scope.get("method", ""),
                "route": route,
                "status": status,
                "duration_ms": duration_ms,
                "team": exchange.team,
                "rows": exchange.rows,
            }
            access_log.info(
                f"{fields['method']} {route} {status} {duration_ms}ms team={exchange.team}",
                extra=fields,
            )


class Observed:
    def __init__(self, app: ASGIApp, metrics: QueryMetrics, routes: Sequence[Any]) -> None:
        self.app = app
        self.metrics = metrics
        self.templates = RouteTemplates(routes)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in UNOBSERVED_PATHS:
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        exchange = Exchange()
        status = 500

        async def send_observed(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        token = current.set(exchange)
        try:
            await self.app(scope, receive, send_observed)
        finally:
            current.reset(token)
            self.metrics.finished(
                scope, self.templates.of(scope), exchange, status, time.perf_counter() - started
            )
