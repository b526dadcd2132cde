"""Shared fixtures.

ClickHouse: one engine per test process (chDB allows one per process), each test in its own
database, so tests never see each other's rows. ``CLICKHOUSE_URL`` points the same tests at
a ClickHouse server instead.

Kafka: one real broker per test session, started from the cached Apache Kafka jars, unless
``KAFKA_BOOTSTRAP_SERVERS`` names an existing cluster.
"""

from __future__ import annotations

import os
import tempfile
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from clickhouse_connect.driver.client import Client

from meterline.common.clickhouse import connect


@pytest.fixture(scope="session")
def clickhouse_url() -> Iterator[str]:
    url = os.environ.get("CLICKHOUSE_URL")
    if url:
        yield url
        return
    with tempfile.TemporaryDirectory(prefix="meterline-chdb-") as directory:
        yield f"chdb://{directory}"


@pytest.fixture
def clickhouse_database(clickhouse_url: str) -> Iterator[str]:
    """A fresh, migrated database for one test; dropped afterwards."""
    from meterline.common.migrations import migrate

    name = f"test_{uuid.uuid4().hex[:12]}"
    client = connect(clickhouse_url, name)
    migrate(client)
    yield name
    client.command(f"DROP DATABASE IF EXISTS {name}")


@pytest.fixture
def clickhouse(clickhouse_url: str, clickhouse_database: str) -> Client:
    return connect(clickhouse_url, clickhouse_database)


@pytest.fixture
def clickhouse_factory(clickhouse_url: str, clickhouse_database: str) -> Callable[[], Client]:
    return lambda: connect(clickhouse_url, clickhouse_database)


@pytest.fixture(scope="session")
def kafka_bootstrap() -> Iterator[str]:
    from tests.support.kafka_broker import kafka_bootstrap_from_env_or_start

    bootstrap, broker = kafka_bootstrap_from_env_or_start()
    try:
        yield bootstrap
    finally:
        if broker is not None:
            broker.stop()


@pytest.fixture
def kafka_topic() -> str:
    """A topic of its own for each test, so tests never read each other's events."""
    return f"usage-events-{uuid.uuid4().hex[:10]}"


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return Path(__file__).resolve().parents[1]
