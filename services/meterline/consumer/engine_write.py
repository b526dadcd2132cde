"""The write inside the warehouse engine: a batch's messages go to ClickHouse as one
Avro container, and the engine decodes, checks, prices and inserts them.

Python's share per message is a header check and a slice (``avro_block.py``); per batch, it
prices each (team, provider, model, hour, credential type) the batch holds, once. The
statements, per batch, all on the writer's own client session:

1. the container goes into ``usage_events_incoming``, a temporary table: it lives in this
   session only, so no one else (no analyst, no other consumer) ever sees it;
2. one query counts what arrived and lists the rows that fail the event's checks (those of
   ``UsageEvent.validate``); Python decodes each one listed, for its reason, and it goes to
   the dead-letter topic;
3. the distinct price keys are read and priced in Python (``Enricher.key_rates``) into
   ``usage_events_incoming_prices``; the events of keys with tiered prices are priced one
   by one in Python (``Enricher.costs``) into ``usage_events_incoming_costs``;
4. one ``INSERT … SELECT`` joins each row to its price and writes the raw table (and,
   through the views, the rollups) with the batch's deduplication token.

The engine path takes only batches it writes exactly as Python would (a test compares the
two row by row): when the two disagree (a row the checks refuse and Python accepts, a
container that does not read back whole) the batch goes through ``python_rows`` instead."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from operator import attrgetter
from typing import Any, Final

from clickhouse_connect.driver.client import Client

from meterline.common import usage_row
from meterline.common.bus import BusMessage
from meterline.common.clickhouse import RAW_COLUMNS, quote_identifier
from meterline.common.codec import UsageEventCodec
from meterline.common.pricing import (
    MONEY_SCALE,
    TOKEN_FIELDS,
    USAGE_BY_KIND_SQL,
    USAGE_KINDS,
    TokenCounts,
)
from meterline.common.usage_row import COLUMN_TYPES, MONEY, PRICE_COLUMNS
from meterline.consumer.avro_block import OFFSET_FIELD, AvroBatches
from meterline.consumer.decode import EPOCH, Decoder, Rejected
from meterline.consumer.enrich import Enricher, KeyRates
from meterline.consumer.write import ClickHouseWriter, python_rows

log = logging.getLogger("meterline.consumer")

INCOMING: Final = "usage_events_incoming"
PRICES: Final = "usage_events_incoming_prices"
COSTS: Final = "usage_events_incoming_costs"

RATE_SCALE: Final = 40
"""Decimal places of the per-token rates: exact for any per-million rate with up to 34
(genai-prices' have at most a handful), so the engine's sum is exact and rounds once."""

MAX_TOKENS: Final = 10**15
"""Token counts above this go through Python: the engine's rate arithmetic is 76 digits
wide, and no request comes near it."""

_LATEST_STARTED_AT_MICROS: Final = (datetime(2262, 1, 1, tzinfo=UTC) - EPOCH) // timedelta(
    microseconds=1
)

_AVRO_TYPES: Final = {
    "string": "String",
    "long": "Int64",
    "int": "Int32",
    "boolean": "Bool",
    "float": "Float32",
    "double": "Float64",
}


def column_type(avro_type: Any) -> str:
    """The staging column for an Avro type, as the engine's Avro reader maps it."""
    if isinstance(avro_type, str):
        return _AVRO_TYPES[avro_type]
    if isinstance(avro_type, list):
        (other,) = [t for t in avro_type if t != "null"]
        return f"Nullable({column_type(other)})"
    if avro_type["type"] == "array":
        return f"Array({column_type(avro_type['items'])})"
    if avro_type["type"] == "fixed":
        return f"FixedString({avro_type['size']})"
    raise ValueError(f"no column for the Avro type {avro_type!r}")


# The row's checks (``usage_row.sql_checks``), and what only the engine path needs: a start
# time from 1970 to 2262, and token counts its rate arithmetic holds (MAX_TOKENS). A row it
# refuses is decoded again by Python, which has the last word.
VALID_EVENT: Final = f"""
    {usage_row.sql_checks()}
    AND started_at BETWEEN 0 AND {_LATEST_STARTED_AT_MICROS}
    AND input_tokens <= {MAX_TOKENS} AND output_tokens <= {MAX_TOKENS}
    AND web_search_requests <= {MAX_TOKENS}
"""

_OFFSET: Final = f"reinterpretAsUInt64({OFFSET_FIELD})"
_HOUR: Final = "intDiv(started_at, 3600000000)"
_RATE: Final = f"Decimal(76, {RATE_SCALE})"

PRICES_TABLE: Final = f"""
CREATE TEMPORARY TABLE IF NOT EXISTS {PRICES}
(
    team_id String, provider String, model String, hour Int64, credential_type String,
    per_event Bool,
    {", ".join(f"market_{kind} {_RATE}" for kind in USAGE_KINDS)},
    {", ".join(f"charged_{kind} {_RATE}" for kind in USAGE_KINDS)},
    price_known {COLUMN_TYPES["price_known"]}, price_source {COLUMN_TYPES["price_source"]}
) ENGINE = Memory
"""

COSTS_TABLE: Final = f"""
CREATE TEMPORARY TABLE IF NOT EXISTS {COSTS}
(
    offset UInt64, {", ".join(f"{name} {COLUMN_TYPES[name]}" for name in PRICE_COLUMNS)}
) ENGINE = Memory
"""


def _cost(side: str) -> str:
    """USD for one row at the key's ``side`` (market or charged) per-token rates, rounded
    half to even to the money quantum: ``PerMillionRates.cost``, then ``quantize_money``."""
    terms = "\n            + ".join(
        f"{tokens} * p.{side}_{kind}" for kind, tokens in USAGE_BY_KIND_SQL.items()
    )
    return f"""CAST(roundBankers(
            {terms}, {MONEY_SCALE}) AS {MONEY})"""


# The price columns: the event's own costs (c) when its key's price is tiered, else its
# key's rates (p).
_PRICE_SQL: Final = {
    "market_cost": f"if(p.per_event, c.market_cost, {_cost('market')})",
    "total_cost": f"if(p.per_event, c.total_cost, {_cost('charged')})",
    "price_known": "if(p.per_event, c.price_known, p.price_known)",
    "price_source": "if(p.per_event, c.price_source, p.price_source)",
}
assert tuple(_PRICE_SQL) == PRICE_COLUMNS

# The row the Python path builds (Enricher.row), column for column.
_SELECT_ROW: Final = {
    column.name: _PRICE_SQL[column.name] if column.sql is None else column.sql
    for column in usage_row.COLUMNS
}


# The staged rows that were not rejected, with their offset and their price key's hour.
_ACCEPTED: Final = f"""(
    SELECT *, {_OFFSET} AS offset, {_HOUR} AS hour
    FROM {INCOMING}
    WHERE NOT has({{rejected:Array(UInt64)}}, offset)
) AS i"""


def insert_select(table: str) -> str:
    columns = ", ".join(RAW_COLUMNS)
    expressions = ",\n    ".join(_SELECT_ROW.values())
    # ORDER BY: one sorted stream makes one block per batch, the same block on every retry,
    # which is what lets the deduplication token recognise a retried batch.
    return f"""
INSERT INTO {quote_identifier(table)} ({columns})
SELECT
    {expressions}
FROM {_ACCEPTED}
LEFT JOIN {PRICES} AS p USING (team_id, provider, model, hour, credential_type)
LEFT JOIN {COSTS} AS c USING (offset)
ORDER BY offset
"""


class ContainerUnreadable(Exception):
    """The engine refused the container, or did not read back every record of it."""


class EngineWriter:
    """The ``BatchWriter`` the services use. ``parallel_views`` as in ``ClickHouseWriter``.

    Its temporary tables live in the client's session: clickhouse-connect gives every
    client one of its own by default (``autogenerate_session_id``), and the embedded engine
    keeps one per client."""

    def __init__(
        self,
        client: Client,
        codec: UsageEventCodec,
        enricher: Enricher,
        table: str = "usage_events",
        *,
        parallel_views: bool = True,
    ):
        if codec.writer_version != codec.reader_schema.version:
            raise ValueError("the engine writer re-encodes with the newest schema")
        self._client = client
        self._codec = codec
        self._decoder = Decoder(codec)
        self._enricher = enricher
        self._batches = AvroBatches(codec.reader_schema)
        self._rows = ClickHouseWriter(client, table, parallel_views=parallel_views)
        self._insert_select = insert_select(table)
        columns = ", ".join(
            f"{quote_identifier(field['name'])} {column_type(field['type'])}"
            for field in self._batches.fields
        )
        self._incoming_table = (
            f"CREATE TEMPORARY TABLE IF NOT EXISTS {INCOMING} ({columns}) ENGINE = Memory"
        )
        self._incoming_columns = [field["name"] for field in self._batches.fields]
        self._lock = asyncio.Lock()
        self.fallbacks = 0
        """Batches that went through Python instead (see the module's doc)."""

    async def write(
        self, messages: Sequence[BusMessage], deduplication_token: str
    ) -> list[Rejected]:
        async with self._lock:
            return await asyncio.to_thread(self._write, messages, deduplication_token)

    def _write(self, messages: Sequence[BusMessage], token: str) -> list[Rejected]:
        rejected: list[Rejected] = []
        records: list[tuple[int, bytes | memoryview]] = []
        for message in messages:
            if self._batches.event_id(message.value) is not None:
                records.append((message.offset, self._batches.body(message.value)))
                continue
            # Another schema version (or not a usage event): Python reads it, and the engine
            # gets it re-encoded with the newest schema.
            result = self._decoder.decode(message)
            if isinstance(result, Rejected):
                rejected.append(result)
            else:
                records.append((message.offset, self._batches.body(self._codec.encode(result))))
        if not records:
            return rejected
        by_offset = {message.offset: message for message in messages}
        self._reset()
        staged = self._stage_readable(records, by_offset, token)
        if staged is None:
            return self._write_in_python(messages, token)
        records, flagged, corrupt = staged
        rejected += corrupt
        excluded = []
        for offset in flagged:
            result = self._decoder.decode(by_offset[offset])
            if not isinstance(result, Rejected):
                log.warning(
                    "event at offset %d passes Python's checks but not the engine's: "
                    "batch %s goes through Python",
                    offset,
                    token,
                )
                return self._write_in_python(messages, token)
            rejected.append(result)
            excluded.append(offset)
        if len(excluded) < len(records):
            self._price(excluded)
            self._client.command(
                self._insert_select,
                parameters={"rejected": excluded},
                settings=self._rows.batch_settings(token),
            )
        return rejected

    def _write_in_python(self, messages: Sequence[BusMessage], token: str) -> list[Rejected]:
        self.fallbacks += 1
        rows, rejected = python_rows(self._decoder, self._enricher, messages)
        self._rows.insert_now(rows, token)
        return rejected

    def _reset(self) -> None:
        # IF NOT EXISTS every batch: a server ends an idle session, temporary tables and all.
        for create in (self._incoming_table, PRICES_TABLE, COSTS_TABLE):
            self._client.command(create)
        for table in (INCOMING, PRICES, COSTS):
            self._client.command(f"TRUNCATE TABLE {table}")

    def _stage(self, records: Sequence[tuple[int, bytes | memoryview]]) -> list[int]:
        """Load the container; return the offsets of the rows that fail the checks."""
        try:
            self._client.raw_insert(
                INCOMING, self._incoming_columns, self._batches.container(records), fmt="Avro"
            )
        except Exception as error:
            raise ContainerUnreadable(str(error)) from error
        count, offset_sum, flagged = self._client.query(
            f"SELECT count(), sum({_OFFSET}), groupArrayIf({_OFFSET}, NOT ({VALID_EVENT})) "
            f"FROM {INCOMING}"
        ).result_rows[0]
        if count != len(records) or offset_sum != sum(offset for offset, _ in records):
            raise ContainerUnreadable(
                f"{count} rows read back from {len(records)} records, offsets differ"
            )
        return sorted(flagged)

    def _stage_readable(
        self,
        records: list[tuple[int, bytes | memoryview]],
        by_offset: dict[int, BusMessage],
        token: str,
    ) -> tuple[list[tuple[int, bytes | memoryview]], list[int], list[Rejected]] | None:
        """Stage the records: the records staged, the offsets failing the checks, and the
        corrupt ones left out. A corrupt body spoils the whole container, so when the engine
        cannot read it, the records Python finds corrupt are left out and the rest staged
        again. None: the engine cannot read them even so."""
        try:
            return records, self._stage(records), []
        except ContainerUnreadable as error:
            unreadable = error
        kept, corrupt = self._drop_corrupt(records, by_offset)
        if corrupt:
            self._reset()
            try:
                return kept, self._stage(kept), corrupt
            except ContainerUnreadable as error:
                unreadable = error
        log.warning(
            "the engine cannot read batch %s (%s): it goes through Python", token, unreadable
        )
        return None

    def _drop_corrupt(
        self,
        records: Sequence[tuple[int, bytes | memoryview]],
        by_offset: dict[int, BusMessage],
    ) -> tuple[list[tuple[int, bytes | memoryview]], list[Rejected]]:
        """Python decodes every record, to find the ones that spoiled the container."""
        kept: list[tuple[int, bytes | memoryview]] = []
        corrupt: list[Rejected] = []
        for offset, body in records:
            result = self._decoder.decode(by_offset[offset])
            if isinstance(result, Rejected):
                corrupt.append(result)
            else:
                kept.append((offset, body))
        return kept, corrupt

    def _price(self, excluded: Sequence[int]) -> None:
        keys = self._client.query(
            f"SELECT DISTINCT team_id, provider, model, hour, credential_type FROM {_ACCEPTED}",
            parameters={"rejected": list(excluded)},
        ).result_rows
        prices: list[list[Any]] = []
        per_event = False
        for team_id, provider, model, hour, credential_type in keys:
            at = datetime.fromtimestamp(hour * 3600, tz=UTC)
            rates = self._enricher.key_rates(team_id, provider, model, at, credential_type)
            per_token = None if rates is None else _per_token(rates)
            per_event |= per_token is None
            prices.append(
                [team_id, provider, model, hour, credential_type, per_token is None]
                + (per_token or [Decimal(0)] * (2 * len(USAGE_KINDS)))
                + [rates is not None and rates.price_known, rates.price_source if rates else ""]
            )
        self._client.insert(PRICES, prices, column_names=_PRICE_COLUMNS)
        if per_event:
            self._price_per_event(excluded)

    def _price_per_event(self, excluded: Sequence[int]) -> None:
        rows = self._client.query(
            f"""
            SELECT offset, team_id, provider, model, started_at, credential_type,
                {", ".join(TOKEN_FIELDS)}
            FROM {_ACCEPTED}
            INNER JOIN {PRICES} AS p USING (team_id, provider, model, hour, credential_type)
            WHERE p.per_event
            """,
            parameters={"rejected": list(excluded)},
        ).result_rows
        costs: list[list[Any]] = []
        for offset, team_id, provider, model, started_at, credential_type, *tokens in rows:
            priced = self._enricher.costs(
                team_id,
                provider,
                model,
                EPOCH + timedelta(microseconds=started_at),
                credential_type,
                TokenCounts(*tokens),
            )
            costs.append([offset, *_price_values(priced)])
        self._client.insert(COSTS, costs, column_names=_COST_COLUMNS)


_PRICE_COLUMNS: Final = [
    "team_id",
    "provider",
    "model",
    "hour",
    "credential_type",
    "per_event",
    *(f"market_{kind}" for kind in USAGE_KINDS),
    *(f"charged_{kind}" for kind in USAGE_KINDS),
    "price_known",
    "price_source",
]
_COST_COLUMNS: Final = ["offset", *PRICE_COLUMNS]
_price_values: Final = attrgetter(*PRICE_COLUMNS)


# Integer digits a per-token rate may have so that rate times MAX_TOKENS fits Decimal(76, 40).
_RATE_INTEGER_DIGITS: Final = 76 - RATE_SCALE - len(str(MAX_TOKENS))


def _per_token(rates: KeyRates) -> list[Decimal] | None:
    """The key's rates per token, market then charged, in ``_PRICE_COLUMNS`` order; None when
    one does not fit the engine's rate column exactly (the key's events are then priced one
    by one)."""
    per_token: list[Decimal] = []
    for side in (rates.market, rates.charged):
        for kind in USAGE_KINDS:
            rate: Decimal = getattr(side, kind).scaleb(-6)
            exponent = rate.as_tuple().exponent
            if not isinstance(exponent, int):  # infinity or NaN
                return None
            if rate and (exponent < -RATE_SCALE or rate.adjusted() >= _RATE_INTEGER_DIGITS):
                return None
            per_token.append(rate)
    return per_token
