"""The consumer's metrics (``ConsumerMetrics``) and its small HTTP server for Prometheus and
the orchestrator's probes (``serve_http``): ``/metrics``, ``/livez`` and ``/readyz`` on
``METERLINE_CONSUMER_HTTP_PORT``, on the consumer's own event loop."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import AsyncIterator, Callable, Generator
from typing import TYPE_CHECKING, Final

import uvicorn
from fastapi import FastAPI
from starlette.responses import JSONResponse, Response

from meterline.common.metrics import (
    CONTENT_TYPE,
    LATENCY_BUCKETS,
    ROWS_BUCKETS,
    SLOW_BUCKETS,
    Counter,
    Gauge,
    Histogram,
    Registry,
    process_text,
)

if TYPE_CHECKING:
    from meterline.consumer.pipeline import Pipeline

log = logging.getLogger("meterline.consumer")

LAG_TIMEOUT_SECONDS: Final = 5.0
"""Longest a scrape waits for the broker's end offsets; past it the last lag is served."""

Lag = dict[tuple[str, int], int]


class ConsumerMetrics:
    def __init__(self) -> None:
        self.registry = Registry()
        add = self.registry.add
        self.lag = add(
            Gauge(
                "meterline_consumer_lag_messages",
                "Messages of each assigned partition not committed yet: the partition's end "
                "offset less the consumer's committed offset.",
                ("topic", "partition"),
            )
        )
        self.batch_rows = add(
            Histogram(
                "meterline_consumer_batch_rows",
                "Offsets a batch covers when it closes.",
                ROWS_BUCKETS,
            )
        )
        self.batch_age = add(
            Histogram(
                "meterline_consumer_batch_age_seconds",
                "Age of a batch's oldest message when the batch closes.",
                SLOW_BUCKETS,
            )
        )
        self.insert_duration = add(
            Histogram(
                "meterline_consumer_insert_duration_seconds",
                "Duration of a batch's successful insert into the warehouse.",
                (*LATENCY_BUCKETS, *SLOW_BUCKETS[SLOW_BUCKETS.index(2.5) :]),
            )
        )
        self.commit_duration = add(
            Histogram(
                "meterline_consumer_commit_duration_seconds",
                "Duration of an offset commit.",
                (*LATENCY_BUCKETS, *SLOW_BUCKETS[SLOW_BUCKETS.index(2.5) :]),
            )
        )
        self.events_written = add(
            Counter("meterline_consumer_events_written_total", "Events written to the warehouse.")
        )
        self.batches_written = add(
            Counter("meterline_consumer_batches_written_total", "Batches written and committed.")
        )
        self.duplicates = add(
            Counter(
                "meterline_consumer_duplicates_dropped_total",
                "Repeated events (same event id) dropped before the insert.",
            )
        )
        self.dead_letters = add(
            Counter(
                "meterline_consumer_dead_letters_total",
                "Messages sent to the dead-letter topic (undecodable or refused rows).",
            )
        )
        self.write_failures = add(
            Counter(
                "meterline_consumer_write_failures_total",
                "Failed attempts at a warehouse write (insert or batch log), each retried.",
            )
        )
        self.commit_failures = add(
            Counter("meterline_consumer_commit_failures_total", "Offset commits that failed.")
        )
        self.breaker_open = add(
            Gauge(
                "meterline_consumer_breaker_open",
                "1 once the dead-letter circuit breaker opened (the consumer stops), else 0.",
            )
        )
        self.warehouse_up = add(
            Gauge(
                "meterline_consumer_warehouse_up",
                "0 while writes to the warehouse fail and the partitions are paused, else 1.",
            )
        )
        self.assigned = add(
            Gauge("meterline_consumer_assigned_partitions", "Partitions this member reads.")
        )
        self.breaker_open.set(0)
        self.warehouse_up.set(1)
        self.assigned.set(0)

    def set_lag(self, lag: Lag) -> None:
        self.lag.values = {(topic, str(partition)): n for (topic, partition), n in lag.items()}


async def refreshed_lag(pipeline: Pipeline) -> None:
    """Ask the source for the lag of its partitions, for a scrape. A broker that does not
    answer in time leaves the last values."""
    pipeline.metrics.assigned.set(pipeline.assigned_partitions())
    try:
        lag = await asyncio.wait_for(pipeline.lag(), LAG_TIMEOUT_SECONDS)
    except Exception as error:
        log.warning("reading the consumer's lag failed (%r)", error)
        return
    if lag is not None:
        pipeline.metrics.set_lag(lag)


def readiness(pipeline: Pipeline) -> str | None:
    """None when ready, else why not: partitions assigned, the warehouse writable and the
    breaker closed."""
    if pipeline.breaker_opened:
        return "the dead-letter circuit breaker is open"
    if pipeline.warehouse_down.is_set():
        return "the warehouse is unreachable"
    if not pipeline.assigned():
        return "no partition assigned"
    return None


def create_http_app(pipeline: Pipeline, alive: Callable[[], bool]) -> FastAPI:
    """``alive``: whether the consumer's loop still runs."""
    app = FastAPI(title="Meterline consumer", docs_url=None, redoc_url=None, openapi_url=None)

    @app.get("/metrics", include_in_schema=False)
    async def metrics() -> Response:
        await refreshed_lag(pipeline)
        return Response(
            pipeline.metrics.registry.render() + process_text(), media_type=CONTENT_TYPE
        )

    @app.get("/livez", include_in_schema=False)
    async def livez() -> JSONResponse:
        if not alive():
            return JSONResponse({"status": "stopped"}, status_code=503)
        return JSONResponse({"status": "ok"})

    @app.get("/readyz", include_in_schema=False)
    async def readyz() -> JSONResponse:
        reason = readiness(pipeline)
        if reason is not None:
            return JSONResponse({"status": "unavailable", "reason": reason}, status_code=503)
        return JSONResponse({"status": "ok"})

    return app


class _Server(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        # The consumer handles SIGTERM itself (finish, write, commit); uvicorn must not take it.
        yield


@contextlib.asynccontextmanager
async def serve_http(
    pipeline: Pipeline, host: str, port: int, alive: Callable[[], bool]
) -> AsyncIterator[None]:
    """The HTTP server beside the pipeline, for as long as the block runs; port 0: none."""
    if not port:
        yield
        return
    # Bound here, so that a port in use fails the start with the OS's error.
    sock = socket.create_server((host, port), reuse_port=False)
    config = uvicorn.Config(
        create_http_app(pipeline, alive), lifespan="off", log_config=None, access_log=False
    )
    server = _Server(config)
    task = asyncio.create_task(server.serve(sockets=[sock]), name="consumer-http")
    try:
        yield
    finally:
        server.should_exit = True
        await task
