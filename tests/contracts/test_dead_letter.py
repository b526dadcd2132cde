"""The consumer's ``DeadLetterSink`` contract, against the memory sink and a real Kafka
topic: once ``flush`` returns, every rejected message sent is kept once, with its key, its
original bytes, the reason and where it came from; those of one key in the order sent
(Kafka keeps order within a partition, and a key is one partition)."""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
from aiokafka import AIOKafkaConsumer

from meterline.common.bus import BusMessage
from meterline.consumer.dead_letter import DeadLetterSink, KafkaDeadLetter, MemoryDeadLetter
from meterline.consumer.decode import Rejected

Kept = tuple[bytes | None, bytes, str, str]
"""(key, value, reason, source topic/partition/offset)."""


async def kafka_kept(bootstrap: str, topic: str, count: int) -> list[Kept]:
    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest", enable_auto_commit=False
    )
    await consumer.start()
    kept: list[Kept] = []
    try:
        async with asyncio.timeout(30):
            while len(kept) < count:
                for records in (await consumer.getmany(timeout_ms=500)).values():
                    for record in records:
                        headers = {name: value.decode() for name, value in record.headers}
                        kept.append(
                            (record.key, record.value, headers["reason"], headers["source"])
                        )
    finally:
        await consumer.stop()
    return kept


@pytest.fixture(params=["memory", pytest.param("kafka", marks=pytest.mark.kafka)])
async def sink(
    request: pytest.FixtureRequest,
) -> AsyncIterator[tuple[DeadLetterSink, Callable[[int], Awaitable[list[Kept]]]]]:
    """The sink, and what it kept (waiting for ``count`` where that takes time)."""
    if request.param == "memory":
        memory = MemoryDeadLetter()

        async def memory_kept(count: int) -> list[Kept]:
            return [
                (
                    r.message.key,
                    r.message.value,
                    r.reason,
                    f"{r.message.topic}/{r.message.partition}/{r.message.offset}",
                )
                for r in memory.rejected
            ]

        yield memory, memory_kept
        return
    bootstrap: str = request.getfixturevalue("kafka_bootstrap")
    topic = f"dead-letters-{uuid.uuid4().hex[:10]}"
    kafka = KafkaDeadLetter(bootstrap, topic)
    await kafka.start()
    try:
        yield kafka, lambda count: kafka_kept(bootstrap, topic, count)
    finally:
        await kafka.stop()


async def test_what_was_sent_is_kept_once_flushed(
    sink: tuple[DeadLetterSink, Callable[[int], Awaitable[list[Kept]]]],
) -> None:
    dead_letter, kept = sink
    rejected = [
        Rejected(BusMessage("usage", 2, 40, b"acme", b"\x00not avro"), "undecodable: bad"),
        Rejected(BusMessage("usage", 2, 41, None, b"{}"), "invalid: no event id"),
        Rejected(BusMessage("usage", 3, 7, b"globex", b"\xc3\x01"), "enrich failed: boom"),
        Rejected(BusMessage("usage", 2, 42, b"acme", b"\x02"), "invalid: negative tokens"),
    ]
    for one in rejected:
        await dead_letter.send(one)
    await dead_letter.flush()

    got = await kept(4)
    assert Counter(got) == Counter(
        [
            (b"acme", b"\x00not avro", "undecodable: bad", "usage/2/40"),
            (None, b"{}", "invalid: no event id", "usage/2/41"),
            (b"globex", b"\xc3\x01", "enrich failed: boom", "usage/3/7"),
            (b"acme", b"\x02", "invalid: negative tokens", "usage/2/42"),
        ]
    )
    assert [source for key, _, _, source in got if key == b"acme"] == ["usage/2/40", "usage/2/42"]
