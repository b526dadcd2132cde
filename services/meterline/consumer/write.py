"""Step 4: insert a batch into the raw table; the materialized views feed the rollups in
the same insert.

The insert carries a deduplication token made of the batch's partition and offset range:
if the consumer dies after ClickHouse accepted the batch but before the offsets were
committed, the re-read batch is inserted again with the same token, and ClickHouse drops
it from the raw table and, with ``deduplicate_blocks_in_dependent_materialized_views``,
from every rollup (the tables keep a ``non_replicated_deduplication_window`` for that)."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any, Final, Protocol

from clickhouse_connect.driver.client import Client

from meterline.common.clickhouse import RAW_COLUMNS

INSERT_SETTINGS: Final[dict[str, Any]] = {
    # Return only when the data is written, so a commit after it is safe.
    "async_insert": 0,
    # The rollups are summing tables: summing a block's rows while inserting it roughly
    # halved the insert rate here, and buys nothing, since merges sum them later and every
    # report re-aggregates anyway.
    "optimize_on_insert": 0,
    # Feed the nine rollups' views side by side instead of one after another: each
    # re-sorts and writes nearly every row, and they share nothing but the block.
    "parallel_view_processing": 1,
}
"""How every batch is inserted (the engine-ceiling benchmark inserts the same way)."""


class Writer(Protocol):
    async def insert(self, rows: Sequence[list[Any]], deduplication_token: str) -> None:
        """Return only once the rows are durable; raise on any failure."""
        ...


class ClickHouseWriter:
    """``parallel_views=False`` feeds the views one after another: for a consumer that shares
    its process and cores with the gateway (``meterline all-in-one``), where the engine's
    extra threads lengthen the callers' tail latency more than they speed up the insert."""

    def __init__(self, client: Client, table: str = "usage_events", *, parallel_views: bool = True):
        self._client = client
        self._table = table
        self._settings = {**INSERT_SETTINGS, "parallel_view_processing": int(parallel_views)}
        # One insert at a time per client: clickhouse-connect clients are not meant for
        # concurrent use, and the embedded engine serialises anyway.
        self._lock = asyncio.Lock()

    async def insert(self, rows: Sequence[list[Any]], deduplication_token: str) -> None:
        if not rows:
            return
        async with self._lock:
            await asyncio.to_thread(self._insert, rows, deduplication_token)

    def _insert(self, rows: Sequence[list[Any]], deduplication_token: str) -> None:
        self._client.insert(
            self._table,
            rows,
            column_names=list(RAW_COLUMNS),
            settings={
                **self._settings,
                "insert_deduplication_token": deduplication_token,
                "deduplicate_blocks_in_dependent_materialized_views": 1,
            },
        )


class MemoryWriter:
    """Keeps inserted batches, dropping repeated tokens as ClickHouse would."""

    def __init__(self) -> None:
        self.batches: dict[str, list[list[Any]]] = {}
        self.fail_next = 0

    async def insert(self, rows: Sequence[list[Any]], deduplication_token: str) -> None:
        if self.fail_next:
            self.fail_next -= 1
            raise ConnectionError("MemoryWriter told to fail")
        self.batches.setdefault(deduplication_token, list(rows))

    @property
    def rows(self) -> list[list[Any]]:
        return [row for batch in self.batches.values() for row in batch]
