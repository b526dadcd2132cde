"""One ASGI app that routes ``/v1/report``, ``/v1/generation``, ``/v1/credits``,
``/v1/budgets``, ``/v1/alerts`` and the internal paths to the query service and everything
else to the ingress, and runs the consumer pipeline beside them.

Shutdown order keeps every accepted request: the ingress stops first (its publisher
flushes into the bus or Kafka), then the consumer drains, writes and commits, then the
query service closes. Without Kafka the bus is the local log on disk (``common/local_log``),
opened before anything is published and closed after the consumer's last commit."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import signal
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

from clickhouse_connect.driver.client import Client
from fastapi import FastAPI
from starlette.types import Receive, Scope, Send

from meterline.all_in_one.settings import LocalLogSettings
from meterline.common.budget_spend import WarehouseSpend
from meterline.common.bus import Bus, InProcessBus
from meterline.common.clickhouse import connect
from meterline.common.config import GatewayConfig
from meterline.common.local_log import LocalLog
from meterline.common.metrics import CONTENT_TYPE, process_text
from meterline.consumer.assemble import open_consumer
from meterline.consumer.observe import readiness as consumer_readiness
from meterline.consumer.observe import refreshed_lag
from meterline.consumer.pipeline import Pipeline
from meterline.consumer.settings import ConsumerSettings
from meterline.ingress.app import create_app as create_ingress_app
from meterline.ingress.publishing.bus import BusPublisher
from meterline.ingress.publishing.kafka import kafka_publisher
from meterline.ingress.publishing.protocol import UsagePublisher
from meterline.ingress.settings import IngressSettings
from meterline.query.app import create_app as create_query_app
from meterline.query.settings import QuerySettings

log = logging.getLogger("meterline.all_in_one")

QUERY_PATHS = (
    "/v1/report",
    "/v1/generation",
    "/v1/credits",
    "/v1/budgets",
    "/v1/alerts",
    "/internal/",
)


@dataclass
class AllInOneSettings:
    ingress: IngressSettings
    consumer: ConsumerSettings
    query: QuerySettings
    local_log: LocalLogSettings = field(default_factory=LocalLogSettings)

    @classmethod
    def from_env(cls) -> AllInOneSettings:
        return cls(IngressSettings(), ConsumerSettings(), QuerySettings(), LocalLogSettings())


class AllInOne:
    """The ASGI application of ``meterline all-in-one``."""

    def __init__(self, settings: AllInOneSettings, config: GatewayConfig):
        self.settings = settings
        self.config = config
        common = settings.consumer
        self.clickhouse_url = common.resolved_clickhouse_url()
        self.database = common.clickhouse_database
        self.bus: Bus
        self.local_log: LocalLog | None = None
        log_settings = settings.local_log
        if common.kafka_bootstrap_servers or not log_settings.local_log_max_bytes:
            self.bus = InProcessBus(common.usage_topic)
        else:
            self.bus = self.local_log = LocalLog(
                log_settings.resolved_local_log_dir(),
                common.usage_topic,
                max_bytes=log_settings.local_log_max_bytes,
                fsync_seconds=log_settings.local_log_fsync_seconds,
            )
            # Opened now, so that the ingress may publish from its first request on.
            self.local_log.open()
        publisher: UsagePublisher
        if common.kafka_bootstrap_servers:
            publisher = kafka_publisher(settings.ingress)
        else:
            publisher = BusPublisher(self.bus)
        # Budgets and their committed spend are read from the engine the consumer writes.
        spend = WarehouseSpend(self._client)
        self.ingress: FastAPI = create_ingress_app(settings.ingress, config, publisher, spend)
        self.query: FastAPI = create_query_app(
            settings.query, client_factory=self._client, config=config
        )
        self.pipeline: Pipeline | None = None
        self.on_consumer_failure: Callable[[], None] = _stop_the_process
        """Called when the consumer stops by itself (the circuit breaker, an error it does
        not retry): the gateway would go on answering while nothing is counted."""

    def _client(self) -> Client:
        return connect(self.clickhouse_url, self.database)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        path: str = scope.get("path", "")
        if path == "/metrics" and scope["type"] == "http":
            await self._metrics(send)
            return
        if path == "/readyz" and scope["type"] == "http":
            await self._readyz(send)
            return
        app = self.query if path.startswith(QUERY_PATHS) else self.ingress
        await app(scope, receive, send)

    async def _metrics(self, send: Send) -> None:
        """The three services' series in one page, and the process' once."""
        text = self.ingress.state.metrics_text() + await self.query.state.metrics_text()
        if self.pipeline is not None:
            await refreshed_lag(self.pipeline)
            text += self.pipeline.metrics.registry.render()
        await _answer(send, 200, CONTENT_TYPE, (text + process_text()).encode())

    async def _readyz(self, send: Send) -> None:
        """Ready when every part is: the ingress can keep events, the query service's
        warehouse answers, the consumer reads and can write."""
        reasons = {
            "ingress": self.ingress.state.readiness(),
            "query": await self.query.state.readiness(),
            "consumer": (
                consumer_readiness(self.pipeline) if self.pipeline is not None else "starting"
            ),
        }
        failing = {part: reason for part, reason in reasons.items() if reason is not None}
        body: dict[str, object] = {"status": "unavailable" if failing else "ok"}
        if failing:
            body["reasons"] = failing
        await _answer(send, 503 if failing else 200, "application/json", json.dumps(body).encode())

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        message = await receive()
        assert message["type"] == "lifespan.startup"
        try:
            stack = contextlib.AsyncExitStack()
            await stack.__aenter__()
            stop = asyncio.Event()
            if self.local_log is not None:
                # Closed last: after the consumer's final commit.
                await self.local_log.start()
                stack.push_async_callback(self.local_log.close)
            consumer = await stack.enter_async_context(self._consumer(stop))
            await stack.enter_async_context(self.query.router.lifespan_context(self.query))
            await stack.enter_async_context(self.ingress.router.lifespan_context(self.ingress))
        except Exception as error:
            log.exception("all-in-one failed to start")
            await send({"type": "lifespan.startup.failed", "message": str(error)})
            return
        await send({"type": "lifespan.startup.complete"})
        message = await receive()
        assert message["type"] == "lifespan.shutdown"
        try:
            # The exit stack unwinds in reverse: ingress, query, then the consumer.
            await stack.__aexit__(None, None, None)
            del consumer
        except Exception as error:
            log.exception("all-in-one failed to stop cleanly")
            await send({"type": "lifespan.shutdown.failed", "message": str(error)})
            return
        await send({"type": "lifespan.shutdown.complete"})

    @contextlib.asynccontextmanager
    async def _consumer(self, stop: asyncio.Event) -> AsyncIterator[Pipeline]:
        # The views one after another: fed side by side they sped the insert up but, on the
        # cores the gateway shares, tripled its p99 (BENCHMARKS.md: the rollups' views).
        async with open_consumer(
            self.settings.consumer, self.config, bus=self.bus, parallel_views=False
        ) as pipeline:
            self.pipeline = pipeline
            task = asyncio.create_task(pipeline.run(stop), name="consumer")
            task.add_done_callback(lambda done: self._consumer_ended(done, stop))
            try:
                yield pipeline
            finally:
                # Bounded: the pipeline gives up its open batches after its stop deadline.
                stop.set()
                await task

    def _consumer_ended(self, task: asyncio.Task[None], stop: asyncio.Event) -> None:
        if stop.is_set() or task.cancelled() or task.exception() is None:
            return
        log.error(
            "the consumer stopped (%r): stopping the process, so that it is restarted",
            task.exception(),
        )
        self.on_consumer_failure()


async def _answer(send: Send, status: int, content_type: str, body: bytes) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", content_type.encode())],
        }
    )
    await send({"type": "http.response.body", "body": body})


def _stop_the_process() -> None:
    # As `kill -TERM`: uvicorn stops gracefully and the shutdown reports the consumer's error.
    signal.raise_signal(signal.SIGTERM)
