"""ClickHouse access for the query service: a small pool of clients, opened on demand and
closed at shutdown, with queries run off the event loop.

A clickhouse-connect client runs one query at a time (its session refuses concurrent
queries), so each query borrows a client from the pool. A client whose connection failed is
dropped, and the next query opens a fresh one: the service keeps answering 503 while the
warehouse is down and recovers by itself when it returns."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Any, TypeVar

from clickhouse_connect.driver.client import Client
from clickhouse_connect.driver.exceptions import OperationalError

from meterline.query.builders import BuiltQuery
from meterline.query.errors import WarehouseUnavailable
from meterline.query.observe import returned

log = logging.getLogger(__name__)

T = TypeVar("T")


class Warehouse:
    def __init__(self, factory: Callable[[], Client], size: int, timeout_seconds: float):
        self._factory = factory
        self._size = size
        self._settings = {
            "max_execution_time": max(1, round(timeout_seconds)),
            # Rollups are sorted by team, time and the dimensions reports group by, and the
            # builders group and sort by those columns: aggregating in that order streams
            # the groups out sorted, so a page (LIMIT) stops reading early instead of
            # hashing every group of the range and sorting them all.
            "optimize_aggregation_in_order": 1,
        }
        self._idle: asyncio.Queue[Client] = asyncio.Queue()
        self._open = 0

    async def query(self, built: BuiltQuery) -> tuple[list[str], list[tuple[Any, ...]]]:
        """Column names and rows."""
        result = await self.run(
            lambda client: client.query(
                built.sql, parameters=built.parameters, settings=self._settings
            )
        )
        rows = [tuple(row) for row in result.result_rows]
        returned(len(rows))
        return list(result.column_names), rows

    async def run(self, work: Callable[[Client], T]) -> T:
        """``work`` on a borrowed client, in a worker thread."""
        client = await self._borrow()
        try:
            result = await asyncio.to_thread(work, client)
        except OperationalError as error:
            self._discard(client)
            raise WarehouseUnavailable(f"the warehouse is unavailable: {error}") from error
        except asyncio.CancelledError:
            # The thread may still be running the query on this client: abandon it.
            self._open -= 1
            raise
        except Exception:
            # A query the warehouse refused leaves the client usable.
            self._idle.put_nowait(client)
            raise
        self._idle.put_nowait(client)
        return result

    async def ping(self) -> None:
        await self.query(BuiltQuery("SELECT 1", {}))

    async def start(self) -> None:
        """Open one client now, so a misconfiguration shows in the log at start-up; an
        unreachable warehouse is not fatal (requests get 503 until it is back)."""
        try:
            self._idle.put_nowait(await self._connect())
        except WarehouseUnavailable as error:
            log.warning("%s; reports will answer 503 until it is reachable", error.message)

    async def close(self) -> None:
        while not self._idle.empty():
            client = self._idle.get_nowait()
            self._discard(client)

    async def _borrow(self) -> Client:
        if self._idle.empty() and self._open < self._size:
            return await self._connect()
        return await self._idle.get()

    async def _connect(self) -> Client:
        self._open += 1
        try:
            return await asyncio.to_thread(self._factory)
        except Exception as error:
            self._open -= 1
            raise WarehouseUnavailable(f"the warehouse is unavailable: {error}") from error

    def _discard(self, client: Client) -> None:
        self._open -= 1
        # Closing a broken client may fail too; there is nothing more to do with it.
        with contextlib.suppress(Exception):
            client.close()
