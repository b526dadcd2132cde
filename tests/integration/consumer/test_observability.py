"""The consumer's HTTP server on the real Kafka broker and the embedded engine: ``/metrics``
after real batches (events written, batches, insert and commit durations, duplicates,
dead letters), the lag per partition rising while the warehouse is away and falling to
nothing once it is back, and ``/readyz`` following the warehouse."""

from __future__ import annotations

import asyncio

import httpx
import pytest
from aiokafka import AIOKafkaProducer
from clickhouse_connect.driver.client import Client

from meterline.common.codec import UsageEventCodec
from meterline.common.pricing import StaticPrices
from meterline.consumer.assemble import build_pipeline
from meterline.consumer.batch_log import ClickHouseBatchLog
from meterline.consumer.dead_letter import MemoryDeadLetter
from meterline.consumer.engine_write import EngineWriter
from meterline.consumer.enrich import Enricher
from meterline.consumer.observe import serve_http
from meterline.consumer.settings import ConsumerSettings
from meterline.consumer.source import KafkaSource
from meterline.processes import free_port
from tests.integration.consumer.test_warehouse_outage import (
    CONFIG,
    RATES,
    FlakyClickHouse,
    produce,
    wait_until,
)
from tests.support.events import million_token_event as event
from tests.support.prometheus import names, value

pytestmark = [pytest.mark.kafka, pytest.mark.clickhouse]


async def send(bootstrap: str, topic: str, payloads: list[bytes]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        for i, payload in enumerate(payloads):
            await producer.send(topic, payload, partition=i % 2)
        await producer.flush()
    finally:
        await producer.stop()


async def test_metrics_lag_and_readiness_follow_the_pipeline(
    kafka_bootstrap: str, kafka_topic: str, clickhouse: Client
) -> None:
    codec = UsageEventCodec()
    first = [codec.encode(event()) for _ in range(300)]
    # One event sent twice (to its partition again), and one message that is no usage event.
    await produce(kafka_bootstrap, kafka_topic, [*first, first[0], b"not a usage event"])

    group = f"observe-{kafka_topic}"
    flaky = FlakyClickHouse(clickhouse)
    pipeline = build_pipeline(
        ConsumerSettings(max_batch_rows=200, max_batch_seconds=0.2, insert_retry_max_seconds=0.5),
        source=KafkaSource(kafka_bootstrap, kafka_topic, group, session_timeout_ms=6_000),
        writer=EngineWriter(
            flaky,  # type: ignore[arg-type]
            codec,
            Enricher(StaticPrices({("openai", "gpt-x"): RATES}), CONFIG),
        ),
        dead_letter=MemoryDeadLetter(),
        batch_log=ClickHouseBatchLog(flaky, group),  # type: ignore[arg-type]
        codec=codec,
    )
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    stop = asyncio.Event()
    task = asyncio.create_task(pipeline.run(stop))
    async with (
        serve_http(pipeline, "127.0.0.1", port, alive=lambda: not task.done()),
        httpx.AsyncClient(base_url=base, timeout=20) as http,
    ):

        async def scrape() -> str:
            response = await http.get("/metrics")
            assert response.status_code == 200
            return response.text

        async def lag() -> float:
            return value(await scrape(), "meterline_consumer_lag_messages", topic=kafka_topic)

        try:
            await wait_until(lambda: pipeline.stats.events_written == 300, 60, "written")
            text = await scrape()
            assert value(text, "meterline_consumer_events_written_total") == 300
            assert value(text, "meterline_consumer_dead_letters_total") == 1
            assert value(text, "meterline_consumer_duplicates_dropped_total") == 1
            assert value(text, "meterline_consumer_batches_written_total") >= 2
            assert value(text, "meterline_consumer_batch_rows_count") >= 2
            assert value(text, "meterline_consumer_batch_age_seconds_count") >= 2
            assert value(text, "meterline_consumer_insert_duration_seconds_count") >= 2
            assert value(text, "meterline_consumer_commit_duration_seconds_count") >= 2
            assert value(text, "meterline_consumer_assigned_partitions") == 2
            assert value(text, "meterline_consumer_breaker_open") == 0
            assert {"process_resident_memory_bytes", "process_open_fds"} <= names(text)
            partitions = {
                line.split('partition="')[1].split('"')[0]
                for line in text.splitlines()
                if line.startswith("meterline_consumer_lag_messages{")
            }
            assert partitions == {"0", "1"}
            await wait_until_lag(lag, lambda n: n == 0, "caught up")
            assert (await http.get("/readyz")).status_code == 200
            assert (await http.get("/livez")).json() == {"status": "ok"}

            # The warehouse goes away: the lag grows with every message produced.
            flaky.down = True
            await send(kafka_bootstrap, kafka_topic, [codec.encode(event()) for _ in range(100)])
            await wait_until(pipeline.warehouse_down.is_set, 60, "the write failed")
            ready = await http.get("/readyz")
            assert ready.status_code == 503 and "warehouse" in ready.json()["reason"]
            text = await scrape()
            assert value(text, "meterline_consumer_warehouse_up") == 0
            assert value(text, "meterline_consumer_write_failures_total") >= 1
            during = await wait_until_lag(lag, lambda n: n >= 100, "the lag rose")
            await send(kafka_bootstrap, kafka_topic, [codec.encode(event()) for _ in range(150)])
            await wait_until_lag(lag, lambda n: n >= during + 150, "the lag rose further")

            # Back: everything is written and committed, and the lag falls to nothing.
            flaky.down = False
            await wait_until(lambda: pipeline.stats.events_written == 550, 60, "written")
            await wait_until_lag(lag, lambda n: n == 0, "the lag fell")
            assert (await http.get("/readyz")).status_code == 200
            assert value(await scrape(), "meterline_consumer_warehouse_up") == 1
        finally:
            stop.set()
            await asyncio.wait_for(task, 30)
        assert (await http.get("/livez")).status_code == 503


async def wait_until_lag(lag: object, condition: object, what: str, timeout: float = 60) -> float:
    """Scrape until the lag meets ``condition``; the last value seen."""
    assert callable(lag) and callable(condition)
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        seen = await lag()
        if condition(seen):
            return float(seen)
        assert asyncio.get_running_loop().time() < deadline, f"{what}: lag {seen}"
        await asyncio.sleep(0.2)
