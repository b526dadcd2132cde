"""Poison and foreign messages on the real Kafka broker, into the real warehouse: each goes
to the dead-letter topic with its key, its original bytes, the reason and where it came
from; the good events around them are written; the consumer commits past all of them and
carries on. When most messages fail, the circuit breaker stops the consumer and says why."""

from __future__ import annotations

import asyncio
import os

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from clickhouse_connect.driver.client import Client

from meterline.common.codec import MARKER, UsageEventCodec
from meterline.common.config import GatewayConfig, TeamConfig
from meterline.common.pricing import StaticPrices
from meterline.consumer.assemble import build_pipeline
from meterline.consumer.batch_log import ClickHouseBatchLog
from meterline.consumer.dead_letter import CircuitOpen, KafkaDeadLetter
from meterline.consumer.engine_write import EngineWriter
from meterline.consumer.enrich import Enricher
from meterline.consumer.pipeline import Pipeline
from meterline.consumer.settings import ConsumerSettings
from meterline.consumer.source import KafkaSource
from tests.support.events import usage_event

pytestmark = [pytest.mark.kafka, pytest.mark.clickhouse]

CODEC = UsageEventCodec()


def pipeline(
    bootstrap: str, topic: str, group: str, client: Client, dead_letter: KafkaDeadLetter, **kw: int
) -> Pipeline:
    settings = ConsumerSettings(max_batch_rows=50, max_batch_seconds=0.1, **kw)  # type: ignore[arg-type]
    return build_pipeline(
        settings,
        source=KafkaSource(bootstrap, topic, group),
        writer=EngineWriter(
            client, CODEC, Enricher(StaticPrices({}), GatewayConfig(teams=[TeamConfig(id="acme")]))
        ),
        dead_letter=dead_letter,
        batch_log=ClickHouseBatchLog(client, group),
        codec=CODEC,
    )


async def produce(bootstrap: str, topic: str, messages: list[tuple[bytes, bytes]]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        for key, value in messages:
            # One partition: the test reads offsets in the order it wrote them.
            await producer.send_and_wait(topic, value=value, key=key, partition=0)
    finally:
        await producer.stop()


async def read_all(bootstrap: str, topic: str, count: int) -> list[object]:
    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest", enable_auto_commit=False
    )
    await consumer.start()
    records: list[object] = []
    try:
        async with asyncio.timeout(30):
            while len(records) < count:
                batch = await consumer.getmany(timeout_ms=500)
                for partition_records in batch.values():
                    records.extend(partition_records)
        # Nothing more than expected arrives.
        extra = await consumer.getmany(timeout_ms=500)
        records.extend(r for rs in extra.values() for r in rs)
    finally:
        await consumer.stop()
    return records


async def committed(bootstrap: str, topic: str, group: str) -> int | None:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=group)
    await consumer.start()
    try:
        result: int | None = await consumer.committed(TopicPartition(topic, 0))
        return result
    finally:
        await consumer.stop()


async def test_poison_messages_are_dead_lettered_with_reason_and_original_bytes(
    kafka_bootstrap: str, kafka_topic: str, clickhouse: Client
) -> None:
    good = [usage_event() for _ in range(5)]
    unknown_fingerprint = MARKER + b"\x01\x02\x03\x04\x05\x06\x07\x08" + b"\x00" * 20
    invalid = CODEC.encode(usage_event(input_tokens=10, cached_input_tokens=20))
    poison = [
        (b"k-garbage", b"not avro at all"),
        (b"k-fingerprint", unknown_fingerprint),
        (b"k-invalid", invalid),
        (b"k-truncated", CODEC.encode(usage_event())[:-3]),
    ]
    messages = [
        (b"acme", CODEC.encode(good[0])),
        poison[0],
        (b"acme", CODEC.encode(good[1])),
        poison[1],
        poison[2],
        (b"acme", CODEC.encode(good[2])),
        poison[3],
        (b"acme", CODEC.encode(good[3])),
        (b"acme", CODEC.encode(good[4])),
    ]
    await produce(kafka_bootstrap, kafka_topic, messages)

    dlq_topic = f"{kafka_topic}-dlq"
    group = f"group-{os.urandom(4).hex()}"
    dead_letter = KafkaDeadLetter(kafka_bootstrap, dlq_topic)
    await dead_letter.start()
    consumer = pipeline(
        kafka_bootstrap,
        kafka_topic,
        group,
        clickhouse,
        dead_letter,
        dead_letter_breaker_min_messages=100,
    )
    stop = asyncio.Event()
    task = asyncio.create_task(consumer.run(stop))
    try:
        async with asyncio.timeout(60):
            while True:
                [(rows,)] = clickhouse.query("SELECT count() FROM usage_events").result_rows
                if rows == len(good) and consumer.idle.is_set():
                    break
                await asyncio.sleep(0.1)
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)
        await dead_letter.stop()

    ids = {str(r[0]) for r in clickhouse.query("SELECT event_id FROM usage_events").result_rows}
    assert ids == {e.event_id for e in good}
    assert consumer.stats.events_rejected == len(poison)

    records = await read_all(kafka_bootstrap, dlq_topic, len(poison))
    # The dead-letter topic may have several partitions (keys spread them): order by source.
    records.sort(key=lambda r: int(dict(r.headers)["source"].rsplit(b"/", 1)[1]))  # type: ignore[attr-defined]
    assert [(r.key, r.value) for r in records] == poison  # type: ignore[attr-defined]
    headers = [dict(r.headers) for r in records]  # type: ignore[attr-defined]
    reasons = [h["reason"].decode() for h in headers]
    assert reasons[0].startswith("undecodable: not Avro single-object encoding")
    assert reasons[1] == (
        "undecodable: unknown schema fingerprint " + unknown_fingerprint[2:10].hex()
    )
    assert reasons[2].startswith("invalid: ") and "exceed input_tokens" in reasons[2]
    assert reasons[3].startswith("undecodable: ")
    offsets = [i for i, m in enumerate(messages) if m in poison]
    assert [h["source"].decode() for h in headers] == [f"{kafka_topic}/0/{o}" for o in offsets]

    # Everything was consumed, the poison included: a restart would not see it again.
    assert await committed(kafka_bootstrap, kafka_topic, group) == len(messages)


async def test_the_circuit_breaker_stops_the_consumer_when_most_messages_fail(
    kafka_bootstrap: str, kafka_topic: str, clickhouse: Client
) -> None:
    messages = [(b"x", b"garbage %d" % n) for n in range(30)]
    await produce(kafka_bootstrap, kafka_topic, messages)
    group = f"group-{os.urandom(4).hex()}"
    dead_letter = KafkaDeadLetter(kafka_bootstrap, f"{kafka_topic}-dlq")
    await dead_letter.start()
    consumer = pipeline(
        kafka_bootstrap,
        kafka_topic,
        group,
        clickhouse,
        dead_letter,
        dead_letter_breaker_min_messages=10,
    )
    try:
        with pytest.raises(CircuitOpen, match=r"10 of the last 10 messages failed.*undecodable"):
            await asyncio.wait_for(consumer.run(asyncio.Event()), 60)
    finally:
        await dead_letter.stop()
    # It stopped rather than moving the stream into the dead-letter topic: the group has
    # not committed past the messages it gave up on.
    position = await committed(kafka_bootstrap, kafka_topic, group)
    assert position is None or position < len(messages)
