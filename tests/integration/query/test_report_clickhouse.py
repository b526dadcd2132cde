"""GET /v1/report and /v1/generation on the real ClickHouse engine, checked against sums
computed in Python from the same hand-made rows (Decimal for money, so exactly)."""

from __future__ import annotations

import csv
import io
import json
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from clickhouse_connect.driver.client import Client
from fastapi.testclient import TestClient

from meterline.common.clickhouse import RAW_COLUMNS, connect
from meterline.common.config import GatewayConfig, GatewayKey, TeamConfig, hash_key
from meterline.common.migrations import migrate
from meterline.query.app import create_app
from meterline.query.report_query import METRICS
from meterline.query.settings import QuerySettings

pytestmark = pytest.mark.clickhouse

KEYS = {"acme": "ml_acme_key_for_tests", "globex": "ml_globex_key_for_tests"}
# Every rollup counting each request once; the per-tag ones count it once per tag.
WHOLE_ROLLUPS = (
    "usage_hourly",
    "usage_daily",
    "usage_by_model_hourly",
    "usage_by_model_daily",
    "usage_by_user_daily",
    "usage_by_user_model_daily",
)
# The per-tag ones count a request once per tag.
TAG_ROLLUPS = ("usage_by_tag_hourly", "usage_by_tag_daily", "usage_by_tag_model_daily")
ROLLUPS = (*WHOLE_ROLLUPS, *TAG_ROLLUPS)
TOKEN_METRICS = (
    "input_tokens",
    "output_tokens",
    "cached_input_tokens",
    "cache_creation_input_tokens",
    "reasoning_tokens",
)
MODELS = (("gpt-5", "openai"), ("claude-sonnet-4-6", "anthropic"), ("mystery-7b", "vllm"))
TAG_SETS: tuple[tuple[str, ...], ...] = ((), ("a",), ("a", "b"), ("b", "c"), ("a", "b", "c"))
START = datetime(2026, 2, 28, 20, 0, tzinfo=UTC)


@dataclass
class Event:
    event_id: uuid.UUID
    team_id: str
    started_at: datetime
    user_id: str
    model: str
    provider: str
    credential_type: str
    api_key_name: str
    tags: tuple[str, ...]
    tokens: dict[str, int]
    market_cost: Decimal
    total_cost: Decimal
    price_known: bool
    status: str = "success"
    zero_data_retention: bool = False
    extra: dict[str, Any] = field(default_factory=dict)


def make_events() -> list[Event]:
    """Every 23 minutes for three days from 2026-02-28 20:00 UTC: crosses hours, days, a
    month end; two teams, users (and none), priced and unpriced models, BYOK and system."""
    events = []
    for n in range(190):
        model, provider = MODELS[n % 3]
        priced = model != "mystery-7b"
        byok = n % 4 == 0
        market = (
            Decimal(n * 1_234_567 + 89) / Decimal(10**12) + Decimal(n % 7) if priced else Decimal(0)
        )
        events.append(
            Event(
                event_id=uuid.UUID(int=n + 1),
                team_id="acme" if n % 5 else "globex",
                started_at=START + timedelta(minutes=23 * n, seconds=n % 60),
                user_id=("", "u1", "u2", "u3")[n % 4],
                model=model,
                provider=provider,
                credential_type="byok" if byok else "system",
                api_key_name=("prod", "dev")[n % 2],
                tags=TAG_SETS[n % len(TAG_SETS)],
                tokens={
                    "input_tokens": 1000 + n,
                    "output_tokens": 50 + 3 * n,
                    "cached_input_tokens": n % 11,
                    "cache_creation_input_tokens": n % 13,
                    "reasoning_tokens": n % 5,
                },
                market_cost=market,
                total_cost=Decimal(0)
                if byok
                else (market * Decimal("0.8")).quantize(Decimal("1e-12")),
                price_known=priced,
                status="success" if n % 9 else "error",
                # Mostly one provider's, but not only: the rollups must keep it apart.
                zero_data_retention=provider == "anthropic" or n % 10 == 0,
                # Some streamed, with a first token before the end, and web searches.
                extra={"streamed": True, "time_to_first_token_ms": 40 + n, "web_searches": n % 4}
                if n % 3 == 1
                else {},
            )
        )
    return events


EVENTS = make_events()
COLUMNS = list(RAW_COLUMNS)


def raw_row(e: Event) -> list[Any]:
    return [
        e.event_id,
        e.team_id,
        e.api_key_name,
        "chat_completions",
        e.started_at,
        120 + e.event_id.int,
        e.extra.get("time_to_first_token_ms"),
        e.user_id,
        list(e.tags),
        f"{e.provider}/{e.model}",
        e.model,
        e.provider,
        e.credential_type,
        e.extra.get("streamed", False),
        e.status,
        200 if e.status == "success" else 502,
        "stop",
        "" if e.status == "success" else "upstream_error",
        e.tokens["input_tokens"],
        e.tokens["output_tokens"],
        e.tokens["cached_input_tokens"],
        e.tokens["cache_creation_input_tokens"],
        0,
        e.tokens["reasoning_tokens"],
        0,
        0,
        e.extra.get("web_searches", 0),
        e.zero_data_retention,
        e.market_cost,
        e.total_cost,
        e.price_known,
        "test" if e.price_known else "unknown",
        json.dumps({"prompt_tokens": e.tokens["input_tokens"]}),
    ]


# The columns migration 0008 added: a warehouse migrated to an earlier version lacks them.
V2_COLUMNS = (
    "input_audio_tokens",
    "output_audio_tokens",
    "web_search_requests",
    "zero_data_retention",
)


def insert(client: Client, events: list[Event], token: str, before_v2: bool = False) -> None:
    keep = [i for i, name in enumerate(COLUMNS) if not (before_v2 and name in V2_COLUMNS)]
    client.insert(
        "usage_events",
        [[row[i] for i in keep] for row in map(raw_row, events)],
        column_names=[COLUMNS[i] for i in keep],
        settings={
            "insert_deduplication_token": token,
            "deduplicate_blocks_in_dependent_materialized_views": 1,
        },
    )


ACME_CREDIT = Decimal("250.125")
CREDITS: dict[str, Decimal | None] = {"acme": ACME_CREDIT, "globex": None}
"""Prepaid credit per team: acme has one, globex none."""


def config() -> GatewayConfig:
    return GatewayConfig(
        teams=[
            TeamConfig(
                id=team,
                keys=[GatewayKey(name="reports", sha256=hash_key(key))],
                credit_usd=CREDITS[team],
            )
            for team, key in KEYS.items()
        ]
    )


@pytest.fixture(scope="module")
def api(clickhouse_url: str) -> Iterator[TestClient]:
    """One database with EVENTS for every read-only test of this module: migrating and
    inserting take seconds on the embedded engine, reading takes milliseconds."""
    database = f"test_{uuid.uuid4().hex[:12]}"
    client = connect(clickhouse_url, database)
    migrate(client)
    # Two batches, so the rollups hold more than one part to re-aggregate.
    insert(client, EVENTS[:100], "test/0")
    insert(client, EVENTS[100:], "test/1")
    app = create_app(
        QuerySettings(), client_factory=lambda: connect(clickhouse_url, database), config=config()
    )
    try:
        with TestClient(app) as api_client:
            yield api_client
    finally:
        client.command(f"DROP DATABASE IF EXISTS {database}")


def get(api: TestClient, team: str = "acme", **params: str) -> Any:
    response = api.get(
        "/v1/report",
        params={"start_date": "2026-02-28", "end_date": "2026-03-03", **params},
        headers={"Authorization": f"Bearer {KEYS[team]}"},
    )
    assert response.status_code == 200, response.text
    return json.loads(response.text, parse_float=Decimal)


Key = Callable[[Event], list[tuple[Any, ...]]]


def expected(
    key: Key,
    team: str = "acme",
    keep: Callable[[Event], bool] = lambda e: True,
    zone: str = "UTC",
    start: date = date(2026, 2, 28),
    end: date = date(2026, 3, 3),
) -> dict[tuple[Any, ...], dict[str, Any]]:
    totals: dict[tuple[Any, ...], dict[str, Any]] = defaultdict(
        lambda: {
            "total_cost": Decimal(0),
            "market_cost": Decimal(0),
            **dict.fromkeys(TOKEN_METRICS, 0),
            "request_count": 0,
            "unpriced_request_count": 0,
        }
    )
    for e in EVENTS:
        local = e.started_at.astimezone(ZoneInfo(zone))
        if e.team_id != team or not start <= local.date() <= end or not keep(e):
            continue
        for group in key(e):
            row = totals[group]
            row["total_cost"] += e.total_cost
            row["market_cost"] += e.market_cost
            for metric in TOKEN_METRICS:
                row[metric] += e.tokens[metric]
            row["request_count"] += 1
            row["unpriced_request_count"] += 0 if e.price_known else 1
    return dict(totals)


def got(rows: list[dict[str, Any]], fields: list[str]) -> dict[tuple[Any, ...], dict[str, Any]]:
    result = {}
    for row in rows:
        metrics = {k: v for k, v in row.items() if k not in fields}
        for money in ("total_cost", "market_cost"):
            metrics[money] = Decimal(str(metrics[money]))
        group = tuple(row[f] for f in fields)
        assert group not in result, f"group {group} twice"
        result[group] = metrics
    return result


def utc_day(e: Event) -> str:
    return e.started_at.strftime("%Y-%m-%d")


def user(e: Event) -> str | None:
    return e.user_id or None


GROUPINGS: dict[str, tuple[dict[str, str], list[str], Key]] = {
    "day": ({}, ["day"], lambda e: [(utc_day(e),)]),
    "hour": (
        {"group_by": "day", "date_part": "hour"},
        ["hour"],
        lambda e: [(e.started_at.strftime("%Y-%m-%dT%H"),)],
    ),
    "week": (
        {"group_by": "day", "date_part": "week"},
        ["week"],
        lambda e: [((e.started_at.date() - timedelta(days=e.started_at.weekday())).isoformat(),)],
    ),
    "month": ({"date_part": "month"}, ["month"], lambda e: [(e.started_at.strftime("%Y-%m"),)]),
    "user": ({"group_by": "user"}, ["user"], lambda e: [(user(e),)]),
    "model": ({"group_by": "model"}, ["model"], lambda e: [(e.model,)]),
    "provider": ({"group_by": "provider"}, ["provider"], lambda e: [(e.provider,)]),
    "tag": ({"group_by": "tag"}, ["tag"], lambda e: [(t,) for t in e.tags]),
    "credential_type": (
        {"group_by": "credential_type"},
        ["credential_type"],
        lambda e: [(e.credential_type,)],
    ),
    "api_key_name": ({"group_by": "api_key_name"}, ["api_key_name"], lambda e: [(e.api_key_name,)]),
    "day,user": ({"group_by": "day,user"}, ["day", "user"], lambda e: [(utc_day(e), user(e))]),
    "tag,user": (
        {"group_by": "tag,user"},
        ["tag", "user"],
        lambda e: [(t, user(e)) for t in e.tags],
    ),
    "tag,day hourly": (
        {"group_by": "tag,day", "date_part": "hour"},
        ["tag", "hour"],
        lambda e: [(t, e.started_at.strftime("%Y-%m-%dT%H")) for t in e.tags],
    ),
    "zero_data_retention": (
        {"group_by": "zero_data_retention"},
        ["zero_data_retention"],
        lambda e: [(e.zero_data_retention,)],
    ),
    "model,zero_data_retention hourly": (
        {"group_by": "model,zero_data_retention,day", "date_part": "hour"},
        ["model", "zero_data_retention", "hour"],
        lambda e: [(e.model, e.zero_data_retention, e.started_at.strftime("%Y-%m-%dT%H"))],
    ),
    "user,zero_data_retention": (
        {"group_by": "user,zero_data_retention"},
        ["user", "zero_data_retention"],
        lambda e: [(user(e), e.zero_data_retention)],
    ),
    "tag,zero_data_retention": (
        {"group_by": "tag,zero_data_retention"},
        ["tag", "zero_data_retention"],
        lambda e: [(t, e.zero_data_retention) for t in e.tags],
    ),
    "model,credential_type,api_key_name": (
        {"group_by": "model,credential_type,api_key_name"},
        ["model", "credential_type", "api_key_name"],
        lambda e: [(e.model, e.credential_type, e.api_key_name)],
    ),
}


@pytest.mark.parametrize("name", list(GROUPINGS))
def test_every_grouping_equals_the_python_sums(api: TestClient, name: str) -> None:
    params, fields, key = GROUPINGS[name]
    rows = get(api, **params)["results"]
    assert got(rows, fields) == expected(key)
    assert all(list(r) == [*fields, *METRICS] for r in rows)


FILTERS: dict[str, tuple[dict[str, str], Callable[[Event], bool]]] = {
    "user_id": ({"user_id": "u2"}, lambda e: e.user_id == "u2"),
    "model": ({"model": "mystery-7b"}, lambda e: e.model == "mystery-7b"),
    "provider": ({"provider": "anthropic"}, lambda e: e.provider == "anthropic"),
    "api_key_name": ({"api_key_name": "dev"}, lambda e: e.api_key_name == "dev"),
    "credential_type byok": ({"credential_type": "byok"}, lambda e: e.credential_type == "byok"),
    "credential_type system": (
        {"credential_type": "system"},
        lambda e: e.credential_type == "system",
    ),
    "tags any": ({"tags": "c,a"}, lambda e: bool({"a", "c"} & set(e.tags))),
    "tags all": ({"tags": "a,b", "tags_match": "all"}, lambda e: {"a", "b"} <= set(e.tags)),
    "tags all with user": (
        {"tags": "b", "tags_match": "all", "user_id": "u1"},
        lambda e: "b" in e.tags and e.user_id == "u1",
    ),
    "nothing matches": ({"model": "no-such-model"}, lambda e: False),
    "zero data retention": ({"zero_data_retention": "true"}, lambda e: e.zero_data_retention),
    "no zero data retention": (
        {"zero_data_retention": "false", "provider": "openai"},
        lambda e: not e.zero_data_retention and e.provider == "openai",
    ),
    # Models as requests name them, "provider/model", match the rows' model of that provider.
    "model as requested": (
        {"model": "openai/gpt-5"},
        lambda e: (e.provider, e.model) == ("openai", "gpt-5"),
    ),
    "model of another provider": ({"model": "anthropic/gpt-5"}, lambda e: False),
}


@pytest.mark.parametrize("grouping", ["day", "tag", "user", "hour"])
@pytest.mark.parametrize("name", list(FILTERS))
def test_filters_apply_before_grouping(api: TestClient, name: str, grouping: str) -> None:
    filter_params, keep = FILTERS[name]
    params, fields, key = GROUPINGS[grouping]
    rows = get(api, **params, **filter_params)["results"]
    assert got(rows, fields) == expected(key, keep=keep)


def test_the_gateway_provider_gets_rows_without_a_user_key_for_no_user(api: TestClient) -> None:
    """The AI SDK's row schema takes ``user`` as a string or absent, not null."""
    response = api.get(
        "/v1/report",
        params={"start_date": "2026-02-28", "end_date": "2026-03-03", "group_by": "day,user"},
        headers={"Authorization": f"Bearer {KEYS['acme']}", "ai-gateway-protocol-version": "0.0.1"},
    )
    assert response.status_code == 200, response.text
    rows = json.loads(response.text, parse_float=Decimal)["results"]
    plain = get(api, group_by="day,user")["results"]
    assert [r for r in plain if r["user"] is None]
    assert rows == [{k: v for k, v in r.items() if not (k == "user" and v is None)} for r in plain]


def test_unpriced_requests_are_counted_not_free(api: TestClient) -> None:
    rows = get(api, group_by="model")["results"]
    mystery = next(r for r in rows if r["model"] == "mystery-7b")
    assert mystery["unpriced_request_count"] == mystery["request_count"] > 0
    assert all(r["unpriced_request_count"] == 0 for r in rows if r["model"] != "mystery-7b")


@pytest.mark.parametrize(
    "zone", ["America/New_York", "Asia/Kolkata", "Asia/Kathmandu", "Europe/London"]
)
@pytest.mark.parametrize("grouping", ["day", "hour", "tag", "day,user", "day,zero_data_retention"])
def test_timezone_sets_day_boundaries(api: TestClient, zone: str, grouping: str) -> None:
    def local(e: Event) -> datetime:
        return e.started_at.astimezone(ZoneInfo(zone))

    keys: dict[str, tuple[list[str], Key]] = {
        "day": (["day"], lambda e: [(local(e).date().isoformat(),)]),
        "hour": (["hour"], lambda e: [(local(e).strftime("%Y-%m-%dT%H"),)]),
        "tag": (["tag"], lambda e: [(t,) for t in e.tags]),
        "day,user": (["day", "user"], lambda e: [(local(e).date().isoformat(), user(e))]),
        "day,zero_data_retention": (
            ["day", "zero_data_retention"],
            lambda e: [(local(e).date().isoformat(), e.zero_data_retention)],
        ),
    }
    fields, key = keys[grouping]
    params = {"group_by": grouping, "timezone": zone, "start_date": "2026-03-01"}
    if grouping == "hour":
        params = {**params, "group_by": "day", "date_part": "hour"}
    rows = get(api, **params, end_date="2026-03-02")["results"]
    want = expected(key, zone=zone, start=date(2026, 3, 1), end=date(2026, 3, 2))
    assert got(rows, fields) == want
    assert want  # the range is not empty, so the comparison means something


def test_pages_walk_the_whole_report_in_order(api: TestClient) -> None:
    whole = get(api, group_by="day,user,model", order_by="total_cost:desc")["results"]
    assert whole == sorted(whole, key=lambda r: -Decimal(str(r["total_cost"])))
    pages, cursor = [], None
    while True:
        params = {"group_by": "day,user,model", "order_by": "total_cost:desc", "limit": "7"}
        body = get(api, **params, **({"cursor": cursor} if cursor else {}))
        assert len(body["results"]) <= 7
        pages.extend(body["results"])
        cursor = body["next_cursor"]
        if cursor is None:
            break
    assert pages == whole
    assert len(whole) > 14


def bad(api: TestClient, team: str = "acme", **params: str) -> dict[str, Any]:
    response = api.get(
        "/v1/report",
        params={"start_date": "2026-02-28", "end_date": "2026-03-03", **params},
        headers={"Authorization": f"Bearer {KEYS[team]}"},
    )
    assert response.status_code == 400, response.text
    error: dict[str, Any] = response.json()["error"]
    return error


def test_cursors_are_bound_to_their_team_and_report(api: TestClient) -> None:
    cursor = get(api, group_by="user", limit="1")["next_cursor"]
    assert cursor
    assert "cursor" in bad(api, "globex", group_by="user", limit="1", cursor=cursor)["message"]
    assert "cursor" in bad(api, group_by="model", limit="1", cursor=cursor)["message"]
    assert "cursor" in bad(api, group_by="user", model="gpt-5", cursor=cursor)["message"]
    body, _, mac = cursor.partition(".")
    tampered = body[:-2] + ("AA" if body[-2:] != "AA" else "BB") + "." + mac
    assert "cursor" in bad(api, group_by="user", limit="1", cursor=tampered)["message"]
    # The page size may change between pages.
    assert len(get(api, group_by="user", limit="2", cursor=cursor)["results"]) == 2


def test_csv_has_the_same_rows(api: TestClient) -> None:
    response = api.get(
        "/v1/report",
        params={
            "start_date": "2026-02-28",
            "end_date": "2026-03-03",
            "group_by": "day,user",
            "format": "csv",
        },
        headers={"Authorization": f"Bearer {KEYS['acme']}"},
    )
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(response.text)))
    as_json = get(api, group_by="day,user")["results"]
    assert len(rows) == len(as_json)
    for line, row in zip(rows, as_json, strict=True):
        assert line["day"] == row["day"]
        assert (line["user"] or None) == row["user"]
        assert Decimal(line["total_cost"]) == Decimal(str(row["total_cost"]))
        assert int(line["request_count"]) == row["request_count"]


def test_a_team_never_sees_another_teams_rows(api: TestClient) -> None:
    for team in KEYS:
        rows = get(api, team, group_by="user")["results"]
        assert got(rows, ["user"]) == expected(lambda e: [(user(e),)], team=team)
    # Filters and groupings never reach past the team: globex's u1 is globex's only.
    rows = get(api, "globex", group_by="tag,user", user_id="u1")["results"]
    want = expected(lambda e: [(t, user(e)) for t in e.tags], "globex", lambda e: e.user_id == "u1")
    assert got(rows, ["tag", "user"]) == want


def generation(api: TestClient, event_id: uuid.UUID, team: str = "acme") -> Any:
    response = api.get(
        "/v1/generation",
        params={"id": str(event_id)},
        headers={"Authorization": f"Bearer {KEYS[team]}"},
    )
    assert response.status_code == 200, response.text
    return json.loads(response.text, parse_float=Decimal)


def test_generation_returns_one_request_of_the_callers_team(api: TestClient) -> None:
    event = next(
        e for e in EVENTS if e.team_id == "acme" and e.credential_type == "system" and e.tags
    )
    body = generation(api, event.event_id)
    assert body["id"] == str(event.event_id)
    assert Decimal(str(body["market_cost"])) == event.market_cost
    assert Decimal(str(body["total_cost"])) == event.total_cost
    assert body["tags"] == list(event.tags)
    assert body["user"] == (event.user_id or None)
    assert body["input_tokens"] == event.tokens["input_tokens"]
    assert datetime.fromisoformat(body["started_at"].replace("Z", "+00:00")) == event.started_at
    assert body["provider_usage"] == {"prompt_tokens": event.tokens["input_tokens"]}

    foreign = api.get(
        "/v1/generation",
        params={"id": str(event.event_id)},
        headers={"Authorization": f"Bearer {KEYS['globex']}"},
    )
    assert foreign.status_code == 404
    assert foreign.json()["error"]["type"] == "not_found_error"
    missing = api.get(
        "/v1/generation",
        params={"id": str(uuid.uuid4())},
        headers={"Authorization": f"Bearer {KEYS['acme']}"},
    )
    assert missing.status_code == 404
    assert missing.json() == {
        "error": {**foreign.json()["error"], "message": missing.json()["error"]["message"]}
    }


GATEWAY_GENERATION_FIELDS = {
    "id",
    "total_cost",
    "upstream_inference_cost",
    "usage",
    "created_at",
    "model",
    "is_byok",
    "provider_name",
    "streamed",
    "finish_reason",
    "latency",
    "generation_time",
    "native_tokens_prompt",
    "native_tokens_completion",
    "native_tokens_reasoning",
    "native_tokens_cached",
    "native_tokens_cache_creation",
    "billable_web_search_calls",
}
"""What the AI SDK's gateway provider reads under ``data`` (@ai-sdk/gateway 3.0.232,
gatewayGenerationInfoResponseSchema)."""


def expected_gateway_fields(e: Event) -> dict[str, Any]:
    byok = e.credential_type == "byok"
    duration = 120 + e.event_id.int
    return {
        "id": str(e.event_id),
        "total_cost": e.total_cost,
        "upstream_inference_cost": e.market_cost if byok else 0,
        "usage": e.total_cost,
        "created_at": e.started_at.strftime("%Y-%m-%dT%H:%M:%S.000Z"),
        "model": e.model,
        "is_byok": byok,
        "provider_name": e.provider,
        "streamed": e.extra.get("streamed", False),
        "finish_reason": "stop",
        "latency": e.extra.get("time_to_first_token_ms", duration),
        "generation_time": duration,
        "native_tokens_prompt": e.tokens["input_tokens"],
        "native_tokens_completion": e.tokens["output_tokens"],
        "native_tokens_reasoning": e.tokens["reasoning_tokens"],
        "native_tokens_cached": e.tokens["cached_input_tokens"],
        "native_tokens_cache_creation": e.tokens["cache_creation_input_tokens"],
        "billable_web_search_calls": e.extra.get("web_searches", 0),
    }


@pytest.mark.parametrize(
    "kind",
    ["system, streamed, web searches", "byok, not streamed", "byok, streamed", "unpriced"],
)
def test_generation_data_has_the_gateway_providers_fields(api: TestClient, kind: str) -> None:
    """Under ``data``: the request's own fields again, and the AI SDK's, each from the raw
    row: costs (BYOK's market cost upstream), times (first token, or the whole duration
    when not streamed) and token counts in Meterline's convention."""
    picks: dict[str, Callable[[Event], bool]] = {
        "system, streamed, web searches": lambda e: (
            e.credential_type == "system" and e.extra.get("web_searches", 0) > 0
        ),
        "byok, not streamed": lambda e: (
            e.credential_type == "byok" and not e.extra and e.market_cost > 0
        ),
        "byok, streamed": lambda e: e.credential_type == "byok" and bool(e.extra),
        "unpriced": lambda e: not e.price_known,
    }
    pick = picks[kind]
    event = next(e for e in EVENTS if e.team_id == "acme" and pick(e))
    body = generation(api, event.event_id)
    data = body.pop("data")
    assert {name: data[name] for name in GATEWAY_GENERATION_FIELDS} == expected_gateway_fields(
        event
    )
    # Every field of the top level is under data too, with the same value.
    assert {name: data[name] for name in body} == body


def credits(api: TestClient, team: str, **params: str) -> Any:
    response = api.get(
        "/v1/credits", params=params, headers={"Authorization": f"Bearer {KEYS[team]}"}
    )
    assert response.status_code == 200, response.text
    return response.json()


@pytest.mark.parametrize("team", list(KEYS))
def test_credits_are_the_teams_credit_minus_its_total_cost(api: TestClient, team: str) -> None:
    """acme has a prepaid credit, globex none (its balance is minus what it used). BYOK
    requests cost the team nothing, so they use no credit."""
    own = [e for e in EVENTS if e.team_id == team]
    used = sum((e.total_cost for e in own if e.credential_type == "system"), Decimal(0))
    assert any(e.credential_type == "byok" and e.market_cost > 0 for e in own)
    credit = CREDITS[team]
    body = credits(api, team)
    assert {name: Decimal(body[name]) for name in ("balance", "total_used")} == {
        "balance": (credit or Decimal(0)) - used,
        "total_used": used,
    }
    assert body["credit_usd"] == (None if credit is None else str(credit))
    assert body["unpriced_request_count"] == sum(not e.price_known for e in own) > 0


def test_credits_count_every_day_from_the_rollups(
    clickhouse: Client, clickhouse_factory: Callable[[], Client]
) -> None:
    """All time, not a range: requests from years ago count. And from a rollup: with the
    raw table emptied, the answer is the same."""
    years_ago = [
        replace(
            e, event_id=uuid.UUID(int=10_000 + n), started_at=e.started_at - timedelta(days=1200)
        )
        for n, e in enumerate(EVENTS)
    ]
    insert(clickhouse, EVENTS, "now")
    insert(clickhouse, years_ago, "years ago")
    clickhouse.command("TRUNCATE TABLE usage_events")
    app = create_app(QuerySettings(), client_factory=clickhouse_factory, config=config())
    with TestClient(app) as api:
        body = credits(api, "acme")
    used = 2 * sum((e.total_cost for e in EVENTS if e.team_id == "acme"), Decimal(0))
    assert Decimal(body["total_used"]) == used
    assert Decimal(body["balance"]) == ACME_CREDIT - used < 0


def test_credits_refuse_parameters_and_strangers(api: TestClient) -> None:
    response = api.get("/v1/credits")
    assert response.status_code == 401
    assert response.json()["error"]["type"] == "authentication_error"
    response = api.get("/v1/credits", headers={"Authorization": "Bearer ml_wrong"})
    assert response.status_code == 401
    response = api.get(
        "/v1/credits",
        params={"team": "globex"},
        headers={"Authorization": f"Bearer {KEYS['acme']}"},
    )
    assert response.status_code == 400
    assert response.json()["error"]["param"] == "team"


def test_authentication_and_bad_parameters(api: TestClient) -> None:
    response = api.get("/v1/report", params={"start_date": "2026-03-01", "end_date": "2026-03-01"})
    assert response.status_code == 401
    assert response.json()["error"]["type"] == "authentication_error"
    response = api.get(
        "/v1/report",
        params={"start_date": "2026-03-01", "end_date": "2026-03-01"},
        headers={"Authorization": "Bearer ml_wrong"},
    )
    assert response.status_code == 401
    assert "group_by" in bad(api, group_by="day,colour")["message"]
    assert "timezone" in bad(api, timezone="Mars/Olympus")["message"]
    response = api.get(
        "/v1/generation", params={"id": "nope"}, headers={"Authorization": f"Bearer {KEYS['acme']}"}
    )
    assert response.status_code == 400
    assert "id" in response.json()["error"]["message"]


def test_the_warehouse_down_is_a_503(clickhouse_factory: Callable[[], Client]) -> None:
    def unreachable() -> Client:
        from meterline.common.clickhouse import connect

        return connect("http://127.0.0.1:9", "nowhere")

    app = create_app(QuerySettings(), client_factory=unreachable, config=config())
    with TestClient(app) as client:
        for path in ("/v1/report?start_date=2026-03-01&end_date=2026-03-01", "/v1/credits"):
            response = client.get(path, headers={"Authorization": f"Bearer {KEYS['acme']}"})
            assert response.status_code == 503, response.text
            assert response.json()["error"]["type"] == "service_unavailable"


def raw_sums(client: Client, table: str, where: str = "") -> list[tuple[Any, ...]]:
    count = "count()" if table == "usage_events" else "sum(request_count)"
    unpriced = (
        "countIf(NOT price_known)" if table == "usage_events" else "sum(unpriced_request_count)"
    )
    return [
        tuple(row)
        for row in client.query(
            f"SELECT team_id, {count}, {unpriced}, sum(input_tokens), sum(output_tokens),"
            " sum(cached_input_tokens), sum(cache_creation_input_tokens), sum(reasoning_tokens),"
            f" sum(market_cost), sum(total_cost) FROM {table} {where}"
            " GROUP BY team_id ORDER BY team_id"
        ).result_rows
    ]


def test_the_rollups_equal_the_raw_table(clickhouse: Client) -> None:
    insert(clickhouse, EVENTS, "all")
    raw = raw_sums(clickhouse, "usage_events")
    assert raw[0][1] + raw[1][1] == len(EVENTS)
    for table in WHOLE_ROLLUPS:
        assert raw_sums(clickhouse, table) == raw, table
    # The per-tag rollups count a request once per tag: compare one tag with the raw rows
    # carrying it.
    for table in TAG_ROLLUPS:
        assert raw_sums(clickhouse, table, "WHERE tag = 'b'") == raw_sums(
            clickhouse, "usage_events", "WHERE has(tags, 'b')"
        )


def test_the_same_batch_three_times_counts_once_everywhere(clickhouse: Client) -> None:
    for _ in range(3):
        insert(clickhouse, EVENTS[:60], "usage-events/0/0-59")
    insert(clickhouse, EVENTS[60:], "usage-events/0/60-189")
    raw = raw_sums(clickhouse, "usage_events")
    assert sum(row[1] for row in raw) == len(EVENTS)
    for table in WHOLE_ROLLUPS:
        assert raw_sums(clickhouse, table) == raw, table
    for table in TAG_ROLLUPS:
        assert raw_sums(clickhouse, table, "WHERE tag = 'a'") == raw_sums(
            clickhouse, "usage_events", "WHERE has(tags, 'a')"
        ), table


def test_migrations_twice_change_nothing(clickhouse: Client) -> None:
    def tables() -> list[tuple[Any, ...]]:
        return [
            tuple(row)
            for row in clickhouse.query(
                "SELECT name, create_table_query FROM system.tables"
                " WHERE database = currentDatabase() ORDER BY name"
            ).result_rows
        ]

    before = tables()
    applied = clickhouse.query("SELECT count() FROM schema_migrations").result_rows[0][0]
    assert migrate(clickhouse) == []
    assert migrate(clickhouse) == []
    assert tables() == before
    assert clickhouse.query("SELECT count() FROM schema_migrations").result_rows[0][0] == applied
    names = {row[0] for row in before}
    assert {"usage_events", *ROLLUPS, *(f"{t}_mv" for t in ROLLUPS)} <= names
    columns = {
        name
        for (name,) in clickhouse.query(
            "SELECT name FROM system.columns WHERE database = currentDatabase()"
            " AND table = 'usage_events'"
        ).result_rows
    }
    assert set(COLUMNS) <= columns
    # Every view's target carries the deduplication window: a batch inserted again with
    # its token is dropped from the rollups too, not only from the raw table.
    for table in ROLLUPS:
        create = dict(before)[table]
        assert "non_replicated_deduplication_window" in create, table


@pytest.mark.parametrize(
    ("number", "name"),
    [
        (6, "0006_usage_lean_rollups"),
        (7, "0007_usage_by_tag_model_daily"),
        (8, "0008_event_schema_v2"),
    ],
)
def test_later_rollups_are_filled_from_events_inserted_before_their_migration(
    clickhouse_url: str, tmp_path: Path, number: int, name: str
) -> None:
    """A warehouse that held events before a migration adding rollups gets them filled from
    the rollups it had, then kept up by their views."""
    from meterline.common.migrations import migrations_dir

    earlier = tmp_path / "migrations"
    earlier.mkdir()
    for path in migrations_dir().iterdir():
        if path.suffix == ".sql" and int(path.name[:4]) < number:
            (earlier / path.name).write_text(path.read_text())
    database = f"test_{uuid.uuid4().hex[:12]}"
    client = connect(clickhouse_url, database)
    try:
        migrate(client, earlier)
        insert(client, EVENTS[:120], "before", before_v2=True)
        assert name in migrate(client)
        insert(client, EVENTS[120:], "after")
        raw = raw_sums(client, "usage_events")
        assert sum(row[1] for row in raw) == len(EVENTS)
        for table in WHOLE_ROLLUPS:
            assert raw_sums(client, table) == raw, table
        for table in TAG_ROLLUPS:
            assert raw_sums(client, table, "WHERE tag = 'c'") == raw_sums(
                client, "usage_events", "WHERE has(tags, 'c')"
            ), table
        if number == 8:
            # Events from before read "not served with zero data retention"; the later
            # ones are told apart by the rollups that keep the dimension.
            by_zdr = "SELECT zero_data_retention, sum(request_count) FROM {} GROUP BY 1 ORDER BY 1"
            later = sum(e.zero_data_retention for e in EVENTS[120:])
            want = [(False, len(EVENTS) - later), (True, later)]
            for table in ("usage_hourly", "usage_daily", "usage_by_model_daily"):
                assert client.query(by_zdr.format(table)).result_rows == want, table
    finally:
        client.command(f"DROP DATABASE IF EXISTS {database}")
