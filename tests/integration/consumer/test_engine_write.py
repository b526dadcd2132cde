"""The engine path writes exactly the rows the Python path would: the same batch through
``EngineWriter`` and through ``PythonBatchWriter`` (decode, validate and price in Python),
compared column by column; what Python rejects, the engine path rejects with Python's
reason; and a batch written twice with its token counts once."""

from __future__ import annotations

import json
import random
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from clickhouse_connect.driver.client import Client

from meterline.common.bus import BusMessage
from meterline.common.clickhouse import RAW_COLUMNS
from meterline.common.codec import UsageEventCodec
from meterline.common.config import GatewayConfig, PriceOverride, TeamConfig
from meterline.common.events import API_SURFACES, UsageEvent
from meterline.common.pricing import GenaiPrices
from meterline.consumer.decode import Decoder, Rejected
from meterline.consumer.engine_write import ContainerUnreadable, EngineWriter
from meterline.consumer.enrich import Enricher
from meterline.consumer.write import ClickHouseWriter, PythonBatchWriter

pytestmark = pytest.mark.clickhouse

CODEC = UsageEventCodec()
PRICES = GenaiPrices()
CONFIG = GatewayConfig(
    teams=[
        TeamConfig(id="acme"),
        TeamConfig(id="globex", price_overrides=[PriceOverride(multiplier=Decimal("0.85"))]),
        TeamConfig(
            id="initech",
            price_overrides=[
                PriceOverride(
                    model="house-model",
                    input_per_mtok=Decimal("0.123456789"),
                    output_per_mtok=Decimal("7"),
                ),
                PriceOverride(multiplier=Decimal("1.0375")),
            ],
        ),
    ]
)
MODELS = [
    ("openai", "gpt-4o"),  # linear
    ("openai", "gpt-5-mini"),  # linear, three decimals
    ("anthropic", "claude-haiku-4-5"),  # linear, cache writes at two TTLs
    ("anthropic", "claude-sonnet-4-5"),  # tiered by prompt size: priced event by event
    ("google", "gemini-2.5-pro"),  # tiered
    ("openai", "house-model"),  # no market price
    ("openai", "gpt-audio"),  # linear, audio at its own rates
    ("anthropic", "claude-sonnet-4-6"),  # linear, web searches per search
]
START = datetime(2026, 3, 2, 9, 59, 58, 999_999, tzinfo=UTC)


def varied_events(count: int, seed: int = 3) -> list[UsageEvent]:
    rng = random.Random(seed)
    events = []
    for i in range(count):
        provider, model = MODELS[i % len(MODELS)]
        input_tokens = rng.choice([0, 1, rng.randint(2, 5_000), rng.randint(150_000, 400_000)])
        cached = rng.randint(0, input_tokens // 2)
        written = rng.randint(0, (input_tokens - cached) // 2)
        audio = rng.randint(0, input_tokens - cached - written) if i % 3 else 0
        output_tokens = rng.randint(0, 9_000)
        streamed = rng.random() < 0.5
        event_id = UsageEvent.new_id()
        events.append(
            UsageEvent(
                event_id=event_id.upper() if i % 5 == 0 else event_id,
                team_id=["acme", "globex", "initech", "nobody-configured"][i % 4],
                api_key_name=rng.choice(["prod", "ci"]),
                api_surface=rng.choice(sorted(API_SURFACES)),
                # Across an hour boundary, with microseconds to truncate.
                started_at=START + timedelta(microseconds=rng.randint(0, 4_000_000)),
                duration_ms=rng.randint(0, 2**32 - 1),
                time_to_first_token_ms=rng.randint(0, 5_000) if streamed else None,
                user_id=rng.choice([None, "", "user-1", "ユーザー", "u" * 256]),
                tags=rng.sample(["b", "a", "plan:enterprise", "é", "feature:chat"], 3)
                + rng.choice([[], ["a"], ["z" * 64]]),
                model_requested=f"{provider}/{model}",
                model=model,
                provider=provider,
                credential_type="byok" if i % 7 == 0 else "system",
                streamed=streamed,
                status=rng.choice(["success", "error", "client_disconnected"]),
                http_status=rng.choice([0, 200, 429, 65535]),
                finish_reason=rng.choice([None, "stop", "length"]),
                error_type=rng.choice([None, "rate_limited"]),
                input_tokens=input_tokens,
                output_tokens=output_tokens,
                cached_input_tokens=cached,
                cache_creation_input_tokens=written,
                cache_creation_1h_input_tokens=written // 3 if i % 2 else 0,
                reasoning_tokens=rng.randint(0, output_tokens),
                input_audio_tokens=audio,
                output_audio_tokens=rng.randint(0, output_tokens) if i % 3 else 0,
                web_search_requests=rng.choice([0, 0, 1, 7]),
                zero_data_retention=i % 4 == 1,
                raw_usage=json.dumps({"prompt_tokens": input_tokens, "note": "ü"}),
            )
        )
    return events


def messages(payloads: list[bytes], first_offset: int = 0) -> list[BusMessage]:
    return [
        BusMessage("usage-events", 0, first_offset + i, None, payload)
        for i, payload in enumerate(payloads)
    ]


def python_table(client: Client) -> ClickHouseWriter:
    """A copy of the raw table without views, for the Python path's rows."""
    client.command("CREATE TABLE usage_events_python AS usage_events")
    return ClickHouseWriter(client, "usage_events_python")


def rows(client: Client, table: str) -> list[tuple[Any, ...]]:
    columns = ", ".join(RAW_COLUMNS)
    return [
        tuple(row)
        for row in client.query(f"SELECT {columns} FROM {table} ORDER BY event_id").result_rows
    ]


def reasons(rejected: list[Rejected]) -> list[tuple[int, str]]:
    return sorted((r.message.offset, r.reason) for r in rejected)


async def test_the_engine_writes_exactly_the_rows_python_would(clickhouse: Client) -> None:
    batch = messages([CODEC.encode(e) for e in varied_events(600)])
    engine = EngineWriter(clickhouse, CODEC, Enricher(PRICES, CONFIG))
    python = PythonBatchWriter(CODEC, Enricher(PRICES, CONFIG), python_table(clickhouse))

    assert await engine.write(batch, "usage-events/0/0-599") == []
    assert await python.write(batch, "usage-events/0/0-599") == []

    written = rows(clickhouse, "usage_events")
    assert len(written) == 600
    assert engine.fallbacks == 0
    expected = rows(clickhouse, "usage_events_python")
    for engine_row, python_row in zip(written, expected, strict=True):
        assert dict(zip(RAW_COLUMNS, engine_row, strict=True)) == dict(
            zip(RAW_COLUMNS, python_row, strict=True)
        )
    # The batch had what it takes to exercise every pricing branch.
    sources = {row[RAW_COLUMNS.index("price_source")] for row in written}
    assert {"unknown", f"{PRICES.name}", f"{PRICES.name} + override"} <= sources
    hourly = clickhouse.query("SELECT sum(request_count) FROM usage_hourly").result_rows
    assert hourly == [(600,)]


async def test_what_python_rejects_the_engine_rejects_with_the_same_reason(
    clickhouse: Client,
) -> None:
    good = varied_events(40, seed=9)
    bad = [
        UsageEvent(**{**vars_of(good[0]), "event_id": UsageEvent.new_id(), "output_tokens": -1}),
        UsageEvent(**{**vars_of(good[1]), "event_id": UsageEvent.new_id(), "tags": ["x" * 65]}),
        UsageEvent(**{**vars_of(good[2]), "event_id": UsageEvent.new_id(), "team_id": ""}),
        UsageEvent(**{**vars_of(good[3]), "event_id": UsageEvent.new_id(), "status": "maybe"}),
        UsageEvent(**{**vars_of(good[4]), "event_id": "0" * 36}),
        UsageEvent(**{**vars_of(good[5]), "event_id": "{" + UsageEvent.new_id() + "}"}),
        UsageEvent(**{**vars_of(good[5]), "event_id": UsageEvent.new_id(), "http_status": -4}),
    ]
    payloads = [CODEC.encode(e) for e in good[6:] + bad]
    payloads.append(CODEC.encode(good[0])[:-3])  # the body cut short
    payloads.append(CODEC.encode(good[1]) + b"\x00\x00")  # trailing bytes
    payloads.append(b"\xc3\x01 not avro at all")
    batch = messages(payloads, first_offset=1_000)
    expected = reasons(
        [r for r in (Decoder(CODEC).decode(m) for m in batch) if isinstance(r, Rejected)]
    )
    assert len(expected) == 10

    engine = EngineWriter(clickhouse, CODEC, Enricher(PRICES, CONFIG))
    rejected = await engine.write(batch, "usage-events/0/1000-1043")

    assert reasons(rejected) == expected
    assert engine.fallbacks == 0
    written = rows(clickhouse, "usage_events")
    assert sorted(str(row[0]) for row in written) == sorted(e.event_id.lower() for e in good[6:])


async def test_a_batch_the_engine_cannot_vouch_for_goes_through_python_whole(
    clickhouse: Client,
) -> None:
    events = varied_events(20, seed=5)
    # More tokens than the engine's rate arithmetic takes on (no request has them, but Python
    # prices them all the same).
    events[3] = UsageEvent(**{**vars_of(events[3]), "input_tokens": 2 * 10**15})
    batch = messages([CODEC.encode(e) for e in events])
    engine = EngineWriter(clickhouse, CODEC, Enricher(PRICES, CONFIG))
    python = PythonBatchWriter(CODEC, Enricher(PRICES, CONFIG), python_table(clickhouse))

    assert await engine.write(batch, "usage-events/0/0-19") == []
    assert await python.write(batch, "usage-events/0/0-19") == []

    assert engine.fallbacks == 1
    assert rows(clickhouse, "usage_events") == rows(clickhouse, "usage_events_python")
    assert len(rows(clickhouse, "usage_events")) == 20


async def test_a_container_the_engine_cannot_read_goes_through_python_whole(
    clickhouse: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    batch = messages([CODEC.encode(e) for e in varied_events(30, seed=6)])
    engine = EngineWriter(clickhouse, CODEC, Enricher(PRICES, CONFIG))
    python = PythonBatchWriter(CODEC, Enricher(PRICES, CONFIG), python_table(clickhouse))

    def unreadable(*args: object) -> list[int]:
        raise ContainerUnreadable("the engine's Avro reader refused it")

    monkeypatch.setattr(engine, "_stage", unreadable)
    assert await engine.write(batch, "usage-events/0/0-29") == []
    assert await python.write(batch, "usage-events/0/0-29") == []

    assert engine.fallbacks == 1
    assert rows(clickhouse, "usage_events") == rows(clickhouse, "usage_events_python")
    assert len(rows(clickhouse, "usage_events")) == 30


async def test_a_batch_written_again_with_its_token_counts_once(clickhouse: Client) -> None:
    engine = EngineWriter(clickhouse, CODEC, Enricher(PRICES, CONFIG))
    first = messages([CODEC.encode(e) for e in varied_events(300, seed=1)])
    second = messages([CODEC.encode(e) for e in varied_events(200, seed=2)], first_offset=300)

    await engine.write(first, "usage-events/0/0-299")
    await engine.write(second, "usage-events/0/300-499")
    await engine.write(first, "usage-events/0/0-299")  # a crash before the commit: read again

    assert clickhouse.query("SELECT count() FROM usage_events").result_rows == [(500,)]
    hourly = clickhouse.query("SELECT sum(request_count) FROM usage_hourly").result_rows
    assert hourly == [(500,)]


def vars_of(event: UsageEvent) -> dict[str, Any]:
    return {name: getattr(event, name) for name in UsageEvent.__dataclass_fields__}


async def test_a_batch_with_v1_messages_is_written_as_python_writes_it(clickhouse: Client) -> None:
    """During an upgrade a topic holds events of both schema versions: the v1 ones are read
    by Python and re-encoded, with the v2 fields at their defaults."""
    events = varied_events(60, seed=11)
    v1 = UsageEventCodec(writer_version=1)
    payloads = [(v1 if i % 2 else CODEC).encode(e) for i, e in enumerate(events)]
    assert len({p[2:10] for p in payloads}) == 2
    batch = messages(payloads)
    engine = EngineWriter(clickhouse, CODEC, Enricher(PRICES, CONFIG))
    python = PythonBatchWriter(CODEC, Enricher(PRICES, CONFIG), python_table(clickhouse))
    assert await engine.write(batch, "usage-events/0/0-59") == []
    assert await python.write(batch, "usage-events/0/0-59") == []
    assert engine.fallbacks == 0
    written = rows(clickhouse, "usage_events")
    assert written == rows(clickhouse, "usage_events_python")
    by_id = {str(e.event_id).lower(): i for i, e in enumerate(events)}
    searches = RAW_COLUMNS.index("web_search_requests")
    for row in written:
        if by_id[str(row[0])] % 2:
            assert row[searches] == 0
    assert any(row[searches] for row in written)
