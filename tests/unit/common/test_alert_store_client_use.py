"""The warehouse alert store never runs two calls on its client at once, even when a
caller is cancelled while its query still runs in its thread (the delivery loop stopping
mid-poll, then the next process step using the same store)."""

from __future__ import annotations

import asyncio
import threading
import time
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any, cast

from clickhouse_connect.driver.client import Client

from meterline.common.alerts import ClickHouseAlertStore


class SlowClient:
    """Stands in for the client's threading behaviour only: each call takes a while."""

    def __init__(self) -> None:
        self.running = 0
        self.most_at_once = 0
        self._count = threading.Lock()

    def query(self, sql: str, parameters: dict[str, Any]) -> Any:
        with self._count:
            self.running += 1
            self.most_at_once = max(self.most_at_once, self.running)
        time.sleep(0.2)
        with self._count:
            self.running -= 1

        return SimpleNamespace(column_names=(), result_rows=[])


async def test_a_cancelled_call_still_holds_the_client_until_its_query_ends() -> None:
    client = SlowClient()
    store = ClickHouseAlertStore(cast(Client, client))
    first = asyncio.create_task(store.due(datetime.now(UTC), 10))
    await asyncio.sleep(0.05)
    first.cancel()
    await asyncio.gather(first, return_exceptions=True)
    assert await store.due(datetime.now(UTC), 10) == []
    assert client.most_at_once == 1
