"""The bus of the embedded default: the ingress publishes encoded usage events into it and
the consumer pipeline reads them, in one process, without Kafka.

Two implementations behave like one Kafka partition (ordered offsets, a committed position)
so the consumer pipeline runs unchanged on either:

- ``LocalLog`` (``local_log.py``): the default, on disk in the data directory; what was
  answered survives a crash and a restart.
- ``InProcessBus``: memory only, for tests and for a deployment that turns the log off;
  what the consumer had not written yet is lost when the process ends.

Identity: a batch's record in the batch log and its insert deduplication token are made of
``topic``, partition and offsets. Offsets alone start again somewhere (a new process, a
wiped log), and ClickHouse would drop a new batch whose token an old one used. So each bus
names itself with an identity of its own in ``topic``: the local log's id, made once when
the log is created (its offsets go on across restarts), or, for the memory bus, one per
process."""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True, slots=True)
class BusMessage:
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes


class Bus(Protocol):
    @property
    def topic(self) -> str:
        """The topic name and this bus's identity (see the module's docstring)."""
        ...

    def publish_nowait(self, key: bytes | None, value: bytes) -> bool:
        """Take one message without waiting; False (and counted in ``dropped``) when it
        cannot, because the caller's response must never wait for the bus."""
        ...

    @property
    def dropped(self) -> int: ...

    @property
    def pending(self) -> int:
        """Messages taken but not yet handed to the reader."""
        ...

    async def get_batch(self, max_messages: int, timeout: float) -> list[BusMessage]:
        """Up to ``max_messages``, waiting at most ``timeout`` seconds for the first one."""
        ...

    async def commit(self, next_offset: int) -> None:
        """Everything before ``next_offset`` is written to the warehouse: never read again."""
        ...


class InProcessBus:
    def __init__(self, topic: str = "usage-events", max_pending: int = 1_000_000):
        self.topic = f"{topic}@process-{uuid.uuid4().hex[:12]}"
        self._queue: asyncio.Queue[BusMessage] = asyncio.Queue(maxsize=max_pending)
        self._next_offset = 0
        self.dropped = 0

    def publish_nowait(self, key: bytes | None, value: bytes) -> bool:
        message = BusMessage(self.topic, 0, self._next_offset, key, value)
        try:
            self._queue.put_nowait(message)
        except asyncio.QueueFull:
            self.dropped += 1
            return False
        self._next_offset += 1
        return True

    @property
    def pending(self) -> int:
        return self._queue.qsize()

    async def get_batch(self, max_messages: int, timeout: float) -> list[BusMessage]:
        try:
            first = self._queue.get_nowait()
        except asyncio.QueueEmpty:
            # Not asyncio.wait_for: on 3.11 it can lose a cancellation (common/waiting.py).
            try:
                async with asyncio.timeout(timeout):
                    first = await self._queue.get()
            except TimeoutError:
                return []
        batch = [first]
        while len(batch) < max_messages:
            try:
                batch.append(self._queue.get_nowait())
            except asyncio.QueueEmpty:
                break
        return batch

    async def commit(self, next_offset: int) -> None:
        return None
