"""Where messages come from: a Kafka consumer group, or the in-process bus.

Both hand out ``BusMessage`` batches and take commits of "next offset to read" per
partition, which is all the pipeline needs to know about either."""

from __future__ import annotations

import logging
from typing import Protocol, runtime_checkable

from meterline.common.bus import Bus, BusMessage

# The Kafka group member has its own module (it is most of the code); named here too.
from meterline.consumer.kafka_source import KafkaSource as KafkaSource

log = logging.getLogger("meterline.consumer")


class MessageSource(Protocol):
    async def start(self) -> None: ...

    async def poll(self, max_messages: int, timeout: float) -> list[BusMessage]: ...

    async def commit(self, offsets: dict[tuple[str, int], int]) -> None:
        """Mark everything before ``offsets[(topic, partition)]`` as durably written."""
        ...

    def pause(self) -> None:
        """Stop fetching while the warehouse cannot keep up (no unbounded buffering)."""
        ...

    def resume(self) -> None: ...

    def owns(self, topic: str, partition: int) -> bool:
        """Whether this member still reads the partition. A rebalance may give it to
        another member, which reads it from the last commit: a batch of it still open here
        must then be dropped unwritten, or its messages would be written twice, in batches
        cut differently (and so with other deduplication tokens)."""
        ...

    async def keep_alive(self) -> None:
        """Called every few seconds while paused: stay a live member of the consumer group
        without taking more messages in."""
        ...

    async def stop(self) -> None: ...


@runtime_checkable
class ObservableSource(Protocol):
    """A source that can say which partitions it reads and how far behind it is."""

    def assignment(self) -> set[tuple[str, int]]: ...

    async def lag(self) -> dict[tuple[str, int], int]:
        """Per assigned partition: messages after the last committed offset."""
        ...


class BusSource:
    """The embedded default's source: the bus's one partition (the local log, or memory)."""

    def __init__(self, bus: Bus):
        self._bus = bus
        self._paused = False

    async def start(self) -> None:
        return None

    async def poll(self, max_messages: int, timeout: float) -> list[BusMessage]:
        if self._paused:
            return []
        return await self._bus.get_batch(max_messages, timeout)

    async def commit(self, offsets: dict[tuple[str, int], int]) -> None:
        for offset in offsets.values():
            await self._bus.commit(offset)

    def pause(self) -> None:
        self._paused = True

    def resume(self) -> None:
        self._paused = False

    def owns(self, topic: str, partition: int) -> bool:
        return True  # the bus has one reader, which is this one

    def assignment(self) -> set[tuple[str, int]]:
        return {(self._bus.topic, 0)}

    async def lag(self) -> dict[tuple[str, int], int]:
        # What the bus holds that the pipeline has not taken yet (what it took but has not
        # committed is the open batch, at most a batch).
        return {(self._bus.topic, 0): self._bus.pending}

    async def keep_alive(self) -> None:
        return None

    async def stop(self) -> None:
        return None
