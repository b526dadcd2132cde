"""``meterline rollups rebuild``: recompute the rollups for a range of UTC days from the raw
events, optionally re-pricing the raw events first.

The raw table is the source of truth; every rollup is a materialized view's target. The
rollups are found in the warehouse, not listed here: each materialized view that reads
``usage_events`` names its target table and its SELECT, so a rollup added by a later
migration is rebuilt too, with the very SELECT that feeds it at insert time.

Steps, each safe to repeat, so a rebuild that stopped half-way is simply run again:

1. ``--reprice``: price every raw event of the range again with the consumer's pricing
   (genai-prices and the team's current overrides) and rewrite the price columns of the rows
   whose price changed: models that had no price then, or overrides that were wrong. The rows
   are updated in place by one mutation that reads the new prices from a Join table, so rows
   the consumer inserts meanwhile are untouched.
2. For each rollup: delete its rows of the range (a synchronous mutation), then insert what
   its view's SELECT yields over the range's raw events.

Between the delete and the insert a report over the range reads nothing, and an event of
the range that the consumer inserts during the rebuild can be counted twice (by its view and
by the rebuild's SELECT). Rebuild days that no longer receive events, or stop the consumers
for a rebuild of today. Days are UTC days, like the rollups' ``day`` and ``hour``.
"""

from __future__ import annotations

import dataclasses
import logging
import re
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any, Final

from clickhouse_connect.driver.client import Client

from meterline.common.clickhouse import RAW_COLUMNS, quote_identifier
from meterline.common.events import UsageEvent
from meterline.common.usage_row import COLUMN_TYPES, PRICE_COLUMNS
from meterline.consumer.enrich import Enricher

log = logging.getLogger(__name__)

RAW_TABLE: Final = "usage_events"
# A rebuild writes the same blocks a previous rebuild wrote; the rollups' insert
# deduplication window would silently drop them.
_WRITE_SETTINGS: Final = {"insert_deduplicate": 0, "mutations_sync": 2}
_REPRICE_BLOCK: Final = 50_000
"""Rows priced and sent to the Join table at a time: bounds the rebuild's memory."""


class RebuildError(RuntimeError):
    pass


@dataclass(frozen=True, slots=True)
class Rollup:
    view: str
    table: str
    time_column: str
    select: str
    """The view's SELECT, reading the raw table."""


@dataclass(frozen=True, slots=True)
class RebuildResult:
    rollups: dict[str, int]
    """Rows each rollup holds for the range after the rebuild."""
    repriced: int
    """Raw events whose price columns were rewritten."""


def rollups(client: Client) -> list[Rollup]:
    """Every materialized view on the raw table, with its target table and time column."""
    database = client.database or "default"
    dependents = client.query(
        "SELECT dependencies_table FROM system.tables WHERE database = {db:String} "
        "AND name = {raw:String}",
        parameters={"db": database, "raw": RAW_TABLE},
    ).result_rows
    if not dependents:
        raise RebuildError(f"no {RAW_TABLE} table in database {database}: run meterline migrate")
    found = []
    for view in sorted(dependents[0][0]):
        [(create, select)] = client.query(
            "SELECT create_table_query, as_select FROM system.tables "
            "WHERE database = {db:String} AND name = {view:String}",
            parameters={"db": database, "view": view},
        ).result_rows
        target = re.search(r"\sTO\s+(?:`?[\w]+`?\.)?`?(\w+)`?", create)
        if target is None:
            raise RebuildError(f"{view} has no TO table; rollups are views with a target table")
        table = target.group(1)
        found.append(Rollup(view, table, _time_column(client, database, table), select))
    return found


def _time_column(client: Client, database: str, table: str) -> str:
    """The rollup's one Date or DateTime column: what a day range deletes by."""
    columns: list[str] = [
        str(name)
        for name, type_ in client.query(
            "SELECT name, type FROM system.columns WHERE database = {db:String} "
            "AND table = {table:String} ORDER BY position",
            parameters={"db": database, "table": table},
        ).result_rows
        if re.match(r"^(Date|Date32|DateTime|DateTime64)\b", type_)
    ]
    if len(columns) != 1:
        raise RebuildError(
            f"rollup {table} has {len(columns)} date/time columns ({columns}); "
            "a rebuild needs exactly one to know which rows belong to a day"
        )
    return columns[0]


def _over_range(select: str, database: str) -> str:
    """The view's SELECT with its raw-table source narrowed to the range's events."""
    source = re.compile(
        rf"\bFROM\s+(?:`?{re.escape(database)}`?\.)?`?{RAW_TABLE}`?(?=[\s)]|$)", re.IGNORECASE
    )
    if len(source.findall(select)) != 1:
        raise RebuildError(f"cannot find the one 'FROM {RAW_TABLE}' in the view's SELECT")
    narrowed = (
        f"FROM (SELECT * FROM {quote_identifier(database)}.{RAW_TABLE} "
        "WHERE toDate(started_at) BETWEEN {rebuild_from:Date} AND {rebuild_to:Date}) "
        f"AS {RAW_TABLE}"
    )
    return source.sub(lambda _: narrowed, select)


def rebuild(
    client: Client, first: date, last: date, enricher: Enricher | None = None
) -> RebuildResult:
    """Rebuild every rollup for the UTC days ``first``..``last`` (inclusive); with an
    ``enricher``, re-price the raw events of those days first."""
    if last < first:
        raise RebuildError(f"the range ends ({last}) before it starts ({first})")
    database = client.database or "default"
    repriced = reprice(client, first, last, enricher) if enricher is not None else 0
    days = {"rebuild_from": first, "rebuild_to": last}
    counts: dict[str, int] = {}
    for rollup in rollups(client):
        table = quote_identifier(rollup.table)
        select = _over_range(rollup.select, database)
        names = [
            row[0] for row in client.query(f"DESCRIBE ({select})", parameters=days).result_rows
        ]
        in_range = (
            f"toDate({quote_identifier(rollup.time_column)}) "
            "BETWEEN {rebuild_from:Date} AND {rebuild_to:Date}"
        )
        client.command(
            f"ALTER TABLE {table} DELETE WHERE {in_range}",
            parameters=days,
            settings=_WRITE_SETTINGS,
        )
        column_list = ", ".join(quote_identifier(name) for name in names)
        client.command(
            f"INSERT INTO {table} ({column_list}) {select}",
            parameters=days,
            settings=_WRITE_SETTINGS,
        )
        counts[rollup.table] = int(
            client.query(
                f"SELECT count() FROM {table} WHERE {in_range}", parameters=days
            ).result_rows[0][0]
        )
        log.info("rebuilt %s for %s..%s: %d rows", rollup.table, first, last, counts[rollup.table])
    return RebuildResult(counts, repriced)


def reprice(client: Client, first: date, last: date, enricher: Enricher) -> int:
    """Price the raw events of the range again; rewrite the rows whose price changed.
    Returns how many were rewritten."""
    database = client.database or "default"
    join_table = f"rebuild_prices_{uuid.uuid4().hex[:12]}"
    qualified = f"{quote_identifier(database)}.{quote_identifier(join_table)}"
    columns = ", ".join(f"{name} {COLUMN_TYPES[name]}" for name in PRICE_COLUMNS)
    # A Join table is a hash table on event_id that a mutation can read with joinGet.
    client.command(
        f"CREATE TABLE {qualified} (event_id UUID, {columns}) ENGINE = Join(ANY, LEFT, event_id)"
    )
    try:
        changed = 0
        for block in _repriced_blocks(client, first, last, enricher):
            client.insert(join_table, block, column_names=["event_id", *PRICE_COLUMNS])
            changed += len(block)
        if changed:
            # Names qualified: a mutation runs later, outside this session's database.
            assignments = ", ".join(
                f"{name} = joinGet('{database}.{join_table}', '{name}', event_id)"
                for name in PRICE_COLUMNS
            )
            update = (
                f"ALTER TABLE {RAW_TABLE} UPDATE {assignments} "
                f"WHERE event_id IN (SELECT event_id FROM {qualified}) "
                # Dates as literals: the mutation is stored and run after this query.
                f"AND toDate(started_at) BETWEEN '{first.isoformat()}' AND '{last.isoformat()}'"
            )
            try:
                client.command(update, settings=_WRITE_SETTINGS)
            except Exception:
                # A mutation that failed while running stays queued and is retried forever,
                # holding up every later mutation of the table: take it out before leaving.
                client.command(
                    "KILL MUTATION WHERE database = {db:String} AND table = {raw:String} "
                    "AND position(command, {join:String}) > 0",
                    parameters={"db": database, "raw": RAW_TABLE, "join": join_table},
                )
                raise
        log.info("re-priced %s..%s: %d raw events changed price", first, last, changed)
        return changed
    finally:
        client.command(f"DROP TABLE IF EXISTS {qualified}")


def _repriced_blocks(
    client: Client, first: date, last: date, enricher: Enricher
) -> Iterator[list[list[Any]]]:
    """Day by day, so memory holds one day's events at most: the rows whose price the
    enricher now computes differently, as (event_id, *PRICE_COLUMNS)."""
    # The event's own fields: a column the row derives from them is not one.
    fields = [field.name for field in dataclasses.fields(UsageEvent)]
    positions = [RAW_COLUMNS.index(name) for name in PRICE_COLUMNS]
    select = ", ".join(quote_identifier(name) for name in RAW_COLUMNS)
    block: list[list[Any]] = []
    day = first
    while day <= last:
        rows = client.query(
            f"SELECT {select} FROM {RAW_TABLE} WHERE toDate(started_at) = {{day:Date}}",
            parameters={"day": day},
        ).result_rows
        for raw in rows:
            stored = dict(zip(RAW_COLUMNS, raw, strict=True))
            priced = enricher.row(_event(stored, fields))
            new = [priced[i] for i in positions]
            if new != [stored[name] for name in PRICE_COLUMNS]:
                block.append([stored["event_id"], *new])
            if len(block) >= _REPRICE_BLOCK:
                yield block
                block = []
        day += timedelta(days=1)
    if block:
        yield block


def _event(stored: dict[str, Any], fields: list[str]) -> UsageEvent:
    values = {name: stored[name] for name in fields}
    values["event_id"] = str(values["event_id"])
    started_at: datetime = values["started_at"]
    if started_at.tzinfo is None:
        # The column is UTC; a naive value must not be read as local time by the pricing.
        values["started_at"] = started_at.replace(tzinfo=UTC)
    # The raw table stores "none" as an empty string; the event says None.
    for name in ("user_id", "finish_reason", "error_type"):
        values[name] = values[name] or None
    values["tags"] = list(values["tags"])
    return UsageEvent(**values)
