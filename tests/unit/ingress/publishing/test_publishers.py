"""Publishers: the in-process bus, memory, and the Kafka publisher's buffer without a broker
(the broker round trip is in tests/integration/ingress)."""

from __future__ import annotations

import asyncio
import time

from meterline.common.bus import InProcessBus
from meterline.common.codec import UsageEventCodec
from meterline.ingress.publishing.bus import BusPublisher
from meterline.ingress.publishing.kafka import KafkaPublisher
from meterline.ingress.publishing.memory import MemoryPublisher
from tests.support.events import numbered_event, usage_event


async def test_memory_publisher_keeps_events() -> None:
    publisher = MemoryPublisher()
    await publisher.start()
    publisher.publish(first := usage_event())
    await publisher.stop()
    assert publisher.events == [first]
    assert publisher.started and publisher.stopped


async def test_bus_publisher_puts_encoded_events_on_the_bus_keyed_by_team() -> None:
    bus = InProcessBus()
    publisher = BusPublisher(bus)
    sent = [numbered_event(n, team=f"team-{n}") for n in range(3)]
    for e in sent:
        publisher.publish(e)
    batch = await bus.get_batch(10, timeout=1)
    codec = UsageEventCodec()
    assert [codec.decode(m.value) for m in batch] == sent
    assert [m.key for m in batch] == [b"team-0", b"team-1", b"team-2"]
    assert publisher.sent == 3


async def test_bus_publisher_counts_a_full_bus_and_never_raises() -> None:
    publisher = BusPublisher(InProcessBus(max_pending=1))
    publisher.publish(usage_event())
    publisher.publish(usage_event())
    assert (publisher.sent, publisher.failed) == (1, 1)


async def test_kafka_publisher_without_kafka_buffers_up_to_the_bound_then_drops() -> None:
    # Nothing listens on port 9: every connection attempt fails at once.
    publisher = KafkaPublisher(
        "127.0.0.1:9", "usage-events", max_buffered=5, flush_timeout_seconds=0.5
    )
    await publisher.start()
    started = time.perf_counter()
    for n in range(8):
        publisher.publish(numbered_event(n))
    assert time.perf_counter() - started < 0.1  # publish() never waits for Kafka
    assert (publisher.buffered, publisher.dropped) == (5, 3)
    await asyncio.sleep(0.2)
    assert publisher.sent == 0
    await publisher.stop()
    # What Kafka never took is counted, not silently forgotten.
    assert (publisher.buffered, publisher.dropped, publisher.sent) == (0, 8, 0)
    publisher.publish(usage_event())
    assert publisher.dropped == 9
