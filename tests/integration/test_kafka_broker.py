"""The real broker works with aiokafka as the services use it: an idempotent producer with
acks=all, and a consumer group that commits by hand."""

from __future__ import annotations

import uuid

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

pytestmark = pytest.mark.kafka


async def test_messages_round_trip_through_a_consumer_group(kafka_bootstrap: str) -> None:
    topic = f"broker-check-{uuid.uuid4().hex[:8]}"
    producer = AIOKafkaProducer(
        bootstrap_servers=kafka_bootstrap,
        enable_idempotence=True,
        acks="all",
        compression_type="lz4",
    )
    await producer.start()
    try:
        for n in range(100):
            await producer.send(topic, key=f"team-{n % 3}".encode(), value=f"event-{n}".encode())
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
    received: list[bytes] = []
    try:
        while len(received) < 100:
            batches = await consumer.getmany(timeout_ms=5000)
            assert batches, "no messages within 5 s"
            for records in batches.values():
                received.extend(r.value for r in records if r.value is not None)
        await consumer.commit()
    finally:
        await consumer.stop()
    assert sorted(received) == sorted(f"event-{n}".encode() for n in range(100))
