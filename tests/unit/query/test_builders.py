"""Golden tests: the SQL and parameters each report shape produces, pinned, so a change to a
query is a visible change to this file. No database needed."""

from __future__ import annotations

from datetime import date
from typing import Any
from uuid import UUID

import pytest

from meterline.query.builders import (
    build_credits_query,
    build_generation_query,
    build_report_query,
    build_tag_report,
    build_usage_report,
    choose_source,
)
from meterline.query.report_query import ReportQuery

MARCH: dict[str, Any] = {"start_date": date(2026, 3, 1), "end_date": date(2026, 3, 31)}
METRIC_SUMS = """\
    sum(total_cost) AS m_total_cost,
    sum(market_cost) AS m_market_cost,
    sum(input_tokens) AS m_input_tokens,
    sum(output_tokens) AS m_output_tokens,
    sum(cached_input_tokens) AS m_cached_input_tokens,
    sum(cache_creation_input_tokens) AS m_cache_creation_input_tokens,
    sum(reasoning_tokens) AS m_reasoning_tokens,
    sum(request_count) AS m_request_count,
    sum(unpriced_request_count) AS m_unpriced_request_count"""


def test_day_by_user_in_utc_reads_the_smallest_daily_rollup_with_user_and_credential() -> None:
    query = ReportQuery(**MARCH, group_by=("day", "user"), credential_type="byok")
    built = build_usage_report("acme", query)
    assert built.sql == (
        "SELECT\n"
        "    toString(day) AS g_day,\n"
        "    user_id AS g_user,\n"
        f"{METRIC_SUMS}\n"
        "FROM usage_by_user_model_daily\n"
        "WHERE team_id = {team_id:String}\n"
        "  AND day >= {start_day:Date} AND day <= {end_day:Date}\n"
        "  AND credential_type = {credential_type:String}\n"
        "GROUP BY day, user_id\n"
        "ORDER BY day ASC, user_id ASC"
    )
    assert built.parameters == {
        "team_id": "acme",
        "start_day": "2026-03-01",
        "end_day": "2026-03-31",
        "credential_type": "byok",
    }


def test_hours_in_new_york_read_the_hourly_rollup_between_local_midnights() -> None:
    query = ReportQuery(
        **MARCH,
        date_part="hour",
        timezone="America/New_York",
        tags=("a", "b"),
        tags_match="all",
        order_by=(("total_cost", "desc"),),
    )
    built = build_usage_report("acme", query, limit=51, offset=100)
    assert built.sql == (
        "SELECT\n"
        "    formatDateTime(hour, '%Y-%m-%dT%H', {timezone:String}) AS g_hour,\n"
        f"{METRIC_SUMS}\n"
        "FROM usage_hourly\n"
        "WHERE team_id = {team_id:String}\n"
        "  AND hour >= {start_at:DateTime('UTC')} AND hour < {end_at:DateTime('UTC')}\n"
        "  AND hasAll(tags, {tags:Array(String)})\n"
        "GROUP BY g_hour\n"
        "ORDER BY m_total_cost DESC, g_hour ASC\n"
        "LIMIT {limit:UInt64} OFFSET {offset:UInt64}"
    )
    # EST before 8 March, EDT after: the range's ends are local midnights.
    assert built.parameters == {
        "team_id": "acme",
        "start_at": "2026-03-01 05:00:00",
        "end_at": "2026-04-01 04:00:00",
        "tags": ["a", "b"],
        "timezone": "America/New_York",
        "limit": 51,
        "offset": 100,
    }


def test_tags_by_day_without_user_or_tag_filters_read_the_per_tag_rollup() -> None:
    query = ReportQuery(**MARCH, group_by=("tag", "day"), date_part="week", model="gpt-5")
    built = build_tag_report("acme", query)
    assert built.sql == (
        "SELECT\n"
        "    tag AS g_tag,\n"
        "    toString(toMonday(day)) AS g_week,\n"
        f"{METRIC_SUMS}\n"
        "FROM usage_by_tag_model_daily\n"
        "WHERE team_id = {team_id:String}\n"
        "  AND day >= {start_day:Date} AND day <= {end_day:Date}\n"
        "  AND model = {model:String}\n"
        "GROUP BY tag, toMonday(day)\n"
        "ORDER BY tag ASC, toMonday(day) ASC"
    )


def test_tags_filtered_by_tags_expand_the_full_tag_set() -> None:
    query = ReportQuery(**MARCH, group_by=("tag",), tags=("a",))
    built = build_tag_report("acme", query)
    assert built.sql == (
        "SELECT\n"
        "    g_tag,\n"
        f"{METRIC_SUMS}\n"
        "FROM usage_daily\n"
        "ARRAY JOIN tags AS g_tag\n"
        "WHERE team_id = {team_id:String}\n"
        "  AND day >= {start_day:Date} AND day <= {end_day:Date}\n"
        "  AND hasAny(tags, {tags:Array(String)})\n"
        "GROUP BY g_tag\n"
        "ORDER BY g_tag ASC"
    )


def test_a_half_hour_zone_reads_raw_events() -> None:
    query = ReportQuery(
        **MARCH, group_by=("model", "day"), date_part="month", timezone="Asia/Kolkata"
    )
    built = build_report_query("acme", query)
    assert built.sql == (
        "SELECT\n"
        "    model AS g_model,\n"
        "    formatDateTime(toStartOfMonth(toDate(started_at, {timezone:String})), '%Y-%m')"
        " AS g_month,\n"
        "    sum(total_cost) AS m_total_cost,\n"
        "    sum(market_cost) AS m_market_cost,\n"
        "    sum(input_tokens) AS m_input_tokens,\n"
        "    sum(output_tokens) AS m_output_tokens,\n"
        "    sum(cached_input_tokens) AS m_cached_input_tokens,\n"
        "    sum(cache_creation_input_tokens) AS m_cache_creation_input_tokens,\n"
        "    sum(reasoning_tokens) AS m_reasoning_tokens,\n"
        "    count() AS m_request_count,\n"
        "    countIf(NOT price_known) AS m_unpriced_request_count\n"
        "FROM usage_events\n"
        "WHERE team_id = {team_id:String}\n"
        "  AND started_at >= {start_at:DateTime64(3, 'UTC')}"
        " AND started_at < {end_at:DateTime64(3, 'UTC')}\n"
        "GROUP BY model, toStartOfMonth(toDate(started_at, {timezone:String}))\n"
        "ORDER BY model ASC, toStartOfMonth(toDate(started_at, {timezone:String})) ASC"
    )
    assert built.parameters["start_at"] == "2026-02-28 18:30:00"
    assert built.parameters["end_at"] == "2026-03-31 18:30:00"


@pytest.mark.parametrize(
    ("changes", "table"),
    [
        ({}, "usage_by_model_daily"),
        ({"date_part": "hour"}, "usage_by_model_hourly"),
        ({"timezone": "Europe/London"}, "usage_by_model_hourly"),  # BST from 29 March
        ({"timezone": "Europe/London", "end_date": date(2026, 3, 28)}, "usage_by_model_daily"),
        ({"timezone": "Asia/Kathmandu"}, "usage_events"),
        ({"group_by": ("provider",), "credential_type": "byok"}, "usage_by_model_daily"),
        ({"group_by": ("day", "user")}, "usage_by_user_daily"),
        ({"group_by": ("user",), "timezone": "Asia/Tokyo"}, "usage_hourly"),
        ({"group_by": ("model",), "user_id": "u1"}, "usage_by_user_model_daily"),
        ({"group_by": ("day", "user"), "api_key_name": "prod"}, "usage_by_user_model_daily"),
        ({"group_by": ("user",), "tags": ("a",)}, "usage_daily"),
        ({"group_by": ("day", "user"), "date_part": "hour"}, "usage_hourly"),
        ({"group_by": ("tag",)}, "usage_by_tag_model_daily"),
        ({"group_by": ("tag", "model"), "provider": "openai"}, "usage_by_tag_model_daily"),
        ({"group_by": ("tag",), "credential_type": "byok"}, "usage_by_tag_daily"),
        ({"group_by": ("tag", "api_key_name")}, "usage_by_tag_daily"),
        ({"group_by": ("tag",), "date_part": "hour"}, "usage_by_tag_model_daily"),  # no day
        ({"group_by": ("tag", "day"), "date_part": "hour"}, "usage_by_tag_hourly"),
        ({"group_by": ("tag",), "user_id": "u1"}, "usage_daily"),
        ({"group_by": ("tag", "user")}, "usage_daily"),
        ({"group_by": ("tag",), "timezone": "Asia/Tokyo"}, "usage_by_tag_hourly"),
        ({"group_by": ("tag",), "tags": ("a",), "timezone": "Asia/Tokyo"}, "usage_hourly"),
        ({"group_by": ("tag",), "timezone": "Australia/Adelaide"}, "usage_events"),
        ({"group_by": ("zero_data_retention",)}, "usage_by_model_daily"),
        ({"zero_data_retention": True, "date_part": "hour"}, "usage_by_model_hourly"),
        ({"group_by": ("user",), "zero_data_retention": False}, "usage_daily"),
        ({"group_by": ("tag",), "zero_data_retention": True}, "usage_daily"),
        (
            {"group_by": ("tag", "day"), "zero_data_retention": True, "date_part": "hour"},
            "usage_hourly",
        ),
    ],
)
def test_the_smallest_exact_source_is_chosen(changes: dict[str, object], table: str) -> None:
    query = ReportQuery(**{**MARCH, **changes})
    assert choose_source(query).table == table


def test_every_builder_needs_a_team() -> None:
    with pytest.raises(ValueError, match="team"):
        build_report_query("", ReportQuery(**MARCH))
    with pytest.raises(ValueError, match="team"):
        build_generation_query("", UUID(int=1))
    with pytest.raises(ValueError, match="team"):
        build_credits_query("")


def test_credits_sum_the_teams_model_rollup_over_all_time() -> None:
    built = build_credits_query("acme")
    assert built.sql == (
        "SELECT sum(total_cost) AS total_cost,"
        " sum(unpriced_request_count) AS unpriced_request_count\n"
        "FROM usage_by_model_daily\n"
        "WHERE team_id = {team_id:String}"
    )
    assert built.parameters == {"team_id": "acme"}


def test_generation_is_looked_up_within_the_team() -> None:
    built = build_generation_query("acme", UUID(int=7))
    assert built.sql.endswith(
        "FROM usage_events\n"
        "WHERE team_id = {team_id:String} AND event_id = {event_id:UUID}\n"
        "ORDER BY ingested_at\n"
        "LIMIT 1"
    )
    assert built.parameters == {
        "team_id": "acme",
        "event_id": "00000000-0000-0000-0000-000000000007",
    }


def test_user_input_only_travels_as_parameters() -> None:
    nasty = "x' OR 1=1 --"
    query = ReportQuery(
        **MARCH, group_by=("tag", "user"), user_id=nasty, model=nasty, tags=(nasty,)
    )
    built = build_report_query("acme", query)
    assert nasty not in built.sql
    assert built.parameters["user_id"] == nasty
