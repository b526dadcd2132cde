"""The raw row's description against what it describes: the table the migrations make, the
event and its costs, and each check's Python and SQL agreeing on the same events, staged in
the warehouse engine as the consumer stages them."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest
from clickhouse_connect.driver.client import Client

from meterline.common import usage_row
from meterline.common.bus import BusMessage
from meterline.common.codec import HEADER_LENGTH, UsageEventCodec
from meterline.common.events import EventValidationError, UsageEvent
from meterline.common.pricing import (
    TOKEN_FIELDS,
    USAGE_BY_KIND_SQL,
    USAGE_KINDS,
    PerMillionRates,
    TokenCounts,
    usage_by_kind,
)
from meterline.common.usage_row import (
    CHECKS,
    COLUMNS,
    MAX_TAG_LENGTH,
    MAX_TAGS,
    MAX_UINT32,
    MAX_USER_LENGTH,
    PRICE_COLUMNS,
    RAW_COLUMNS,
    Costs,
)
from meterline.consumer.avro_block import OFFSET_FIELD, AvroBatches
from meterline.consumer.decode import Decoder, Rejected
from meterline.consumer.engine_write import column_type

CODEC = UsageEventCodec()


def event(**overrides: Any) -> UsageEvent:
    values: dict[str, Any] = {
        "event_id": "0f8fad5b-d9cb-469f-a165-70867728950e",
        "team_id": "acme",
        "api_key_name": "prod",
        "api_surface": "messages",
        "started_at": datetime(2026, 3, 2, 9, 30, 1, 123_456, tzinfo=UTC),
        "duration_ms": 1_200,
        "model_requested": "anthropic/claude-haiku-4-5",
        "model": "claude-haiku-4-5",
        "provider": "anthropic",
        "credential_type": "system",
        "streamed": True,
        "status": "success",
        "http_status": 200,
        "input_tokens": 1_000,
        "output_tokens": 300,
        "cached_input_tokens": 400,
        "cache_creation_input_tokens": 200,
        "cache_creation_1h_input_tokens": 50,
        "reasoning_tokens": 100,
        "input_audio_tokens": 150,
        "output_audio_tokens": 60,
        "web_search_requests": 2,
        "zero_data_retention": True,
        "time_to_first_token_ms": 80,
        "user_id": "user-1",
        "tags": ["b", "a", "b"],
        "finish_reason": "stop",
        "error_type": None,
        "raw_usage": '{"input_tokens": 1000}',
    }
    values.update(overrides)
    return UsageEvent(**values)


# Events every check accepts, many at its limit.
GOOD = [
    event(),
    event(user_id=None, tags=[], finish_reason=None, time_to_first_token_ms=None),
    event(event_id="0F8FAD5B-D9CB-469F-A165-70867728950E"),
    event(duration_ms=0, time_to_first_token_ms=0, http_status=0),
    event(duration_ms=MAX_UINT32, time_to_first_token_ms=MAX_UINT32, http_status=65535),
    event(
        input_tokens=600,
        cached_input_tokens=400,
        cache_creation_input_tokens=200,
        cache_creation_1h_input_tokens=200,
        input_audio_tokens=0,
        output_tokens=100,
        reasoning_tokens=100,
        output_audio_tokens=100,
    ),
    event(input_tokens=400, cached_input_tokens=150, input_audio_tokens=50),
    event(
        input_tokens=0,
        output_tokens=0,
        cached_input_tokens=0,
        cache_creation_input_tokens=0,
        cache_creation_1h_input_tokens=0,
        reasoning_tokens=0,
        input_audio_tokens=0,
        output_audio_tokens=0,
        web_search_requests=0,
        zero_data_retention=False,
    ),
    event(tags=[f"{i}" * MAX_TAG_LENGTH for i in range(MAX_TAGS)]),
    event(tags=["é" * MAX_TAG_LENGTH], user_id="ユ" * MAX_USER_LENGTH),
    event(user_id="", api_surface="chat_completions", credential_type="byok", status="error"),
]

# One event per way to fail, with the message it is refused with.
BAD = [
    (event(event_id="not-a-uuid"), "event_id is not a UUID: 'not-a-uuid'"),
    (
        event(event_id="{0f8fad5b-d9cb-469f-a165-70867728950e}"),
        "event_id is not a UUID: '{0f8fad5b-d9cb-469f-a165-70867728950e}'",
    ),
    (
        event(event_id="0f8fad5bd9cb469fa16570867728950e"),
        "event_id is not a UUID: '0f8fad5bd9cb469fa16570867728950e'",
    ),
    (event(team_id=""), "team_id is empty"),
    (event(api_key_name=""), "api_key_name is empty"),
    (event(model=""), "model is empty"),
    (event(provider=""), "provider is empty"),
    (
        event(api_surface="grpc"),
        "api_surface 'grpc' is not one of "
        "['chat_completions', 'language_model', 'messages', 'responses']",
    ),
    (
        event(credential_type="shared"),
        "credential_type 'shared' is not one of ['byok', 'system']",
    ),
    (
        event(status="maybe"),
        "status 'maybe' is not one of ['client_disconnected', 'error', 'success']",
    ),
    (event(duration_ms=-1), "duration_ms is negative"),
    (event(input_tokens=-1), "input_tokens is negative"),
    (event(output_tokens=-1, reasoning_tokens=0), "output_tokens is negative"),
    (event(cached_input_tokens=-1), "cached_input_tokens is negative"),
    (event(cache_creation_input_tokens=-1), "cache_creation_input_tokens is negative"),
    (event(cache_creation_1h_input_tokens=-1), "cache_creation_1h_input_tokens is negative"),
    (event(reasoning_tokens=-1), "reasoning_tokens is negative"),
    (event(input_audio_tokens=-1), "input_audio_tokens is negative"),
    (event(output_audio_tokens=-1), "output_audio_tokens is negative"),
    (event(web_search_requests=-1), "web_search_requests is negative"),
    (event(duration_ms=MAX_UINT32 + 1), "duration_ms exceeds 4294967295"),
    (event(time_to_first_token_ms=-1), "time_to_first_token_ms is not 0..4294967295"),
    (
        event(time_to_first_token_ms=MAX_UINT32 + 1),
        "time_to_first_token_ms is not 0..4294967295",
    ),
    (event(http_status=-1), "http_status is not 0..65535"),
    (event(http_status=65536), "http_status is not 0..65535"),
    (
        event(cached_input_tokens=651),
        "cached_input_tokens + cache_creation_input_tokens + input_audio_tokens"
        " exceed input_tokens",
    ),
    (
        event(input_audio_tokens=401),
        "cached_input_tokens + cache_creation_input_tokens + input_audio_tokens"
        " exceed input_tokens",
    ),
    (event(output_audio_tokens=301), "output_audio_tokens exceed output_tokens"),
    (
        event(cache_creation_1h_input_tokens=201),
        "cache_creation_1h_input_tokens exceed cache_creation_input_tokens",
    ),
    (event(reasoning_tokens=301), "reasoning_tokens exceed output_tokens"),
    (event(tags=[f"t{i}" for i in range(MAX_TAGS + 1)]), "more than 10 tags"),
    (event(tags=["ok", ""]), "tag '' is not 1..64 characters"),
    (event(tags=["x" * 65]), f"tag {'x' * 65!r} is not 1..64 characters"),
    (event(tags=["é" * 100]), f"tag {'é' * 80!r} is not 1..64 characters"),
    (event(user_id="u" * 257), "user_id is longer than 256 characters"),
    (event(user_id="ü" * 257), "user_id is longer than 256 characters"),
    # Failing several checks: the first one's message.
    (event(team_id="", status="maybe", reasoning_tokens=-5), "team_id is empty"),
]


@pytest.mark.parametrize(("bad", "message"), BAD)
def test_each_refused_event_gets_its_message(bad: UsageEvent, message: str) -> None:
    assert not usage_row.passes(bad)
    assert usage_row.failure(bad) == message
    with pytest.raises(EventValidationError) as refused:
        bad.validate()
    assert str(refused.value) == message


def test_an_event_without_a_time_zone_is_refused() -> None:
    naive = event(started_at=datetime(2026, 3, 2, 9, 30))
    assert not usage_row.passes(naive)
    assert usage_row.failure(naive) == "started_at has no time zone"


@pytest.mark.parametrize("good", GOOD)
def test_good_events_pass_every_check(good: UsageEvent) -> None:
    assert usage_row.passes(good) is True
    assert usage_row.failure(good) is None
    good.validate()


def test_every_check_is_one_of_the_event_fields() -> None:
    fields = {field.name for field in dataclasses.fields(UsageEvent)}
    assert {check.field for check in CHECKS} <= fields


def test_the_description_matches_the_event_the_costs_and_the_prices() -> None:
    event_columns = [column.name for column in COLUMNS if column.sql is not None]
    # Every field of the event is stored (a column may also be derived from several).
    assert {field.name for field in dataclasses.fields(UsageEvent)} <= set(event_columns)
    assert tuple(field.name for field in dataclasses.fields(Costs)) == PRICE_COLUMNS
    assert set(TOKEN_FIELDS) <= set(RAW_COLUMNS)
    assert tuple(USAGE_BY_KIND_SQL) == USAGE_KINDS
    assert {field.name for field in dataclasses.fields(PerMillionRates)} == set(USAGE_KINDS)


def test_the_row_is_the_event_and_its_costs_column_for_column() -> None:
    costs = Costs(Decimal("0.001"), Decimal("0.0008"), True, "static + override")
    row = dict(zip(RAW_COLUMNS, usage_row.row(event(), costs), strict=True))
    sent = event()
    assert row == {
        **{name: getattr(sent, name) for name in RAW_COLUMNS if name not in PRICE_COLUMNS},
        **dataclasses.asdict(costs),
        "tags": ["a", "b"],
        "error_type": "",
    }
    bare = usage_row.row(event(user_id=None, finish_reason=None, tags=[]), costs)
    assert [bare[RAW_COLUMNS.index(name)] for name in ("user_id", "finish_reason", "tags")] == [
        "",
        "",
        [],
    ]


@pytest.mark.clickhouse
def test_every_column_is_the_raw_tables_with_its_type(clickhouse: Client) -> None:
    declared: dict[str, str] = {
        name: type_
        for name, type_ in clickhouse.query(
            "SELECT name, type FROM system.columns WHERE database = currentDatabase()"
            " AND table = 'usage_events' ORDER BY position"
        ).result_rows
    }
    assert declared.pop("ingested_at") == "DateTime64(3, 'UTC')"
    assert declared == {column.name: column.type for column in COLUMNS}


def stage(client: Client, bodies: list[bytes | memoryview]) -> None:
    """The Avro bodies, staged as the engine path stages a batch (offsets 0, 1, …)."""
    batches = AvroBatches(CODEC.reader_schema)
    columns = ", ".join(
        f"`{field['name']}` {column_type(field['type'])}" for field in batches.fields
    )
    client.command(f"CREATE TABLE staged ({columns}) ENGINE = Memory")
    client.raw_insert(
        "staged",
        [field["name"] for field in batches.fields],
        batches.container(list(enumerate(bodies))),
        fmt="Avro",
    )


def staged_offsets(client: Client, condition: str) -> list[bool]:
    return [
        bool(value)
        for (value,) in client.query(
            f"SELECT {condition} FROM staged ORDER BY reinterpretAsUInt64({OFFSET_FIELD})"
        ).result_rows
    ]


@pytest.mark.clickhouse
def test_each_checks_python_and_sql_agree(clickhouse: Client) -> None:
    events = GOOD + [bad for bad, _ in BAD]
    stage(clickhouse, [CODEC.encode(e)[HEADER_LENGTH:] for e in events])
    for check, test in zip(CHECKS, usage_row.CHECK_TESTS, strict=True):
        python = [bool(test(e)) for e in events]
        assert False in python or check.sql is None, f"no event fails {check.python}"
        if check.sql is not None:
            assert staged_offsets(clickhouse, f"({check.sql})") == python, check.sql
    whole = [usage_row.passes(e) for e in events]
    assert staged_offsets(clickhouse, f"({usage_row.sql_checks()})") == whole


@pytest.mark.clickhouse
def test_text_that_is_not_utf8_fails_the_sql_as_python_refuses_it(clickhouse: Client) -> None:
    """Each text column in turn holds bytes that are not UTF-8, in an otherwise good event."""
    marker = "\x01bad\x01"
    text = [column.name for column in COLUMNS if column.sql is not None and "String" in column.type]
    bodies = []
    for name in text:
        value: Any = [marker] if name == "tags" else "x" + marker
        data = CODEC.encode(event(**{name: value}))
        assert data.count(marker.encode()) == 1, name
        bodies.append(data.replace(marker.encode(), b"\x01\xff\xfe\xfd\x01"))
    for data in bodies:
        decoded = Decoder(CODEC).decode(BusMessage("t", 0, 0, None, data))
        assert isinstance(decoded, Rejected)
    stage(clickhouse, [data[HEADER_LENGTH:] for data in bodies])
    assert staged_offsets(clickhouse, f"({usage_row.sql_checks()})") == [False] * len(text)
    assert len(usage_row.UTF8_SQL) >= len(text)


def test_the_token_kinds_count_every_token_once() -> None:
    tokens = TokenCounts(1_000, 300, 400, 200, 50, 100, 150, 60, 2)
    assert usage_by_kind(tokens) == (250, 400, 150, 50, 150, 240, 60, 2)
    *token_kinds, searches = usage_by_kind(tokens)
    assert sum(token_kinds) == tokens.input_tokens + tokens.output_tokens
    assert searches == tokens.web_search_requests
