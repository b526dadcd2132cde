"""KafkaSource's recovery from a consumer that cannot go on, with stand-in consumers (the
real broker is in the integration and fault tests; this failure cannot be caused there on
demand)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest
from aiokafka.errors import KafkaError

from meterline.consumer import source as source_module
from meterline.consumer.source import KafkaSource


@dataclass
class Record:
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes


class StandInConsumer:
    def __init__(self, fails: bool, records: list[Record]):
        self.fails = fails
        self.records = records
        self.started = False
        self.stopped = False
        self.paused_now: set[Any] = set()

    async def start(self) -> None:
        self.started = True

    async def stop(self) -> None:
        self.stopped = True

    async def getmany(self, timeout_ms: int, max_records: int) -> dict[Any, list[Record]]:
        if self.fails:
            raise KafkaError("Unexpected error during coordination RuntimeError('closed')")
        return {("t", 0): self.records[:max_records]}

    def assignment(self) -> set[Any]:
        return {("t", 0)}

    def pause(self, *partitions: Any) -> None:
        self.paused_now |= set(partitions)

    def resume(self, *partitions: Any) -> None:
        self.paused_now -= set(partitions)


class StandInSource(KafkaSource):
    def __init__(self, consumers: list[StandInConsumer]):
        super().__init__("localhost:9092", "t", "group")
        self.consumers = consumers
        self.made: list[StandInConsumer] = []

    def _new_consumer(self) -> object:
        consumer = self.consumers[len(self.made)]
        self.made.append(consumer)
        return consumer


@pytest.fixture(autouse=True)
def no_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(source_module, "RESTART_BACKOFF_SECONDS", 0)


async def test_a_consumer_whose_coordination_died_is_replaced() -> None:
    record = Record("t", 0, 7, None, b"body")
    failed, fresh = StandInConsumer(True, []), StandInConsumer(False, [record])
    source = StandInSource([failed, fresh])
    await source.start()

    assert await source.poll(10, 0.1) == []  # the failure: no messages, no exception
    assert failed.stopped and fresh.started
    (message,) = await source.poll(10, 0.1)
    assert (message.topic, message.partition, message.offset, message.value) == ("t", 0, 7, b"body")


async def test_a_paused_source_stays_paused_across_a_replacement() -> None:
    failed, fresh = StandInConsumer(True, []), StandInConsumer(False, [])
    source = StandInSource([failed, fresh])
    await source.start()
    source.pause()

    await source.poll(10, 0.1)
    assert fresh.paused_now == {("t", 0)}
    source.resume()
    assert fresh.paused_now == set()
