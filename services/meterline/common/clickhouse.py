"""The one place that opens ClickHouse clients, so the embedded engine (chdb://) and a
server (http://host:8123) are interchangeable by configuration alone; and the raw table's
columns, which the consumer writes and the query service and tools read."""

from __future__ import annotations

import importlib.util
from typing import Any, Final
from urllib.parse import urlparse

import clickhouse_connect
from clickhouse_connect.driver.client import Client

from meterline.common import usage_row

RAW_COLUMNS: Final = usage_row.RAW_COLUMNS
"""The raw table's columns, in the order rows are built (``usage_row.COLUMNS``)."""


class EmbeddedEngineMissing(RuntimeError):
    """A chdb:// URL where chDB is not installed (the gateway image, or an install of
    ``meterline`` without the ``embedded`` extra)."""


def connect(url: str, database: str | None = None, **settings: Any) -> Client:
    """Open a client; ``database`` becomes the client's default database (created if it
    does not exist, so migrations can run on an empty server)."""
    parsed = urlparse(url)
    if parsed.scheme == "chdb":
        if importlib.util.find_spec("chdb") is None:
            raise EmbeddedEngineMissing(
                f"{url} is the embedded engine, and chDB is not installed: install "
                "meterline[embedded], or set CLICKHOUSE_URL to a ClickHouse server "
                "(http://user:password@host:8123)"
            )
        if database:
            clickhouse_connect.get_client(dsn=url).command(
                f"CREATE DATABASE IF NOT EXISTS {quote_identifier(database)}"
            )
        return clickhouse_connect.get_client(dsn=url, database=database or "default", **settings)
    client = clickhouse_connect.get_client(
        host=parsed.hostname or "localhost",
        port=parsed.port or (8443 if parsed.scheme == "https" else 8123),
        username=parsed.username or "default",
        password=parsed.password or "",
        secure=parsed.scheme == "https",
        **settings,
    )
    if database:
        client.command(f"CREATE DATABASE IF NOT EXISTS {quote_identifier(database)}")
        client.database = database
    return client


def quote_identifier(name: str) -> str:
    return "`" + name.replace("\\", "\\\\").replace("`", "\\`") + "`"
