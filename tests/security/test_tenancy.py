"""A team's key reads that team's data and nothing else, through every parameter of
``/v1/report`` and ``/v1/generation``; values that look like SQL are data, never SQL."""

from __future__ import annotations

import json
import uuid
from collections import defaultdict
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import pytest

from meterline.common.events import UsageEvent
from tests.security.conftest import (
    EVENTS,
    FIRST_DAY,
    INJECTION_TAG,
    INJECTION_USER,
    LAST_DAY,
    TEAMS,
    TwoTeams,
)

pytestmark = pytest.mark.clickhouse

Keep = Callable[[UsageEvent], bool]

FILTERS: dict[str, tuple[dict[str, str], Keep]] = {
    "none": ({}, lambda e: True),
    "user_id": ({"user_id": "u1"}, lambda e: e.user_id == "u1"),
    "user_id that is SQL": ({"user_id": INJECTION_USER}, lambda e: e.user_id == INJECTION_USER),
    "user_id reaching for another team": (
        {"user_id": "u1' OR team_id = 'globex"},
        lambda e: False,
    ),
    "model": ({"model": "gpt-x"}, lambda e: e.model == "gpt-x"),
    "provider": ({"provider": "anthropic"}, lambda e: e.provider == "anthropic"),
    "api_key_name": ({"api_key_name": "dev"}, lambda e: e.api_key_name == "dev"),
    "credential_type": ({"credential_type": "byok"}, lambda e: e.credential_type == "byok"),
    "tags any": ({"tags": "a"}, lambda e: "a" in e.tags),
    "tags all": ({"tags": "a,b", "tags_match": "all"}, lambda e: {"a", "b"} <= set(e.tags)),
    "tag that is SQL": ({"tags": INJECTION_TAG}, lambda e: INJECTION_TAG in e.tags),
    "model with a backslash and quote": ({"model": "gpt-x\\' OR 1=1 --"}, lambda e: False),
}

GROUPINGS: dict[str, Callable[[UsageEvent], list[tuple[Any, ...]]]] = {
    "user": lambda e: [(e.user_id,)],
    "tag": lambda e: [(t,) for t in e.tags],
    "model,provider": lambda e: [(e.model, e.provider)],
    "day,api_key_name": lambda e: [(e.started_at.date().isoformat(), e.api_key_name)],
}


def expected(team: str, keep: Keep, key: Callable[[UsageEvent], list[tuple[Any, ...]]]) -> Any:
    """Requests and input tokens per group, from the team's own events in the range."""
    sums: dict[tuple[Any, ...], list[int]] = defaultdict(lambda: [0, 0])
    for e in EVENTS:
        in_range = FIRST_DAY <= e.started_at.date().isoformat() <= LAST_DAY
        if e.team_id == team and in_range and keep(e):
            for group in key(e):
                sums[group][0] += 1
                sums[group][1] += e.input_tokens
    return dict(sums)


def report(env: TwoTeams, team: str, **params: str) -> Any:
    response = env.api.get(
        "/v1/report",
        params={"start_date": FIRST_DAY, "end_date": LAST_DAY, **params},
        headers=env.headers(team),
    )
    assert response.status_code == 200, response.text
    return json.loads(response.text, parse_float=Decimal)


def grouped(rows: list[dict[str, Any]], fields: list[str]) -> Any:
    found: dict[tuple[Any, ...], list[int]] = {}
    for row in rows:
        group = tuple(row[f] for f in fields)
        assert group not in found
        found[group] = [row["request_count"], row["input_tokens"]]
    return found


@pytest.mark.parametrize("grouping", list(GROUPINGS))
@pytest.mark.parametrize("name", list(FILTERS))
@pytest.mark.parametrize("team", TEAMS)
def test_every_filter_and_grouping_stays_inside_the_team(
    two_teams: TwoTeams, team: str, name: str, grouping: str
) -> None:
    params, keep = FILTERS[name]
    fields = ["day" if f == "day" else f for f in grouping.split(",")]
    rows = report(two_teams, team, group_by=grouping, **params)["results"]
    assert grouped(rows, fields) == expected(team, keep, GROUPINGS[grouping])


def test_the_injection_values_are_stored_as_data(two_teams: TwoTeams) -> None:
    """The SQL-looking values matched exactly their own rows (above), and the warehouse is
    intact: every raw event is still there and no table was dropped."""
    [(count,)] = two_teams.client.query("SELECT count() FROM usage_events").result_rows
    assert count == len(EVENTS)
    assert any(e.user_id == INJECTION_USER for e in EVENTS)
    rows = report(two_teams, "acme", group_by="user", user_id=INJECTION_USER)["results"]
    assert [r["user"] for r in rows] == [INJECTION_USER]


def test_a_cursor_of_one_team_is_refused_for_another(two_teams: TwoTeams) -> None:
    first = report(two_teams, "acme", group_by="user", limit="1")
    cursor = first["next_cursor"]
    assert cursor and len(first["results"]) == 1
    # The same report, replayed with globex's key: refused, and it shows no rows.
    response = two_teams.api.get(
        "/v1/report",
        params={
            "start_date": FIRST_DAY,
            "end_date": LAST_DAY,
            "group_by": "user",
            "limit": "1",
            "cursor": cursor,
        },
        headers=two_teams.headers("globex"),
    )
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["param"] == "cursor" and "results" not in response.json()
    # acme's own next page works with the same cursor.
    assert len(report(two_teams, "acme", group_by="user", limit="1", cursor=cursor)["results"])


@pytest.mark.parametrize(
    "cursor",
    [
        "' OR 1=1 --",
        "eyJ2IjoxLCJvIjowLCJsIjoxMDAwMDAwLCJxIjoiIn0.AAAA",  # a forged payload
        "a.b.c",
        "%00",
        "\u00e9\u00e9.\u00e9",
        "." * 300,
    ],
)
def test_forged_cursors_are_a_400_naming_cursor(two_teams: TwoTeams, cursor: str) -> None:
    response = two_teams.api.get(
        "/v1/report",
        params={"start_date": FIRST_DAY, "end_date": LAST_DAY, "limit": "1", "cursor": cursor},
        headers=two_teams.headers("acme"),
    )
    assert response.status_code == 400, response.text
    assert response.json()["error"]["param"] == "cursor"


def test_a_generation_of_one_team_is_a_404_for_another(two_teams: TwoTeams) -> None:
    for event in EVENTS[:6]:
        own = two_teams.api.get(
            "/v1/generation",
            params={"id": event.event_id},
            headers=two_teams.headers(event.team_id),
        )
        assert own.status_code == 200, own.text
        assert own.json()["id"] == event.event_id
        other = "globex" if event.team_id == "acme" else "acme"
        foreign = two_teams.api.get(
            "/v1/generation", params={"id": event.event_id}, headers=two_teams.headers(other)
        )
        missing = two_teams.api.get(
            "/v1/generation", params={"id": str(uuid.uuid4())}, headers=two_teams.headers(other)
        )
        # Not found, exactly as an id that does not exist: the answer leaks nothing.
        assert foreign.status_code == missing.status_code == 404
        assert foreign.json()["error"]["type"] == missing.json()["error"]["type"]


@pytest.mark.parametrize(
    "value",
    [
        "' OR 1=1 --",
        "00000000-0000-0000-0000-000000002710' OR team_id='globex",
        "00000000-0000-0000-0000-000000002710 OR 1=1",
        "1; DROP TABLE usage_events",
    ],
)
def test_generation_ids_that_are_sql_are_a_400(two_teams: TwoTeams, value: str) -> None:
    response = two_teams.api.get(
        "/v1/generation", params={"id": value}, headers=two_teams.headers("acme")
    )
    assert response.status_code == 400, response.text
    assert response.json()["error"]["param"] == "id"
