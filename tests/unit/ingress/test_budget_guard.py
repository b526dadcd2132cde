"""The hard budgets' in-memory check: reservations against concurrency, settling to the
real usage, the warehouse's committed spend taking over, and a period's reset."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from meterline.common.budget_spend import MemorySpend
from meterline.common.budgets import Budget, RequestScope
from meterline.common.config import GatewayConfig, TeamConfig
from meterline.common.events import UsageEvent
from meterline.common.pricing import PerMillionRates, StaticPrices, TokenCounts
from meterline.ingress.budget_guard import BudgetGuard, output_limit
from meterline.ingress.route_prices import ListPrices
from tests.support.events import usage_event

# $1 per million input tokens (cache writes too), $2 per million output: a million-token
# estimate costs $3.
RATES = PerMillionRates.text(Decimal(1), Decimal(2), Decimal("0.1"), Decimal(1))
MILLION = TokenCounts(input_tokens=1_000_000, output_tokens=1_000_000)


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


def team(*budgets: dict[str, Any], timezone: str = "UTC") -> TeamConfig:
    return TeamConfig.model_validate({"id": "acme", "timezone": timezone, "budgets": budgets})


def guard(
    acme: TeamConfig, source: MemorySpend | None = None, clock: Clock | None = None
) -> BudgetGuard:
    prices = ListPrices(lambda: StaticPrices({("openai", "gpt-4o"): RATES}))
    assert prices.wait_loaded(10)
    return BudgetGuard(
        GatewayConfig(teams=[acme]),
        source,
        prices,
        clock=clock or Clock(datetime(2026, 3, 8, 12, tzinfo=UTC)),
    )


def scope(user: str | None = "ana", credential_type: str = "system") -> RequestScope:
    return RequestScope("app", user, ["feature:chat"], "openai", "gpt-4o", credential_type)


def admit(g: BudgetGuard, acme: TeamConfig, event_id: str, **fields: Any) -> Any:
    request = scope(**fields)
    pricer = g.pricer(acme, request.provider, request.model, request.credential_type)
    return g.admit(acme, request, event_id, pricer, MILLION)


def event(event_id: str, input_tokens: int, output_tokens: int) -> UsageEvent:
    return usage_event(
        event_id=event_id,
        model="gpt-4o",
        provider="openai",
        input_tokens=input_tokens,
        output_tokens=output_tokens,
    )


def test_concurrent_requests_cannot_all_pass_against_the_last_dollars() -> None:
    # $10 left and 100 requests at once, each estimated at $3: three get through.
    acme = team({"id": "all", "amount_usd": "10"})
    g = guard(acme)
    refused = [admit(g, acme, f"e{n}") for n in range(100)]
    assert sum(r is None for r in refused) == 3
    assert g.stats.blocked[("acme", "all")] == 97
    assert sum(g.reserved().values()) == Decimal(9)
    refusal = next(r for r in refused if r is not None)
    assert (refusal.spent, refusal.limit, refusal.estimate) == (Decimal(9), Decimal(10), Decimal(3))
    assert "budget 'all' (team) is exhausted" in refusal.message()
    assert "resets at 2026-04-01T00:00:00Z" in refusal.message()


def test_a_settled_request_counts_its_usage_instead_of_its_estimate() -> None:
    acme = team({"id": "all", "amount_usd": "10"})
    g = guard(acme)
    for n in range(3):
        assert admit(g, acme, f"e{n}") is None
    assert admit(g, acme, "e3") is not None
    # e0 used a tenth of its estimate: $0.30 instead of $3, which makes room for one more.
    g.settle(event("e0", 100_000, 100_000))
    assert sum(g.reserved().values()) == Decimal("6.3")
    assert admit(g, acme, "e4") is None
    # An event the guard did not admit (another team, no budget) changes nothing.
    g.settle(event("unknown", 1, 1))
    assert sum(g.reserved().values()) == Decimal("9.3")


def test_the_warehouse_takes_over_what_it_holds() -> None:
    acme = team({"id": "per-user", "amount_usd": "10", "scope": {"user": "*"}})
    source = MemorySpend()
    clock = Clock(datetime(2026, 3, 8, 12, tzinfo=UTC))
    g = guard(acme, source, clock)
    assert admit(g, acme, "e0") is None
    g.settle(event("e0", 1_000_000, 1_000_000))
    key = ("acme", "per-user", (("user", "ana"),), datetime(2026, 3, 1, tzinfo=UTC))
    assert g.reserved() == {key: Decimal(3)}
    # The event landed: its cost is in the warehouse's spend. The raw table shows it before
    # every rollup may, so it still counts here until a refresh a margin later.
    source.spent[("acme", "per-user")] = {(("user", "ana"),): Decimal("8")}
    source.landed_ids.add("e0")
    assert asyncio.run(g.refresh())
    assert g.reserved() == {key: Decimal(3)}
    clock.now += timedelta(seconds=2)
    assert asyncio.run(g.refresh())
    assert g.reserved() == {}
    # $8 committed and $3 estimated would pass $10: refused; another user has room.
    refusal = admit(g, acme, "e1")
    assert refusal is not None and refusal.spent == Decimal(8)
    assert admit(g, acme, "e2", user="bo") is None
    # A request without a user is in no user's budget.
    assert admit(g, acme, "e3", user=None) is None


def test_an_unsettled_request_is_not_taken_for_landed_and_a_failed_refresh_keeps_the_spend() -> (
    None
):
    acme = team({"id": "all", "amount_usd": "10"})
    source = MemorySpend()
    source.spent[("acme", "all")] = {(): Decimal(5)}
    g = guard(acme, source)
    assert asyncio.run(g.refresh())
    assert admit(g, acme, "e0") is None
    source.landed_ids.add("e0")  # not settled yet: the ingress cannot know it landed
    assert asyncio.run(g.refresh())
    assert sum(g.reserved().values()) == Decimal(3)
    source.fail = True
    assert not asyncio.run(g.refresh())
    assert g.stats.refresh_failures == 1
    refusal = admit(g, acme, "e1")
    assert refusal is not None and refusal.spent == Decimal(8)


def test_each_of_n_replicas_holds_at_most_its_share_of_what_is_left() -> None:
    acme = team({"id": "all", "amount_usd": "20"})
    source = MemorySpend()
    source.spent[("acme", "all")] = {(): Decimal(8)}
    prices = ListPrices(lambda: StaticPrices({("openai", "gpt-4o"): RATES}))
    assert prices.wait_loaded(10)
    g = BudgetGuard(GatewayConfig(teams=[acme]), source, prices, replicas=2)
    assert asyncio.run(g.refresh())
    # $12 left, two replicas: this one holds up to $6, two $3 estimates.
    assert [admit(g, acme, f"e{n}") is None for n in range(3)] == [True, True, False]
    refusal = admit(g, acme, "e3")
    assert refusal is not None and refusal.spent == Decimal(14)


def test_a_budget_made_through_the_api_counts_from_the_next_refresh() -> None:
    acme = team()
    source = MemorySpend()
    g = guard(acme, source)
    assert g.enabled and not g.enforces("acme")
    source.api["acme"] = [Budget.model_validate({"id": "api", "amount_usd": "5"})]
    source.spent[("acme", "api")] = {(): Decimal(4)}
    # A budget of another team that is not configured here is left out.
    source.api["stranger"] = [Budget.model_validate({"id": "x", "amount_usd": "0"})]
    assert asyncio.run(g.refresh())
    assert g.enforces("acme") and not g.enforces("stranger")
    refusal = admit(g, acme, "e0")
    # Its spend was read in the same refresh: $4 of $5, and $3 more would pass it.
    assert refusal is not None and refusal.spent == Decimal(4)
    # Deleted: no longer checked.
    source.api.clear()
    assert asyncio.run(g.refresh())
    assert not g.enforces("acme") and admit(g, acme, "e1") is None


def test_a_configured_budget_wins_over_an_api_one_of_its_id() -> None:
    acme = team({"id": "all", "amount_usd": "10", "mode": "soft"})
    source = MemorySpend()
    source.api["acme"] = [Budget.model_validate({"id": "all", "amount_usd": "0"})]
    g = guard(acme, source)
    assert asyncio.run(g.refresh())
    assert not g.enforces("acme")


def test_byok_requests_pass_a_budget_that_excludes_them() -> None:
    acme = team({"id": "all", "amount_usd": "0"})
    g = guard(acme)
    assert admit(g, acme, "e0") is not None
    assert admit(g, acme, "e1", credential_type="byok") is None
    assert g.reserved() == {}


def test_a_daily_budget_resets_at_midnight_in_its_time_zone() -> None:
    # Berlin is UTC+1 in March: its day begins at 23:00 UTC.
    acme = team({"id": "daily", "amount_usd": "4", "period": "daily"}, timezone="Europe/Berlin")
    clock = Clock(datetime(2026, 3, 9, 22, 58, tzinfo=UTC))
    source = MemorySpend()
    g = guard(acme, source, clock)
    assert admit(g, acme, "e0") is None
    refusal = admit(g, acme, "e1")
    assert refusal is not None
    assert refusal.resets_at == datetime(2026, 3, 9, 23, tzinfo=UTC)
    clock.now += timedelta(minutes=2)
    # Midnight in Berlin: a new period with nothing spent, before any refresh.
    assert admit(g, acme, "e2") is None
    # The refresh forgets the previous day's reservation.
    assert asyncio.run(g.refresh())
    assert list(g.reserved().values()) == [Decimal(3)]


def test_soft_budgets_and_teams_without_budgets_are_not_checked() -> None:
    acme = team({"id": "soft", "amount_usd": "0", "mode": "soft"})
    g = guard(acme)
    assert not g.enabled and not g.enforces("acme")
    assert admit(g, acme, "e0") is None


def test_an_estimate_prices_its_tokens_at_their_dearest_kind() -> None:
    acme = team()
    g = guard(acme)
    pricer = g.pricer(acme, "openai", "gpt-4o", "system")
    assert pricer.bound(MILLION).market == Decimal(3)
    dear = PerMillionRates(
        input=Decimal(1),
        output=Decimal(2),
        cache_read=Decimal("0.1"),
        cache_write=Decimal("1.25"),
        cache_write_1h=Decimal(2),
        input_audio=Decimal(40),
        output_audio=Decimal(80),
        web_search=Decimal(0),
    )
    prices = ListPrices(lambda: StaticPrices({("openai", "gpt-audio"): dear}))
    assert prices.wait_loaded(10)
    g = BudgetGuard(GatewayConfig(teams=[acme]), None, prices)
    costs = g.pricer(acme, "openai", "gpt-audio", "system").bound(MILLION)
    assert (costs.market, costs.total) == (Decimal(120), Decimal(120))
    # An unknown model's estimate is nothing: its requests are charged nothing either.
    assert g.pricer(acme, "openai", "unknown", "system").bound(MILLION).market == 0


@pytest.mark.parametrize(
    ("body", "limit"),
    [
        ({"max_tokens": 10}, 10),
        ({"max_completion_tokens": 20, "max_tokens": 10}, 20),
        ({"max_output_tokens": 30}, 30),
        ({"maxOutputTokens": 40}, 40),
        ({}, 4096),
        ({"max_tokens": "many"}, 4096),
        ({"max_tokens": True}, 4096),
    ],
)
def test_the_output_limit_of_each_surface(body: dict[str, Any], limit: int) -> None:
    assert output_limit(body, 4096) == limit
