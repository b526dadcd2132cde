"""The warehouse goes away while the consumer has events to write: it retries with backoff,
pauses its partitions, commits nothing it has not written, stays in its consumer group past
``max_poll_interval_ms``, and when ClickHouse is back it resumes by itself. Afterwards the
raw table and the rollups hold every event exactly once, to the last token and the last
decimal of cost."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from clickhouse_connect.driver.client import Client
from clickhouse_connect.driver.exceptions import OperationalError

from meterline.common.bus import BusMessage
from meterline.common.clickhouse import RAW_COLUMNS
from meterline.common.codec import UsageEventCodec
from meterline.common.config import GatewayConfig, PriceOverride, TeamConfig
from meterline.common.pricing import PerMillionRates, StaticPrices, TokenCounts
from meterline.consumer.assemble import build_pipeline
from meterline.consumer.batch_log import ClickHouseBatchLog
from meterline.consumer.dead_letter import MemoryDeadLetter
from meterline.consumer.engine_write import EngineWriter
from meterline.consumer.enrich import Enricher
from meterline.consumer.settings import ConsumerSettings
from meterline.consumer.source import KafkaSource
from tests.support.events import million_token_event as event

pytestmark = [pytest.mark.kafka, pytest.mark.clickhouse]

RATES = PerMillionRates.text(
    input=Decimal("2.5"),
    output=Decimal("10"),
    cache_read=Decimal("1.25"),
    cache_write=Decimal("3.125"),
    cache_write_1h=Decimal("5"),
)
CONFIG = GatewayConfig(
    teams=[
        TeamConfig(id="acme"),
        TeamConfig(id="globex", price_overrides=[PriceOverride(multiplier=Decimal("0.7"))]),
    ]
)


class WatchedSource:
    """The real Kafka source, with a record of whether the pipeline has it paused (that a
    paused Kafka source fetches nothing is the message-source contract's to show)."""

    def __init__(self, source: KafkaSource):
        self._source = source
        self.paused = False

    async def start(self) -> None:
        await self._source.start()

    async def poll(self, max_messages: int, timeout: float) -> list[BusMessage]:
        return await self._source.poll(max_messages, timeout)

    async def commit(self, offsets: dict[tuple[str, int], int]) -> None:
        await self._source.commit(offsets)

    def pause(self) -> None:
        self.paused = True
        self._source.pause()

    def resume(self) -> None:
        self.paused = False
        self._source.resume()

    def owns(self, topic: str, partition: int) -> bool:
        return self._source.owns(topic, partition)

    async def keep_alive(self) -> None:
        await self._source.keep_alive()

    async def stop(self) -> None:
        await self._source.stop()


class FlakyClickHouse:
    """The real ClickHouse client, unreachable while ``down`` is set: every call fails the
    way clickhouse-connect fails when the server refuses connections."""

    def __init__(self, client: Client):
        self._client = client
        self.down = False
        self.refused = 0

    def _refuse(self) -> None:
        if self.down:
            self.refused += 1
            raise OperationalError("Error [Errno 111] Connection refused (simulated outage)")

    def insert(self, *args: Any, **kwargs: Any) -> Any:
        self._refuse()
        return self._client.insert(*args, **kwargs)

    def raw_insert(self, *args: Any, **kwargs: Any) -> Any:
        self._refuse()
        return self._client.raw_insert(*args, **kwargs)

    def query(self, *args: Any, **kwargs: Any) -> Any:
        self._refuse()
        return self._client.query(*args, **kwargs)

    def command(self, *args: Any, **kwargs: Any) -> Any:
        self._refuse()
        return self._client.command(*args, **kwargs)


async def produce(bootstrap: str, topic: str, payloads: list[bytes]) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, num_partitions=2, replication_factor=1)])
    finally:
        await admin.close()
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        for i, payload in enumerate(payloads):
            await producer.send(topic, payload, partition=i % 2)
        await producer.flush()
    finally:
        await producer.stop()


async def committed(bootstrap: str, topic: str, group: str) -> int:
    """The group's committed offsets, summed over the topic's two partitions."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=group)
    await consumer.start()
    try:
        total = 0
        for partition in (0, 1):
            total += await consumer.committed(TopicPartition(topic, partition)) or 0
        return total
    finally:
        await consumer.stop()


async def wait_until(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting until {what}"
        await asyncio.sleep(0.05)


async def test_a_warehouse_outage_pauses_the_consumer_and_it_resumes_with_every_event_once(
    kafka_bootstrap: str, kafka_topic: str, clickhouse: Client
) -> None:
    events = [
        event(
            team_id="globex" if i % 3 == 0 else "acme",
            credential_type="byok" if i % 7 == 0 else "system",
            input_tokens=1_000 + i,
            output_tokens=10 + i % 50,
            cached_input_tokens=i % 300,
            user_id=f"user-{i % 11}",
            tags=[f"tag-{i % 4}"],
        )
        for i in range(1_200)
    ]
    codec = UsageEventCodec()
    await produce(kafka_bootstrap, kafka_topic, [codec.encode(e) for e in events])

    group = f"outage-{kafka_topic}"
    flaky = FlakyClickHouse(clickhouse)
    flaky.down = True
    # max_poll_interval_ms well below the outage: the consumer must stay in its group anyway.
    source = WatchedSource(
        KafkaSource(
            kafka_bootstrap,
            kafka_topic,
            group,
            max_poll_interval_ms=2_000,
            session_timeout_ms=6_000,
        )
    )
    pipeline = build_pipeline(
        ConsumerSettings(max_batch_rows=200, max_batch_seconds=0.2, insert_retry_max_seconds=0.5),
        source=source,
        writer=EngineWriter(
            flaky,  # type: ignore[arg-type]
            codec,
            Enricher(StaticPrices({("openai", "gpt-x"): RATES}), CONFIG),
        ),
        dead_letter=MemoryDeadLetter(),
        batch_log=ClickHouseBatchLog(flaky, group),  # type: ignore[arg-type]
        codec=codec,
    )
    stop = asyncio.Event()
    task = asyncio.create_task(pipeline.run(stop))
    try:
        await wait_until(pipeline.warehouse_down.is_set, 60, "the first write failed")
        await asyncio.sleep(4)  # twice max_poll_interval_ms
        assert not task.done()
        assert source.paused, "the partitions are paused during the outage"
        assert pipeline.stats.insert_failures >= 3, "it kept retrying"
        assert pipeline.stats.events_written == 0
        assert await committed(kafka_bootstrap, kafka_topic, group) == 0
        assert clickhouse.command("SELECT count() FROM usage_events") == 0

        flaky.down = False
        await wait_until(
            lambda: pipeline.stats.events_written == len(events), 60, "every event was written"
        )
        assert not pipeline.warehouse_down.is_set()
        assert not source.paused, "the partitions resumed by themselves"
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)
    assert await committed(kafka_bootstrap, kafka_topic, group) == len(events)

    # Exactly once, to the token and the cent: compare with the same events priced here.
    reference = Enricher(StaticPrices({("openai", "gpt-x"): RATES}), CONFIG)
    rows = [reference.row(e) for e in events]
    column = {name: i for i, name in enumerate(RAW_COLUMNS)}
    want = (
        len(events),
        sum(r[column["input_tokens"]] for r in rows),
        sum(r[column["market_cost"]] for r in rows),
        sum(r[column["total_cost"]] for r in rows),
    )
    raw = clickhouse.query(
        "SELECT count(), uniqExact(event_id), sum(input_tokens), sum(market_cost),"
        " sum(total_cost) FROM usage_events"
    ).result_rows[0]
    assert (raw[0], raw[2], raw[3], raw[4]) == want
    assert raw[1] == len(events)
    hourly = clickhouse.query(
        "SELECT sum(request_count), sum(input_tokens), sum(market_cost), sum(total_cost)"
        " FROM usage_hourly"
    ).result_rows[0]
    assert tuple(hourly) == want
    # The override and BYOK really took part: totals differ from market costs.
    assert want[3] < want[2]
    assert flaky.refused >= 3
    byok = events[0]
    assert byok.credential_type == "byok"
    assert RATES.cost(TokenCounts(byok.input_tokens, byok.output_tokens)) > 0
