"""A batch's messages become rows of the raw table; the materialized views feed
the rollups in the same insert.

``BatchWriter`` is the step as the pipeline sees it: messages in, the rejected ones out.
Two ways to do it: ``PythonBatchWriter`` decodes and prices every message in Python and
inserts the rows through a ``Writer``; ``EngineWriter`` (``engine_write.py``) has the
warehouse engine decode and price the whole batch, several times faster.

The insert carries a deduplication token made of the batch's partition and offset range:
if the consumer dies after ClickHouse accepted the batch but before the offsets were
committed, the re-read batch is inserted again with the same token, and ClickHouse drops
it from the raw table and, with ``deduplicate_blocks_in_dependent_materialized_views``,
from every rollup (the tables keep a ``non_replicated_deduplication_window`` for that)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import Any, Final, Protocol

from clickhouse_connect.driver.client import Client

from meterline.common.bus import BusMessage
from meterline.common.clickhouse import RAW_COLUMNS
from meterline.common.codec import UsageEventCodec
from meterline.consumer.decode import Decoder, Rejected
from meterline.consumer.enrich import Enricher

log = logging.getLogger("meterline.consumer")

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


class BatchWriter(Protocol):
    async def write(
        self, messages: Sequence[BusMessage], deduplication_token: str
    ) -> list[Rejected]:
        """Decode, validate, price and insert the messages; return the ones that cannot
        become rows, with the reason. Return only once the rows are durable; raise on any
        failure, having written nothing (a retry with the same token is then safe)."""
        ...


class Writer(Protocol):
    async def insert(self, rows: Sequence[list[Any]], deduplication_token: str) -> None:
        """Return only once the rows are durable; raise on any failure."""
        ...


def python_rows(
    decoder: Decoder, enricher: Enricher, messages: Sequence[BusMessage]
) -> tuple[list[list[Any]], list[Rejected]]:
    """The raw-table rows of the messages, decoded and priced in Python."""
    rows: list[list[Any]] = []
    rejected: list[Rejected] = []
    for message in messages:
        result = decoder.decode(message)
        if isinstance(result, Rejected):
            rejected.append(result)
            continue
        try:
            rows.append(enricher.row(result))
        except Exception as error:  # a pricing bug must not stop the stream: dead-letter it
            log.exception("enriching event %s failed", result.event_id)
            rejected.append(Rejected(message, f"enrich failed: {error}", result.event_id))
    return rows, rejected


class PythonBatchWriter:
    """Decodes and prices in Python (in a thread, so a large batch does not stall the event
    loop), then inserts the rows through ``writer``."""

    def __init__(self, codec: UsageEventCodec, enricher: Enricher, writer: Writer):
        self._decoder = Decoder(codec)
        self._enricher = enricher
        self._writer = writer

    async def write(
        self, messages: Sequence[BusMessage], deduplication_token: str
    ) -> list[Rejected]:
        rows, rejected = await asyncio.to_thread(
            python_rows, self._decoder, self._enricher, messages
        )
        await self._writer.insert(rows, deduplication_token)
        return rejected


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
            await asyncio.to_thread(self.insert_now, rows, deduplication_token)

    def insert_now(self, rows: Sequence[list[Any]], deduplication_token: str) -> None:
        """``insert`` for a caller already in a worker thread, holding the client."""
        if not rows:
            return
        self._client.insert(
            self._table,
            rows,
            column_names=list(RAW_COLUMNS),
            settings=self.batch_settings(deduplication_token),
        )

    def batch_settings(self, deduplication_token: str) -> dict[str, Any]:
        """The settings of a batch's insert into the raw table, whichever way it is made."""
        return {
            **self._settings,
            "insert_deduplication_token": deduplication_token,
            "deduplicate_blocks_in_dependent_materialized_views": 1,
        }


class MemoryWriter:
    """Keeps inserted batches, dropping repeated tokens as ClickHouse would."""

    def __init__(self) -> None:
        self.batches: dict[str, list[list[Any]]] = {}
        self.fail_next = 0

    async def insert(self, rows: Sequence[list[Any]], deduplication_token: str) -> None:
        if self.fail_next:
            self.fail_next -= 1
            raise ConnectionError("MemoryWriter told to fail")
        if not rows:
            return  # as ClickHouse: an empty insert leaves no token behind
        self.batches.setdefault(deduplication_token, list(rows))

    @property
    def rows(self) -> list[list[Any]]:
        return [row for batch in self.batches.values() for row in batch]
