"""The real broker works with aiokafka as the services use it: an idempotent producer with
acks=all, and a consumer group that commits by hand.

The broker comes from the ``kafka_bootstrap`` session fixture (tests/conftest.py): a
``LocalKafkaBroker``, or the cluster named by ``KAFKA_BOOTSTRAP_SERVERS``."""

from __future__ import annotations

import uuid

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

pytestmark = pytest.mark.kafka

COUNT = 100


async def test_messages_round_trip_through_a_consumer_group(kafka_bootstrap: str) -> None:
    topic = f"broker-check-{uuid.uuid4().hex[:8]}"  # new, so auto-created with 4 partitions
    sent = {f"key-{n}".encode(): f"event-{n}".encode() for n in range(COUNT)}
    producer = AIOKafkaProducer(
        bootstrap_servers=kafka_bootstrap,
        enable_idempotence=True,
        acks="all",
        compression_type="lz4",
    )
    await producer.start()
    try:
        for key, value in sent.items():
            await producer.send(topic, key=key, value=value)
        await producer.flush()
    finally:
        await producer.stop()

    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=kafka_bootstrap,
        group_id=f"group-{topic}",
        enable_auto_commit=False,
        auto_offset_reset="earliest",
    )
    await consumer.start()
    received: dict[bytes, bytes] = {}
    try:
        while len(received) < COUNT:
            batches = await consumer.getmany(timeout_ms=10_000)
            assert batches, f"no messages within 10 s after {len(received)}"
            for records in batches.values():
                for record in records:
                    assert record.key is not None and record.value is not None
                    received[record.key] = record.value
        await consumer.commit()
        partitions = consumer.assignment()
        committed = [await consumer.committed(tp) for tp in partitions]
    finally:
        await consumer.stop()

    assert received == sent
    assert {tp.partition for tp in partitions} == {0, 1, 2, 3}
    assert sum(offset or 0 for offset in committed) == COUNT
