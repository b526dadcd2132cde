"""``meterline rollups rebuild`` on the real ClickHouse engine: rollups damaged in every way
come back equal to what the materialized views wrote from the raw events, only inside the
range; ``--reprice`` prices what was unknown and corrects what a changed override got wrong."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from clickhouse_connect.driver.client import Client

from meterline.cli import main as cli_main
from meterline.common.clickhouse import RAW_COLUMNS
from meterline.common.config import GatewayConfig, PriceOverride, TeamConfig
from meterline.common.events import UsageEvent
from meterline.common.pricing import StaticPrices
from meterline.consumer.enrich import Enricher
from meterline.consumer.rebuild import RebuildError, rebuild, rollups
from tests.support.prices import RATES

pytestmark = pytest.mark.clickhouse

ROLLUPS = ("usage_by_tag_daily", "usage_by_tag_hourly", "usage_daily", "usage_hourly")
KNOWN = StaticPrices({("openai", "gpt-x"): RATES})
CONFIG = GatewayConfig(teams=[TeamConfig(id="acme"), TeamConfig(id="globex")])
START = datetime(2026, 3, 30, 18, 0, tzinfo=UTC)  # the range below crosses a month end
FIRST, LAST = date(2026, 3, 31), date(2026, 4, 1)


def events() -> list[UsageEvent]:
    """Four days, every 50 minutes: two teams, a priced and an unpriced model, tags."""
    made = []
    for n in range(110):
        made.append(
            UsageEvent(
                event_id=UsageEvent.new_id(),
                team_id=("acme", "globex")[n % 2],
                api_key_name=("prod", "dev")[n % 3 == 0],
                api_surface="chat_completions",
                started_at=START + timedelta(minutes=50 * n),
                duration_ms=100,
                model_requested="x",
                model=("gpt-x", "new-model")[n % 4 == 0],
                provider="openai",
                credential_type=("system", "byok")[n % 5 == 0],
                streamed=False,
                status=("success", "error")[n % 7 == 0],
                http_status=200,
                input_tokens=1000 + n,
                output_tokens=10 * n,
                cached_input_tokens=n % 9,
                user_id=(None, "u1", "u2")[n % 3],
                tags=[["a"], ["a", "b"], [], ["c"]][n % 4],
            )
        )
    return made


def insert(client: Client, enricher: Enricher, batch: list[UsageEvent]) -> None:
    client.insert("usage_events", [enricher.row(e) for e in batch], column_names=RAW_COLUMNS)


def contents(client: Client, table: str) -> list[tuple[Any, ...]]:
    """The rollup as a report sees it: summed by its key (merges are eventual)."""
    columns = [
        (name, type_)
        for name, type_ in client.query(
            "SELECT name, type FROM system.columns WHERE database = currentDatabase() "
            "AND table = {t:String} ORDER BY position",
            parameters={"t": table},
        ).result_rows
    ]
    metric = ("UInt64", "Decimal(38, 12)")
    keys = [n for n, t in columns if t not in metric]
    sums = [f"sum({n})" for n, t in columns if t in metric]
    key_list = ", ".join(keys)
    return [
        tuple(row)
        for row in client.query(
            f"SELECT {key_list}, {', '.join(sums)} FROM {table} "
            f"GROUP BY {key_list} HAVING sum(request_count) > 0 ORDER BY {key_list}"
        ).result_rows
    ]


@pytest.fixture
def loaded(clickhouse: Client) -> Client:
    insert(clickhouse, Enricher(KNOWN, CONFIG), events())
    return clickhouse


def test_rollups_are_found_in_the_warehouse_with_their_time_columns(clickhouse: Client) -> None:
    found = {r.table: r.time_column for r in rollups(clickhouse)}
    assert (
        found.items()
        >= {
            "usage_by_tag_daily": "day",
            "usage_by_tag_hourly": "hour",
            "usage_daily": "day",
            "usage_hourly": "hour",
        }.items()
    )
    # Every view of the warehouse is one of them (later migrations add more).
    [(views,)] = clickhouse.query(
        "SELECT count() FROM system.tables WHERE database = currentDatabase() "
        "AND engine = 'MaterializedView'"
    ).result_rows
    assert len(found) == views


def test_damaged_rollups_are_rebuilt_inside_the_range_only(loaded: Client) -> None:
    client = loaded
    before = {table: contents(client, table) for table in ROLLUPS}
    assert all(before.values())

    # Damage: rows lost, rows doubled, a row that no event explains, inside the range; and
    # one damaged row outside it, which a rebuild of the range must leave alone.
    client.command(
        "ALTER TABLE usage_hourly DELETE WHERE toDate(hour) = '2026-03-31' AND team_id = 'acme'",
        settings={"mutations_sync": 2},
    )
    client.command(
        "INSERT INTO usage_daily SELECT * FROM usage_daily WHERE day = '2026-04-01'",
        settings={"insert_deduplicate": 0},
    )
    client.command(
        "INSERT INTO usage_by_tag_daily (team_id, day, tag, request_count, market_cost) "
        "VALUES ('acme', '2026-03-31', 'ghost', 5, 9.99), ('acme', '2026-04-02', 'outside', 1, 1)"
    )
    client.command(
        "ALTER TABLE usage_by_tag_hourly DELETE WHERE tag = 'b'", settings={"mutations_sync": 2}
    )
    assert all(contents(client, t) != before[t] for t in ROLLUPS)

    result = rebuild(client, FIRST, LAST)

    assert set(result.rollups) == {r.table for r in rollups(client)} >= set(ROLLUPS)
    assert result.repriced == 0
    for table in ("usage_hourly", "usage_daily"):
        assert contents(client, table) == before[table], table
    # Inside the range the ghost is gone; the row outside the range is still there (the
    # rebuild did not touch it), and so are tag b's hours outside the range (still deleted).
    tag_daily = contents(client, "usage_by_tag_daily")
    assert not [r for r in tag_daily if r[2] == "ghost"]
    assert [r for r in tag_daily if r[2] == "outside"]
    assert [r for r in tag_daily if r[2] != "outside"] == before["usage_by_tag_daily"]
    tag_hourly = contents(client, "usage_by_tag_hourly")

    def in_range(row: tuple[Any, ...]) -> bool:
        return bool(FIRST <= row[1].date() <= LAST)

    assert [r for r in tag_hourly if in_range(r)] == [
        r for r in before["usage_by_tag_hourly"] if in_range(r)
    ]
    assert not [r for r in tag_hourly if not in_range(r) and r[2] == "b"]

    # The raw table agrees with the rebuilt rollups, day by day.
    raw = {
        day: count
        for day, count in client.query(
            "SELECT toDate(started_at) AS d, count() FROM usage_events GROUP BY d"
        ).result_rows
    }
    daily = {
        day: count
        for day, count in client.query(
            "SELECT day, sum(request_count) FROM usage_daily GROUP BY day"
        ).result_rows
    }
    assert daily == raw


def test_rebuilding_twice_gives_the_same_rollups(loaded: Client) -> None:
    """A rebuild inserts the very blocks the previous one inserted: insert deduplication
    must not drop them after the delete."""
    tables = [r.table for r in rollups(loaded)]
    before = {table: contents(loaded, table) for table in tables}
    rebuild(loaded, FIRST, LAST)
    rebuild(loaded, FIRST, LAST)
    assert {table: contents(loaded, table) for table in tables} == before


def test_a_rollup_added_by_a_later_migration_is_rebuilt_too(loaded: Client) -> None:
    loaded.command(
        "CREATE TABLE usage_test_added_daily (team_id String, day Date, model String, "
        "request_count UInt64, market_cost Decimal(38, 12)) "
        "ENGINE = SummingMergeTree ORDER BY (team_id, day, model)"
    )
    loaded.command(
        "CREATE MATERIALIZED VIEW usage_test_added_daily_mv TO usage_test_added_daily AS "
        "SELECT team_id, toDate(started_at) AS day, model, count() AS request_count, "
        "sum(market_cost) AS market_cost FROM usage_events GROUP BY team_id, day, model"
    )
    result = rebuild(loaded, FIRST, LAST)
    expected = loaded.query(
        "SELECT team_id, toDate(started_at) AS d, model, count(), sum(market_cost) "
        "FROM usage_events WHERE d BETWEEN '2026-03-31' AND '2026-04-01' "
        "GROUP BY team_id, d, model ORDER BY team_id, d, model"
    ).result_rows
    assert result.rollups["usage_test_added_daily"] == len(expected)
    assert contents(loaded, "usage_test_added_daily") == [tuple(r) for r in expected]


def test_reprice_prices_unknown_models_and_corrects_changed_overrides(loaded: Client) -> None:
    client = loaded
    unpriced = client.query(
        "SELECT count() FROM usage_events WHERE NOT price_known AND "
        "toDate(started_at) BETWEEN '2026-03-31' AND '2026-04-01'"
    ).result_rows[0][0]
    assert unpriced > 0

    # The new model gets a price, and globex's deal changes to 20 % off.
    prices = StaticPrices({("openai", "gpt-x"): RATES, ("openai", "new-model"): RATES})
    config = GatewayConfig(
        teams=[
            TeamConfig(id="acme"),
            TeamConfig(id="globex", price_overrides=[PriceOverride(multiplier=Decimal("0.8"))]),
        ]
    )
    enricher = Enricher(prices, config)
    result = rebuild(client, FIRST, LAST, enricher)
    assert result.repriced > unpriced  # the unknown prices and globex's system rows

    # Every raw row in the range now carries the price the consumer would compute today;
    # rows outside the range keep the old ones.
    columns = ", ".join(RAW_COLUMNS)
    rows = client.query(f"SELECT {columns} FROM usage_events").result_rows
    outside_unknown = 0
    for raw in rows:
        stored = dict(zip(RAW_COLUMNS, raw, strict=True))
        day = stored["started_at"].date()
        if FIRST <= day <= LAST:
            assert stored["price_known"], stored
            if stored["team_id"] == "globex" and stored["credential_type"] == "system":
                assert stored["total_cost"] == stored["market_cost"] * Decimal("0.8")
                assert stored["price_source"] == "static + override"
        else:
            outside_unknown += not stored["price_known"]
            assert stored["team_id"] == "acme" or stored["total_cost"] == (
                0 if stored["credential_type"] == "byok" else stored["market_cost"]
            )
    assert outside_unknown > 0

    # And the rollups agree with the re-priced raw rows.
    rolled = client.query(
        "SELECT team_id, sum(market_cost), sum(total_cost), sum(unpriced_request_count) "
        "FROM usage_daily WHERE day BETWEEN '2026-03-31' AND '2026-04-01' "
        "GROUP BY team_id ORDER BY team_id"
    ).result_rows
    raw_sums = client.query(
        "SELECT team_id, sum(market_cost), sum(total_cost), countIf(NOT price_known) "
        "FROM usage_events WHERE toDate(started_at) BETWEEN '2026-03-31' AND '2026-04-01' "
        "GROUP BY team_id ORDER BY team_id"
    ).result_rows
    assert rolled == raw_sums
    assert all(row[3] == 0 for row in rolled)

    # Nothing changed: nothing rewritten.
    assert rebuild(client, FIRST, LAST, enricher).repriced == 0


def test_a_backwards_range_is_refused(clickhouse: Client) -> None:
    with pytest.raises(RebuildError, match="ends"):
        rebuild(clickhouse, LAST, FIRST)


def test_the_cli_reprices_with_genai_prices_and_rebuilds(
    clickhouse: Client,
    clickhouse_url: str,
    clickhouse_database: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A row stored without a price (as if genai-prices had not known the model then) is
    priced by ``meterline rollups rebuild --reprice`` with genai-prices' real numbers."""
    event = events()[1]
    event.model, event.credential_type = "gpt-4o", "system"
    insert(clickhouse, Enricher(StaticPrices({}), CONFIG), [event])
    config = tmp_path / "meterline.toml"
    config.write_text('[[teams]]\nid = "globex"\n')
    monkeypatch.setenv("CLICKHOUSE_URL", clickhouse_url)
    monkeypatch.setenv("METERLINE_CLICKHOUSE_DATABASE", clickhouse_database)
    monkeypatch.setenv("METERLINE_CONFIG_FILE", str(config))
    day = event.started_at.date().isoformat()

    assert cli_main(["rollups", "rebuild", "--from", day, "--to", day, "--reprice"]) == 0

    assert "re-priced 1 raw events" in capsys.readouterr().out
    [(market, total, known, source)] = clickhouse.query(
        "SELECT market_cost, total_cost, price_known, price_source FROM usage_events"
    ).result_rows
    from meterline.common.pricing import GenaiPrices

    expected = Enricher(GenaiPrices(), GatewayConfig(teams=[TeamConfig(id="globex")])).row(event)
    assert known and source.startswith("genai-prices")
    assert market == expected[RAW_COLUMNS.index("market_cost")] > 0
    assert total == market
    [(rolled,)] = clickhouse.query("SELECT sum(market_cost) FROM usage_daily").result_rows
    assert rolled == market
