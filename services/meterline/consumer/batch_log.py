"""The batch log: each batch's partition and offset range, recorded before its insert.

Why: the insert deduplication token is derived from the range, so a batch re-read after a
crash is only recognised as a repeat if it is cut at exactly the same offsets. Batches
close on size or age, which differ from run to run; the log makes the cut reproducible:
when the consumer reads again from an offset at which a recorded batch starts, it closes
that batch at the recorded last offset, whatever its size and age."""

from __future__ import annotations

import asyncio
from typing import Protocol

from clickhouse_connect.driver.client import Client


class BatchLog(Protocol):
    async def recorded(self, topic: str, partition: int, from_offset: int) -> dict[int, int]:
        """Recorded batches of this partition from ``from_offset`` on: first -> last."""
        ...

    async def record(self, topic: str, partition: int, first: int, last: int) -> None:
        """Durably note a batch before it is inserted."""
        ...


class ClickHouseBatchLog:
    """Kept in the warehouse itself, so it is exactly as durable as the rows it protects."""

    def __init__(self, client: Client, consumer_group: str):
        self._client = client
        self._group = consumer_group
        self._lock = asyncio.Lock()

    async def recorded(self, topic: str, partition: int, from_offset: int) -> dict[int, int]:
        async with self._lock:
            result = await asyncio.to_thread(
                self._client.query,
                "SELECT first_offset, max(last_offset) FROM consumer_batches"
                " WHERE consumer_group = {group:String} AND topic = {topic:String}"
                " AND partition = {partition:UInt32} AND first_offset >= {offset:UInt64}"
                " GROUP BY first_offset",
                parameters={
                    "group": self._group,
                    "topic": topic,
                    "partition": partition,
                    "offset": from_offset,
                },
            )
        return {int(first): int(last) for first, last in result.result_rows}

    async def record(self, topic: str, partition: int, first: int, last: int) -> None:
        async with self._lock:
            await asyncio.to_thread(
                self._client.insert,
                "consumer_batches",
                [[self._group, topic, partition, first, last]],
                column_names=[
                    "consumer_group",
                    "topic",
                    "partition",
                    "first_offset",
                    "last_offset",
                ],
                settings={"async_insert": 0},
            )


class MemoryBatchLog:
    def __init__(self) -> None:
        self.batches: dict[tuple[str, int], dict[int, int]] = {}

    async def recorded(self, topic: str, partition: int, from_offset: int) -> dict[int, int]:
        ranges = self.batches.get((topic, partition), {})
        return {first: last for first, last in ranges.items() if first >= from_offset}

    async def record(self, topic: str, partition: int, first: int, last: int) -> None:
        self.batches.setdefault((topic, partition), {})[first] = last
