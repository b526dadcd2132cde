"""Messages gathered per partition until a batch is full or old enough.

A batch covers one contiguous offset range of one partition, so its deduplication token
(topic, partition, first and last offset) names exactly the messages inside it."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from meterline.common.bus import BusMessage


@dataclass
class Batch:
    topic: str
    partition: int
    first_offset: int
    last_offset: int = -1
    planned_last: int | None = None
    """Set when the batch log recorded this batch before a crash: close exactly there."""
    messages: list[BusMessage] = field(default_factory=list)
    event_ids: set[str] = field(default_factory=set)
    opened_at: float = field(default_factory=time.monotonic)

    def add(self, offset: int, event_id: str | None, message: BusMessage | None) -> None:
        """``message`` None: it went to the dead-letter topic or was a repeat, but its offset
        still belongs to this batch so that committing the batch moves past it."""
        self.last_offset = offset
        if message is not None and event_id is not None:
            self.messages.append(message)
            self.event_ids.add(event_id)

    def holds(self, event_id: str) -> bool:
        return event_id in self.event_ids

    @property
    def size(self) -> int:
        return self.last_offset - self.first_offset + 1

    def is_full(self, max_rows: int) -> bool:
        if self.planned_last is not None:
            return self.last_offset >= self.planned_last
        return self.size >= max_rows

    def is_ready(self, max_rows: int, max_seconds: float) -> bool:
        if self.planned_last is not None:
            return self.last_offset >= self.planned_last
        return self.size >= max_rows or time.monotonic() - self.opened_at >= max_seconds

    def admits(self, offset: int) -> bool:
        """False when a recorded batch must close before this offset."""
        return self.planned_last is None or offset <= self.planned_last

    @property
    def deduplication_token(self) -> str:
        return f"{self.topic}/{self.partition}/{self.first_offset}-{self.last_offset}"
