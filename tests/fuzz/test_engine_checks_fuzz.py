"""The engine path against the Python path on events anywhere in what the schema allows:
the same messages rejected with the same reasons, the same rows written, column for column.
Each example is one batch through both."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import pytest
from clickhouse_connect.driver.client import Client
from hypothesis import given, settings
from hypothesis import strategies as st

from meterline.common.bus import BusMessage
from meterline.common.clickhouse import RAW_COLUMNS
from meterline.common.codec import UsageEventCodec
from meterline.common.config import GatewayConfig
from meterline.common.events import UsageEvent
from meterline.common.pricing import StaticPrices
from meterline.consumer.engine_write import MAX_TOKENS, EngineWriter
from meterline.consumer.enrich import Enricher
from meterline.consumer.write import ClickHouseWriter, PythonBatchWriter
from tests.fuzz.settings import FUZZ
from tests.fuzz.test_codec_fuzz import BREAKING_CHANGES, LONG, events

pytestmark = pytest.mark.clickhouse

CODEC = UsageEventCodec()
ENRICHER = Enricher(StaticPrices({}), GatewayConfig())
# Mostly token counts the engine prices itself, now and then one it leaves to Python.
TOKENS = st.integers(0, MAX_TOKENS) | LONG


@st.composite
def batches(draw: st.DrawFn) -> list[UsageEvent]:
    drawn = draw(st.lists(st.tuples(events(TOKENS), BREAKING_CHANGES), min_size=1, max_size=25))
    for event, changes in drawn:
        for name, value in changes.items():
            setattr(event, name, value)
    return [event for event, _ in drawn]


def rows(client: Client, table: str) -> list[tuple[Any, ...]]:
    columns = ", ".join(RAW_COLUMNS)
    return [
        tuple(row)
        for row in client.query(f"SELECT {columns} FROM {table} ORDER BY event_id").result_rows
    ]


def test_the_engine_path_answers_exactly_as_the_python_path(clickhouse: Client) -> None:
    clickhouse.command("CREATE TABLE usage_events_python AS usage_events")
    engine = EngineWriter(clickhouse, CODEC, ENRICHER)
    python = PythonBatchWriter(CODEC, ENRICHER, ClickHouseWriter(clickhouse, "usage_events_python"))

    seen = {"rows": 0, "rejected": 0}

    @settings(FUZZ, max_examples=40)
    @given(batches())
    def check(batch: list[UsageEvent]) -> None:
        for table in ("usage_events", "usage_events_python"):
            clickhouse.command(f"TRUNCATE TABLE {table}")
        messages = [
            BusMessage("t", 0, offset, None, CODEC.encode(event))
            for offset, event in enumerate(batch)
        ]
        token = uuid.uuid4().hex
        by_engine = asyncio.run(engine.write(messages, token))
        by_python = asyncio.run(python.write(messages, token))

        assert sorted((r.message.offset, r.reason) for r in by_engine) == sorted(
            (r.message.offset, r.reason) for r in by_python
        )
        written = rows(clickhouse, "usage_events")
        assert written == rows(clickhouse, "usage_events_python")
        seen["rows"] += len(written)
        seen["rejected"] += len(by_engine)

    check()
    # The examples reached every branch: rows written, messages rejected, batches handed to
    # Python whole.
    assert seen["rows"] and seen["rejected"] and engine.fallbacks, (seen, engine.fallbacks)
