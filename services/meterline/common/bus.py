"""The in-process bus of the embedded default: the ingress publishes encoded usage events
into it and the consumer pipeline reads them, in one process, without Kafka.

It behaves like one Kafka partition (ordered, offsets from 0) so the consumer pipeline runs
unchanged on either. It holds events in memory only: the embedded default trades Kafka's
durability for needing nothing installed.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class BusMessage:
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes


class InProcessBus:
    def __init__(self, topic: str = "usage-events", max_pending: int = 1_000_000):
        self.topic = topic
        self._queue: asyncio.Queue[BusMessage] = asyncio.Queue(maxsize=max_pending)
        self._next_offset = 0
        self.dropped = 0

    def publish_nowait(self, key: bytes | None, value: bytes) -> bool:
        """Enqueue without waiting; False (and counted in ``dropped``) when full, because
        the caller's response must never wait for the bus."""
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
        """Up to ``max_messages``, waiting at most ``timeout`` seconds for the first one."""
        try:
            first = self._queue.get_nowait()
        except asyncio.QueueEmpty:
            try:
                first = await asyncio.wait_for(self._queue.get(), timeout)
            except TimeoutError:
                return []
        batch = [first]
        while len(batch) < max_messages:
            try:
                batch.append(self._queue.get_nowait())
            except asyncio.QueueEmpty:
                break
        return batch
