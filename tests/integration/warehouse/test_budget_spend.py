"""Budget spend read from the real engine's hourly rollup: per value of a default budget,
fixed values filtered, BYOK left out unless counted, a multi-tag request once per value, the
period's start honoured; the landed events and the refusal counts."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest
from clickhouse_connect.driver.client import Client

from meterline.common.budget_spend import SpendAsk, WarehouseSpend
from meterline.common.budgets import Budget
from meterline.common.clickhouse import RAW_COLUMNS
from meterline.common.config import GatewayConfig, TeamConfig
from meterline.common.migrations import migrate
from meterline.common.pricing import PerMillionRates, StaticPrices
from meterline.consumer.enrich import Enricher
from tests.support.events import usage_event

pytestmark = pytest.mark.clickhouse

# A million input tokens cost $1: each event below costs its input in millions.
RATES = PerMillionRates.text(Decimal(1), Decimal(0), Decimal(0), Decimal(0))
MARCH_2 = datetime(2026, 3, 2, 9, tzinfo=UTC)
MARCH_1 = datetime(2026, 3, 1, 9, tzinfo=UTC)


def budget(**fields: Any) -> Budget:
    return Budget.model_validate({"id": "b", "amount_usd": "100", **fields})


@pytest.fixture
def spend(clickhouse: Client) -> WarehouseSpend:
    migrate(clickhouse)
    enricher = Enricher(
        StaticPrices({("openai", "gpt-x"): RATES}), GatewayConfig(teams=[TeamConfig(id="acme")])
    )
    events = [
        # (user, tags, millions of input tokens, credential, started)
        ("ana", ["feature:chat", "plan:pro"], 1, "system", MARCH_2),
        ("ana", ["feature:chat"], 2, "system", MARCH_2),
        ("bo", ["feature:search"], 4, "system", MARCH_2),
        (None, ["feature:chat"], 8, "system", MARCH_2),
        ("bo", ["feature:chat"], 16, "byok", MARCH_2),
        ("ana", ["feature:chat"], 32, "system", MARCH_1),
    ]
    rows = [
        enricher.row(
            usage_event(
                event_id=f"00000000-0000-0000-0000-{n:012d}",
                user_id=user,
                tags=tags,
                input_tokens=millions * 1_000_000,
                output_tokens=0,
                credential_type=credential,
                started_at=started,
            )
        )
        for n, (user, tags, millions, credential, started) in enumerate(events, start=1)
    ]
    clickhouse.insert("usage_events", rows, column_names=list(RAW_COLUMNS))
    return WarehouseSpend(lambda: clickhouse)


def committed(spend: WarehouseSpend, b: Budget, since: datetime | None = MARCH_2) -> Any:
    return spend.read(SpendAsk([("acme", b, since)], {})).committed[("acme", "b")]


def test_a_default_budget_per_user_counts_each_users_system_spend(spend: WarehouseSpend) -> None:
    assert committed(spend, budget(scope={"user": "*"})) == {
        (("user", "ana"),): Decimal(3),
        (("user", "bo"),): Decimal(4),
    }
    # With BYOK counted at market price, bo's own-key request counts too.
    with_byok = budget(scope={"user": "*"}, include_byok=True, counts="market_cost")
    assert committed(spend, with_byok)[(("user", "bo"),)] == Decimal(20)


def test_a_request_with_two_tags_counts_once_per_tag_value_and_once_for_one_tag(
    spend: WarehouseSpend,
) -> None:
    assert committed(spend, budget(scope={"tag": "*"})) == {
        (("tag", "feature:chat"),): Decimal(11),
        (("tag", "plan:pro"),): Decimal(1),
        (("tag", "feature:search"),): Decimal(4),
    }
    assert committed(spend, budget(scope={"tag": "feature:chat"})) == {(): Decimal(11)}
    # Each user's spend on one feature (bo's is BYOK, the other has no user).
    assert committed(spend, budget(scope={"user": "*", "tag": "feature:chat"})) == {
        (("user", "ana"),): Decimal(3),
    }
    assert committed(spend, budget(scope={"user": "*", "tag": "*"})) == {
        (("user", "ana"), ("tag", "feature:chat")): Decimal(3),
        (("user", "ana"), ("tag", "plan:pro")): Decimal(1),
        (("user", "bo"), ("tag", "feature:search")): Decimal(4),
    }


def test_the_period_start_and_a_budget_that_never_resets(spend: WarehouseSpend) -> None:
    assert committed(spend, budget()) == {(): Decimal(15)}
    assert committed(spend, budget(), since=None) == {(): Decimal(47)}
    assert committed(spend, budget(scope={"user": "nobody"})) == {}


def test_landed_events_and_refusal_counts(spend: WarehouseSpend) -> None:
    landed = spend.read(
        SpendAsk(
            [],
            {
                "acme": (
                    [
                        "00000000-0000-0000-0000-000000000001",
                        "00000000-0000-0000-0000-000000000099",
                    ],
                    MARCH_2,
                )
            },
        )
    ).landed
    assert landed == {"00000000-0000-0000-0000-000000000001"}
    value = (("user", "ana"),)
    for _ in range(2):
        spend.read(SpendAsk([], {}, {("acme", "b", value, MARCH_2): 3}))
    spend.read(SpendAsk([], {}, {("acme", "b", (), None): 1}))
    assert spend.blocked("acme", "b", MARCH_2) == {value: 6}
    assert spend.blocked("acme", "b", None) == {(): 1}
