"""Budget check: what the hard budgets' check adds to a request on the ingress, in
microseconds (the issue's bar: "an in-memory lookup").

Method. One ``BudgetGuard`` in process, as the ingress builds it, with a team of several
hard budgets (the whole team, every user, every user on a feature tag, every tag, a model)
and the committed spend of ``--users`` users loaded as a refresh leaves it. Each request is
what ``routers/call.py`` runs before forwarding: the route's pricer, the check without
reserving when the request has fallback routes (not here: one route), then the check that
reserves; and, when its usage is known, the settle. Every 1,000 requests a refresh finds
their events landed, as the background refresh does in service, so the guard holds what
a few seconds of traffic admitted. Budgets are large, so every request is admitted (the
longest path). Reported: p50, p99 and max of the check (the pricer and the check) and of
the settle, per request; the refreshes run between requests, off the measured path."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from tests.support.events import usage_event

from bench.common import argument_parser, markdown_table, median, percentile, write_results
from meterline.common.budget_spend import MemorySpend
from meterline.common.budgets import RequestScope
from meterline.common.config import GatewayConfig, TeamConfig
from meterline.common.events import UsageEvent
from meterline.common.pricing import PerMillionRates, StaticPrices, TokenCounts
from meterline.ingress.budget_guard import LANDED_MARGIN, BudgetGuard
from meterline.ingress.route_prices import ListPrices

NAME = "budget_check"
RATES = PerMillionRates.text(Decimal("2.5"), Decimal(10), Decimal("1.25"), Decimal("3.125"))
BUDGETS: list[dict[str, Any]] = [
    {"id": "team", "amount_usd": "1000000"},
    {"id": "per-user", "amount_usd": "1000", "scope": {"user": "*"}, "period": "daily"},
    {
        "id": "per-user-feature",
        "amount_usd": "1000",
        "scope": {"user": "*", "tag": "feature:chat"},
        "period": "weekly",
        "timezone": "America/New_York",
    },
    {"id": "per-tag", "amount_usd": "100000", "scope": {"tag": "*"}},
    {"id": "model", "amount_usd": "100000", "scope": {"model": "gpt-4o"}},
]


class Clock:
    """The wall clock, moved on by each simulated refresh's margin."""

    def __init__(self) -> None:
        self.offset = timedelta(0)

    def __call__(self) -> datetime:
        return datetime.now(UTC) + self.offset

    def advance(self, seconds: float) -> None:
        self.offset += timedelta(seconds=seconds)


def event(event_id: str, user: str) -> UsageEvent:
    return usage_event(
        event_id=event_id,
        model="gpt-4o",
        provider="openai",
        user_id=user,
        tags=["feature:chat", "plan:pro"],
        input_tokens=400,
        output_tokens=120,
    )


def measure(requests: int, users: int) -> dict[str, Any]:
    team = TeamConfig.model_validate({"id": "acme", "budgets": BUDGETS})
    source = MemorySpend()
    for budget in team.budgets:
        if budget.wildcards == ("user",):
            source.spent[("acme", budget.id)] = {
                (("user", f"user-{n}"),): Decimal("0.5") for n in range(users)
            }
    prices = ListPrices(lambda: StaticPrices({("openai", "gpt-4o"): RATES}))
    assert prices.wait_loaded(30)
    clock = Clock()
    guard = BudgetGuard(GatewayConfig(teams=[team]), source, prices, clock=clock)
    assert asyncio.run(guard.refresh())
    estimate = TokenCounts(input_tokens=600, output_tokens=1024)
    checks: list[float] = []
    settles: list[float] = []
    ids = [UsageEvent.new_id() for _ in range(requests)]
    events = [event(ids[n], f"user-{n % users}") for n in range(requests)]
    for n in range(requests):
        scope = RequestScope(
            "app", f"user-{n % users}", ["feature:chat", "plan:pro"], "openai", "gpt-4o", "system"
        )
        started = time.perf_counter()
        pricer = guard.pricer(team, "openai", "gpt-4o", "system")
        assert guard.admit(team, scope, ids[n], pricer, estimate) is None
        checked = time.perf_counter()
        guard.settle(events[n])
        settled = time.perf_counter()
        checks.append((checked - started) * 1e6)
        settles.append((settled - checked) * 1e6)
        if n % 1000 == 999:
            source.landed_ids = set(ids[n - 999 : n + 1])
            for _ in range(2):  # found landed, then released a margin later
                assert asyncio.run(guard.refresh())
                clock.advance(LANDED_MARGIN.total_seconds())
    return {
        "requests": requests,
        "users": users,
        "budgets": len(BUDGETS),
        "check_us_p50": round(median(checks), 1),
        "check_us_p99": round(percentile(checks, 99), 1),
        "check_us_max": round(max(checks), 1),
        "settle_us_p50": round(median(settles), 1),
        "settle_us_p99": round(percentile(settles, 99), 1),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argument_parser(NAME, __doc__ or "")
    parser.add_argument("--requests", type=int, default=200_000)
    parser.add_argument("--users", type=int, default=100_000)
    args = parser.parse_args(argv)
    requests, users = (2_000, 1_000) if args.quick else (args.requests, args.users)
    result = measure(requests, users)
    print(result, flush=True)
    markdown = markdown_table(
        [
            "requests",
            "users",
            "hard budgets",
            "check p50 µs",
            "check p99 µs",
            "check max µs",
            "settle p50 µs",
            "settle p99 µs",
        ],
        [
            [
                f"{result['requests']:,}",
                f"{result['users']:,}",
                result["budgets"],
                result["check_us_p50"],
                result["check_us_p99"],
                result["check_us_max"],
                result["settle_us_p50"],
                result["settle_us_p99"],
            ]
        ],
    )
    write_results(args.out, NAME, {"requests": requests, "users": users}, [result], markdown)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
