"""Budget definitions: their validation, the values a request counts towards, and the
period's boundaries in the budget's time zone."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest
from pydantic import ValidationError

from meterline.common.budget_spend import spend_query
from meterline.common.budgets import Budget, RequestScope, Window, budget_values, window
from meterline.common.config import GatewayConfig


def budget(**fields: Any) -> Budget:
    return Budget.model_validate({"id": "b", "amount_usd": "5", **fields})


def request(**fields: Any) -> RequestScope:
    values: dict[str, Any] = {
        "api_key_name": "app",
        "user": "ana",
        "tags": ["feature:chat", "plan:pro"],
        "provider": "openai",
        "model": "gpt-4o",
        "credential_type": "system",
        **fields,
    }
    return RequestScope(**values)


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=UTC)


def test_a_team_budget_has_one_value_and_counts_every_system_request() -> None:
    assert list(budget_values(budget(), request())) == [()]
    assert list(budget_values(budget(), request(credential_type="byok"))) == []
    assert list(budget_values(budget(include_byok=True), request(credential_type="byok"))) == [()]


def test_fixed_values_must_all_match() -> None:
    scoped = budget(scope={"tag": "feature:chat", "provider": "openai"})
    assert list(budget_values(scoped, request())) == [()]
    assert list(budget_values(scoped, request(provider="anthropic"))) == []
    assert list(budget_values(scoped, request(tags=["plan:pro"]))) == []


def test_a_default_budget_has_a_value_per_user_and_per_tag_combination() -> None:
    per_user_tag = budget(scope={"user": "*", "tag": "*"})
    assert list(budget_values(per_user_tag, request())) == [
        (("user", "ana"), ("tag", "feature:chat")),
        (("user", "ana"), ("tag", "plan:pro")),
    ]
    # A request without a user is nobody's; one without tags is in no tag's value.
    assert list(budget_values(per_user_tag, request(user=None))) == []
    assert list(budget_values(per_user_tag, request(tags=[]))) == []


def test_overrides_set_single_values_amounts() -> None:
    users = budget(scope={"user": "*"}, overrides={"ana": "20"})
    assert users.limit((("user", "ana"),)) == Decimal(20)
    assert users.limit((("user", "bo"),)) == Decimal(5)


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"scope": {"user": "*", "tag": "*"}, "overrides": {"ana": "1"}}, "exactly one '*'"),
        ({"overrides": {"ana": "1"}}, "exactly one '*'"),
        ({"timezone": "Mars/Olympus"}, "unknown time zone"),
        ({"thresholds": [0]}, "percentages from 1"),
        ({"period": "hourly"}, "period"),
        ({"mode": "strict"}, "mode"),
        ({"scope": {"team": "acme"}}, "scope"),
        ({"scope": {"user": ""}}, "1 to 256 characters"),
        ({"amount_usd": "-1"}, "amount_usd"),
    ],
)
def test_a_bad_budget_is_refused_naming_what_is_wrong(fields: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError) as caught:
        budget(**fields)
    assert message in str(caught.value)


def test_thresholds_are_sorted_once_each() -> None:
    assert budget(thresholds=[100, 50, 80, 50]).thresholds == [50, 80, 100]


def test_a_team_refuses_two_budgets_of_one_id_and_an_unknown_time_zone() -> None:
    with pytest.raises(ValidationError, match="unique within a team: b"):
        GatewayConfig.model_validate(
            {"teams": [{"id": "acme", "budgets": [{"id": "b", "amount_usd": "1"}] * 2}]}
        )
    with pytest.raises(ValidationError, match="unknown time zone"):
        GatewayConfig.model_validate({"teams": [{"id": "acme", "timezone": "Nowhere/City"}]})


def test_a_day_begins_at_local_midnight_also_on_a_daylight_saving_day() -> None:
    # 2026-03-08: New York moves from UTC-5 to UTC-4; that day is 23 hours long.
    assert window("daily", "America/New_York", utc(2026, 3, 8, 12)) == Window(
        utc(2026, 3, 8, 5), utc(2026, 3, 9, 4)
    )
    # Just before midnight local time the day is still the 7th.
    assert window("daily", "America/New_York", utc(2026, 3, 8, 4, 59)).start == utc(2026, 3, 7, 5)


def test_weeks_begin_on_monday_and_months_on_the_first() -> None:
    # Sunday 2026-03-08 in Kolkata (UTC+5:30): the week began on Monday the 2nd.
    assert window("weekly", "Asia/Kolkata", utc(2026, 3, 8, 12)) == Window(
        utc(2026, 3, 1, 18, 30), utc(2026, 3, 8, 18, 30)
    )
    assert window("monthly", "UTC", utc(2026, 12, 31, 23, 59)) == Window(
        utc(2026, 12, 1), utc(2027, 1, 1)
    )
    assert window("none", "UTC", utc(2026, 12, 31)) == Window(None, None)


def test_the_spend_query_filters_fixed_values_and_groups_by_wildcards() -> None:
    sql, parameters = spend_query(
        "acme",
        budget(scope={"user": "*", "tag": "feature:chat"}, counts="market_cost"),
        utc(2026, 3, 1),
    )
    assert "sum(market_cost)" in sql
    assert "has(tags, {v0:String})" in sql and parameters["v0"] == "feature:chat"
    assert "user_id != ''" in sql and "GROUP BY k0" in sql
    assert "credential_type != 'byok'" in sql
    sql, _ = spend_query("acme", budget(include_byok=True, period="none"), None)
    assert "byok" not in sql and "hour >=" not in sql and "GROUP BY" not in sql
