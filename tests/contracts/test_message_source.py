"""The consumer's ``MessageSource`` contract, run against every implementation: the memory
bus, the local log on disk, and a real Kafka broker. Whatever the pipeline reads from, a
message is handed out once and in order, a paused source hands out nothing, and (for the
durable ones) a new reader goes on from the last commit, handing out again exactly what was
not committed."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiokafka import AIOKafkaProducer

from meterline.common.bus import BusMessage, InProcessBus
from meterline.common.local_log import LocalLog
from meterline.consumer.kafka_source import KafkaSource
from meterline.consumer.source import BusSource, MessageSource
from tests.contracts.conftest import gather_until

KEY = b"acme"


class Subject:
    """One implementation, with what a test needs around it: putting messages in, and a
    new reader on the same messages (None where nothing outlives the reader)."""

    durable = True

    def __init__(self) -> None:
        self.source: MessageSource

    async def produce(self, values: list[bytes]) -> None:
        raise NotImplementedError

    async def reopen(self) -> None:
        raise NotImplementedError

    async def close(self) -> None:
        await self.source.stop()


class MemorySubject(Subject):
    durable = False

    def __init__(self) -> None:
        self.bus = InProcessBus()
        self.source = BusSource(self.bus)

    async def produce(self, values: list[bytes]) -> None:
        for value in values:
            assert self.bus.publish_nowait(KEY, value)


class LocalLogSubject(Subject):
    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.log = LocalLog(directory, fsync_seconds=0)
        self.source = BusSource(self.log)

    async def start(self) -> None:
        await self.log.start()

    async def produce(self, values: list[bytes]) -> None:
        for value in values:
            assert self.log.publish_nowait(KEY, value)

    async def reopen(self) -> None:
        await self.source.stop()
        await self.log.close()
        self.log = LocalLog(self.directory, fsync_seconds=0)
        await self.log.start()
        self.source = BusSource(self.log)

    async def close(self) -> None:
        await super().close()
        await self.log.close()


class KafkaSubject(Subject):
    def __init__(self, bootstrap: str) -> None:
        self.bootstrap = bootstrap
        self.topic = f"contract-{uuid.uuid4().hex[:10]}"
        self.group = f"contract-{uuid.uuid4().hex[:10]}"
        self.source = self._new_source()

    def _new_source(self) -> KafkaSource:
        return KafkaSource(self.bootstrap, self.topic, self.group, session_timeout_ms=6000)

    async def produce(self, values: list[bytes]) -> None:
        producer = AIOKafkaProducer(bootstrap_servers=self.bootstrap, acks="all")
        await producer.start()
        try:
            for value in values:
                # One key: one partition, so the order is the one the contract asks for.
                await producer.send_and_wait(self.topic, value, key=KEY)
        finally:
            await producer.stop()

    async def reopen(self) -> None:
        await self.source.stop()
        self.source = self._new_source()
        await self.source.start()


@pytest.fixture(params=["memory", "local_log", pytest.param("kafka", marks=pytest.mark.kafka)])
async def subject(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Subject]:
    made: Subject
    if request.param == "memory":
        made = MemorySubject()
    elif request.param == "local_log":
        made = LocalLogSubject(tmp_path / "usage-log")
        await made.start()
    else:
        made = KafkaSubject(request.getfixturevalue("kafka_bootstrap"))
        # Kafka creates the topic on first use: a message first, so the group has a
        # partition to be given, then the source, reading from the earliest offset.
    try:
        yield made
    finally:
        await made.close()


async def start(subject: Subject, values: list[bytes]) -> None:
    await subject.produce(values)
    await subject.source.start()


async def read(subject: Subject, count: int, seconds: float = 30) -> list[BusMessage]:
    return await gather_until(lambda: subject.source.poll(1000, 0.2), count, seconds)


def values(count: int, tag: str = "m") -> list[bytes]:
    return [f"{tag}-{i}".encode() for i in range(count)]


async def test_what_is_produced_is_handed_out_once_in_order(subject: Subject) -> None:
    await start(subject, values(20))
    got = await read(subject, 20)
    assert [m.value for m in got] == values(20)
    assert all(m.key == KEY for m in got)
    assert len({(m.topic, m.partition) for m in got}) == 1
    offsets = [m.offset for m in got]
    assert offsets == sorted(set(offsets))

    await subject.produce(values(5, "later"))
    more = await read(subject, 5)
    assert [m.value for m in more] == values(5, "later")
    assert more[0].offset > offsets[-1]
    assert await subject.source.poll(1000, 0.5) == []


async def test_a_source_owns_the_partitions_it_hands_out(subject: Subject) -> None:
    """The pipeline writes a batch only while its source still reads the partition."""
    await start(subject, values(3))
    got = await read(subject, 3)
    assert all(subject.source.owns(m.topic, m.partition) for m in got)
    await subject.source.stop()
    if isinstance(subject.source, KafkaSource):
        # A member that left its group reads nothing: a batch it still held is not its own.
        assert not subject.source.owns(got[0].topic, got[0].partition)


async def test_a_paused_source_hands_out_nothing_until_it_is_resumed(subject: Subject) -> None:
    await start(subject, values(3))
    first = await read(subject, 3)
    assert len(first) == 3

    subject.source.pause()
    await subject.produce(values(4, "while-paused"))
    await subject.source.keep_alive()
    assert await read(subject, 1, seconds=2) == []

    subject.source.resume()
    assert [m.value for m in await read(subject, 4)] == values(4, "while-paused")


async def test_a_new_reader_goes_on_from_the_commit(subject: Subject) -> None:
    if not subject.durable:
        pytest.skip("the memory bus does not outlive its reader: nothing to go on from")
    await start(subject, values(10))
    got = await read(subject, 10)
    assert len(got) == 10
    sixth = got[5]
    await subject.source.commit({(sixth.topic, sixth.partition): sixth.offset + 1})

    await subject.reopen()
    again = await read(subject, 4)
    assert [m.value for m in again] == values(10)[6:]
    assert [m.offset for m in again] == [m.offset for m in got[6:]]
    assert await subject.source.poll(1000, 0.5) == []
