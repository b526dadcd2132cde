"""KafkaPublisher against a real broker: everything published before stop() is in the
topic afterwards, decodable, keyed by team."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import pytest
from aiokafka import AIOKafkaConsumer

from meterline.common.codec import UsageEventCodec
from meterline.common.events import UsageEvent
from meterline.ingress.publishing.kafka import KafkaPublisher

pytestmark = pytest.mark.kafka

COUNT = 200


def event(n: int) -> UsageEvent:
    return UsageEvent(
        event_id=UsageEvent.new_id(),
        team_id=f"team-{n % 3}",
        api_key_name="default",
        api_surface="chat_completions",
        started_at=datetime(2026, 3, 2, 12, n // 60, n % 60, tzinfo=UTC),
        duration_ms=100 + n,
        time_to_first_token_ms=n if n % 2 else None,
        model_requested="openai/gpt-4o",
        model="gpt-4o",
        provider="openai",
        credential_type="system",
        streamed=bool(n % 2),
        status="success",
        http_status=200,
        input_tokens=1000 + n,
        output_tokens=50 + n,
        cached_input_tokens=n,
        user_id=f"user-{n % 7}" if n % 5 else None,
        tags=sorted({f"plan:{n % 3}", f"feature:{n % 4}"}),
        finish_reason="stop",
        raw_usage=f'{{"prompt_tokens":{1000 + n}}}',
    )


async def test_every_published_event_reaches_the_topic(
    kafka_bootstrap: str, kafka_topic: str
) -> None:
    publisher = KafkaPublisher(kafka_bootstrap, kafka_topic, flush_timeout_seconds=30)
    await publisher.start()
    sent = [event(n) for n in range(COUNT)]
    for e in sent:
        publisher.publish(e)
    await publisher.stop()
    assert (publisher.sent, publisher.dropped, publisher.buffered) == (COUNT, 0, 0)

    codec = UsageEventCodec()
    consumer = AIOKafkaConsumer(
        kafka_topic,
        bootstrap_servers=kafka_bootstrap,
        group_id=f"check-{kafka_topic}",
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await consumer.start()
    received: list[tuple[bytes | None, UsageEvent]] = []
    try:
        async with asyncio.timeout(30):
            while len(received) < COUNT:
                batches = await consumer.getmany(timeout_ms=1000)
                for records in batches.values():
                    received.extend((r.key, codec.decode(r.value)) for r in records)
    finally:
        await consumer.stop()

    by_id = {e.event_id: e for _, e in received}
    assert len(received) == COUNT
    assert by_id == {e.event_id: e for e in sent}
    assert all(key == e.team_id.encode() for key, e in received)
