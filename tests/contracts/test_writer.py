"""The consumer's ``Writer`` contract, against the memory writer and the warehouse's raw
table: inserted rows are kept, a batch inserted again with its deduplication token is kept
once (what makes a re-read batch safe), a new token is a new batch, and an empty batch
writes nothing."""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal
from typing import Any

import pytest
from clickhouse_connect.driver.client import Client

from meterline.common.config import GatewayConfig, TeamConfig
from meterline.common.pricing import PerMillionRates, StaticPrices
from meterline.consumer.enrich import Enricher
from meterline.consumer.write import ClickHouseWriter, MemoryWriter, Writer
from tests.contracts.conftest import usage_event

RATES = PerMillionRates.text(
    input=Decimal("0.15"),
    output=Decimal("0.6"),
    cache_read=Decimal("0.075"),
    cache_write=Decimal("0"),
    cache_write_1h=Decimal("0"),
)
ENRICHER = Enricher(
    StaticPrices({("openai", "gpt-4o-mini"): RATES}), GatewayConfig(teams=[TeamConfig(id="acme")])
)


def rows(count: int) -> list[list[Any]]:
    return [ENRICHER.row(usage_event(input_tokens=1000 + i)) for i in range(count)]


@pytest.fixture(params=["memory", pytest.param("clickhouse", marks=pytest.mark.clickhouse)])
def writer(request: pytest.FixtureRequest) -> tuple[Writer, Callable[[], int]]:
    """The writer, and how many rows it has kept."""
    if request.param == "memory":
        memory = MemoryWriter()
        return memory, lambda: sum(len(batch) for batch in memory.batches.values())
    client: Client = request.getfixturevalue("clickhouse")
    return (
        ClickHouseWriter(client),
        lambda: int(client.query("SELECT count() FROM usage_events").result_rows[0][0]),
    )


async def test_inserted_rows_are_kept(writer: tuple[Writer, Callable[[], int]]) -> None:
    write, kept = writer
    await write.insert(rows(3), "t/0/0-2")
    assert kept() == 3


async def test_a_batch_inserted_again_with_its_token_is_kept_once(
    writer: tuple[Writer, Callable[[], int]],
) -> None:
    write, kept = writer
    batch = rows(5)
    await write.insert(batch, "t/0/0-4")
    await write.insert(batch, "t/0/0-4")
    assert kept() == 5

    await write.insert(rows(2), "t/0/5-6")
    assert kept() == 7


async def test_an_empty_batch_writes_nothing(writer: tuple[Writer, Callable[[], int]]) -> None:
    write, kept = writer
    await write.insert([], "t/0/0-0")
    await write.insert(rows(1), "t/0/0-0")
    assert kept() == 1
