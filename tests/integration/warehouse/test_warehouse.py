"""Migrations, the consumer's writer and the rollups on the real ClickHouse engine."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from clickhouse_connect.driver.client import Client

from meterline.common.clickhouse import RAW_COLUMNS
from meterline.common.config import GatewayConfig
from meterline.common.events import UsageEvent
from meterline.common.migrations import Migration, MigrationError, load_migrations, migrate
from meterline.common.pricing import PerMillionRates, StaticPrices
from meterline.consumer.batch_log import ClickHouseBatchLog
from meterline.consumer.enrich import Enricher
from meterline.consumer.write import ClickHouseWriter

pytestmark = pytest.mark.clickhouse

ROLLUPS = ("usage_hourly", "usage_daily", "usage_by_tag_hourly")
RATES = PerMillionRates(
    input=Decimal("3"),
    output=Decimal("15"),
    cache_read=Decimal("0.3"),
    cache_write=Decimal("3.75"),
    cache_write_1h=Decimal("6"),
    input_audio=Decimal("40"),
    output_audio=Decimal("80"),
    web_search=Decimal("10000"),
)


def rows(count: int, start: datetime) -> list[list[object]]:
    enricher = Enricher(StaticPrices({("anthropic", "claude"): RATES}), GatewayConfig())
    return [
        enricher.row(
            UsageEvent(
                event_id=UsageEvent.new_id(),
                team_id=f"team-{n % 2}",
                api_key_name="prod",
                api_surface="messages",
                started_at=start + timedelta(minutes=17 * n),
                duration_ms=10,
                model_requested="anthropic/claude",
                model="claude" if n % 5 else "unpriced",
                provider="anthropic",
                credential_type="byok" if n % 3 == 0 else "system",
                streamed=bool(n % 2),
                status="success",
                http_status=200,
                input_tokens=1000 + n,
                output_tokens=100 + n,
                cached_input_tokens=n,
                cache_creation_input_tokens=10,
                cache_creation_1h_input_tokens=3,
                reasoning_tokens=n % 7,
                user_id=f"user-{n % 4}" if n % 6 else None,
                tags=[f"t{n % 3}", "all"],
            )
        )
        for n in range(count)
    ]


def totals(client: Client, table: str) -> tuple[object, ...]:
    metric = "count()" if table == "usage_events" else "sum(request_count)"
    # The tag rollup counts a request once per tag; every request here has the tag "all".
    where = "WHERE tag = 'all'" if table == "usage_by_tag_hourly" else ""
    result = client.query(
        f"SELECT {metric}, sum(input_tokens), sum(output_tokens), sum(cached_input_tokens),"
        f" sum(cache_creation_input_tokens), sum(reasoning_tokens), sum(market_cost),"
        f" sum(total_cost) FROM {table} {where}"
    )
    return tuple(result.result_rows[0])


def test_migrations_twice_change_nothing(clickhouse: Client) -> None:
    assert migrate(clickhouse) == []
    columns = {
        name
        for (name,) in clickhouse.query(
            "SELECT name FROM system.columns WHERE database = currentDatabase()"
            " AND table = 'usage_events'"
        ).result_rows
    }
    assert set(RAW_COLUMNS) <= columns


def test_a_changed_migration_is_refused(clickhouse: Client, tmp_path: object) -> None:
    from pathlib import Path

    directory = Path(str(tmp_path))
    for migration in load_migrations():
        text = migration.sql + ("\n-- edited" if migration.version == 1 else "")
        (directory / f"{migration.name}.sql").write_text(text)
    with pytest.raises(MigrationError, match="changed after it was applied"):
        migrate(clickhouse, directory)
    assert Migration(1, "x", "SELECT 1;\n-- c\nSELECT 2;").statements() == ["SELECT 1", "SELECT 2"]


@pytest.mark.parametrize("parallel_views", [True, False])
async def test_rollups_equal_the_raw_table_and_a_repeated_batch_counts_once(
    clickhouse: Client, parallel_views: bool
) -> None:
    writer = ClickHouseWriter(clickhouse, parallel_views=parallel_views)
    batch = rows(200, datetime(2026, 2, 27, 22, tzinfo=UTC))
    for _ in range(3):
        await writer.insert(batch, "usage-events/0/0-199")
    await writer.insert(rows(50, datetime(2026, 3, 1, tzinfo=UTC)), "usage-events/1/0-49")

    raw = totals(clickhouse, "usage_events")
    assert raw[0] == 250
    for table in ROLLUPS:
        assert totals(clickhouse, table) == raw, table
    unpriced = clickhouse.query("SELECT sum(unpriced_request_count) FROM usage_daily").result_rows
    assert unpriced[0][0] == 50


async def test_batch_log_round_trip(clickhouse: Client) -> None:
    log = ClickHouseBatchLog(clickhouse, "group-a")
    await log.record("usage-events", 3, 100, 199)
    await log.record("usage-events", 3, 200, 250)
    assert await log.recorded("usage-events", 3, 150) == {200: 250}
    assert await log.recorded("usage-events", 3, 100) == {100: 199, 200: 250}
    assert await ClickHouseBatchLog(clickhouse, "group-b").recorded("usage-events", 3, 0) == {}
