"""A daily hard budget resets at midnight in its team's time zone, not UTC's: the guard on
the real engine's rollup, with the clock injected around Berlin's midnight (23:00 UTC in
winter), spend committed late on the Berlin day before."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from clickhouse_connect.driver.client import Client

from meterline.common.budget_spend import WarehouseSpend
from meterline.common.budgets import RequestScope
from meterline.common.clickhouse import RAW_COLUMNS
from meterline.common.config import GatewayConfig, TeamConfig
from meterline.common.migrations import migrate
from meterline.common.pricing import PerMillionRates, StaticPrices, TokenCounts
from meterline.consumer.enrich import Enricher
from meterline.ingress.budget_guard import BudgetGuard
from meterline.ingress.route_prices import ListPrices
from tests.support.events import usage_event

pytestmark = pytest.mark.clickhouse

RATES = PerMillionRates.text(Decimal(1), Decimal(1), Decimal(1), Decimal(1))
PRICES = StaticPrices({("openai", "gpt-x"): RATES})
TEAM = TeamConfig.model_validate(
    {
        "id": "acme",
        "timezone": "Europe/Berlin",
        "budgets": [{"id": "daily", "amount_usd": "2", "period": "daily"}],
    }
)
REQUEST = RequestScope("prod", "ana", [], "openai", "gpt-x", "system")
SMALL = TokenCounts(input_tokens=1000, output_tokens=1000)  # $0.002


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


def test_a_daily_budget_resets_at_midnight_in_berlin(clickhouse: Client) -> None:
    migrate(clickhouse)
    enricher = Enricher(PRICES, GatewayConfig(teams=[TEAM]))
    # $2 spent at 23:30 in Berlin on 2 December (22:30 UTC): the day's budget is gone.
    late = datetime(2026, 12, 2, 22, 30, tzinfo=UTC)
    clickhouse.insert(
        "usage_events",
        [
            enricher.row(
                usage_event(
                    started_at=late, input_tokens=1_000_000, output_tokens=1_000_000, user_id="ana"
                )
            )
        ],
        column_names=list(RAW_COLUMNS),
    )
    prices = ListPrices(lambda: PRICES)
    assert prices.wait_loaded(10)
    clock = Clock(datetime(2026, 12, 2, 22, 59, 30, tzinfo=UTC))
    guard = BudgetGuard(
        GatewayConfig(teams=[TEAM]), WarehouseSpend(lambda: clickhouse), prices, clock=clock
    )
    pricer = guard.pricer(TEAM, "openai", "gpt-x", "system")

    assert asyncio.run(guard.refresh())
    refusal = guard.admit(TEAM, REQUEST, "e0", pricer, SMALL)
    assert refusal is not None and refusal.spent == Decimal(2)
    assert refusal.resets_at == datetime(2026, 12, 2, 23, tzinfo=UTC)

    # One minute later it is 3 December in Berlin (still the 2nd in UTC): a new day.
    clock.now += timedelta(minutes=1)
    assert asyncio.run(guard.refresh())
    assert guard.admit(TEAM, REQUEST, "e1", pricer, SMALL) is None
    assert guard.admit(TEAM, REQUEST, "e2", pricer, SMALL) is None
    assert sum(guard.reserved().values()) == Decimal("0.004")
