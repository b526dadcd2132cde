"""The ingress's ``UsagePublisher`` contract, against every implementation: the memory
list, the embedded default's bus (in memory, and the local log on disk) and a real Kafka
topic. ``publish`` takes every event without waiting or raising, and once ``stop``
returns, every event published is delivered whole, once, in the order published, and
counted as sent."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer

from meterline.common.bus import Bus, InProcessBus
from meterline.common.codec import UsageEventCodec
from meterline.common.events import UsageEvent
from meterline.common.local_log import LocalLog
from meterline.ingress.publishing.bus import BusPublisher
from meterline.ingress.publishing.kafka import KafkaPublisher
from meterline.ingress.publishing.memory import MemoryPublisher
from meterline.ingress.publishing.protocol import UsagePublisher
from meterline.ingress.spool import Spool
from tests.contracts.conftest import gather_until, usage_event

CODEC = UsageEventCodec()
Delivered = Callable[[int], Awaitable[list[UsageEvent]]]
"""What reached the far side, waiting for up to ``count`` events where that takes time."""


def bus_delivered(bus: Bus) -> Delivered:
    async def delivered(count: int) -> list[UsageEvent]:
        messages = await gather_until(lambda: bus.get_batch(1000, 0.2), count, seconds=5)
        return [CODEC.decode(m.value) for m in messages]

    return delivered


def kafka_delivered(bootstrap: str, topic: str) -> Delivered:
    async def delivered(count: int) -> list[UsageEvent]:
        consumer = AIOKafkaConsumer(
            topic,
            bootstrap_servers=bootstrap,
            auto_offset_reset="earliest",
            enable_auto_commit=False,
        )
        await consumer.start()
        events: list[UsageEvent] = []
        try:
            async with asyncio.timeout(30):
                while len(events) < count:
                    for records in (await consumer.getmany(timeout_ms=500)).values():
                        events += [CODEC.decode(r.value) for r in records]
        finally:
            await consumer.stop()
        return events

    return delivered


@pytest.fixture(
    params=["memory", "bus", "local_log", pytest.param("kafka", marks=pytest.mark.kafka)]
)
async def publisher(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[tuple[UsagePublisher, Delivered]]:
    made: UsagePublisher
    delivered: Delivered
    local_log: LocalLog | None = None
    if request.param == "memory":
        memory = MemoryPublisher()

        async def memory_delivered(count: int) -> list[UsageEvent]:
            return list(memory.events)

        made, delivered = memory, memory_delivered
    elif request.param == "bus":
        bus = InProcessBus()
        made, delivered = BusPublisher(bus), bus_delivered(bus)
    elif request.param == "local_log":
        local_log = LocalLog(tmp_path / "usage-log", fsync_seconds=0)
        await local_log.start()
        made, delivered = BusPublisher(local_log), bus_delivered(local_log)
    else:
        bootstrap: str = request.getfixturevalue("kafka_bootstrap")
        topic = f"contract-{uuid.uuid4().hex[:10]}"
        made = KafkaPublisher(bootstrap, topic, spool=Spool(tmp_path / "spool", 1 << 20))
        delivered = kafka_delivered(bootstrap, topic)
    try:
        yield made, delivered
    finally:
        if local_log is not None:
            await local_log.close()


def by_team(events: list[UsageEvent], team: str) -> list[str]:
    return [e.event_id for e in events if e.team_id == team]


async def test_every_event_published_is_delivered_once_in_order_and_counted(
    publisher: tuple[UsagePublisher, Delivered],
) -> None:
    publish, delivered = publisher
    await publish.start()
    events = [usage_event(team_id=("acme", "globex")[i % 2]) for i in range(50)]
    for event in events:
        publish.publish(event)
    await publish.stop()

    got = await delivered(len(events))
    assert sorted(e.event_id for e in got) == sorted(e.event_id for e in events)
    assert {e.event_id: e for e in got} == {e.event_id: e for e in events}
    # Kafka keeps order per partition, and a team is one partition (the key).
    for team in ("acme", "globex"):
        assert by_team(got, team) == by_team(events, team)
    assert publish.metrics()["sent"] == len(events)
