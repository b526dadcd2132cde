"""Step 3: rows gathered per partition until a batch is full or old enough.

A batch covers one contiguous offset range of one partition, so its deduplication token
(topic, partition, first and last offset) names exactly the messages inside it."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Batch:
    topic: str
    partition: int
    first_offset: int
    last_offset: int = -1
    rows: list[list[Any]] = field(default_factory=list)
    opened_at: float = field(default_factory=time.monotonic)

    def add(self, offset: int, row: list[Any] | None) -> None:
        """``row`` None: the message went to the dead-letter topic, but its offset still
        belongs to this batch so that committing the batch moves past it."""
        self.last_offset = offset
        if row is not None:
            self.rows.append(row)

    @property
    def size(self) -> int:
        return self.last_offset - self.first_offset + 1

    def is_ready(self, max_rows: int, max_seconds: float) -> bool:
        return self.size >= max_rows or time.monotonic() - self.opened_at >= max_seconds

    @property
    def deduplication_token(self) -> str:
        return f"{self.topic}/{self.partition}/{self.first_offset}-{self.last_offset}"
