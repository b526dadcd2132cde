"""Hard budgets enforced before a request is forwarded, with an in-memory check.

A budget value's spend, as this process sees it, is what the warehouse had committed at the
last refresh (``SpendSource``, read in a worker thread every
``METERLINE_BUDGET_REFRESH_SECONDS``, never on the request path) plus what this process
admitted and the warehouse does not hold yet. Each admitted request first counts an
estimate of its cost (a reservation: the list price of ``input_estimate`` and its output
limit); when its usage is known (its event is published) the estimate becomes the cost of
that usage; once a refresh finds its event in the warehouse it is no longer counted here,
because the committed spend has it.

A request is refused when its spend so far, reservations included, plus its own estimate
would pass the limit: so concurrent requests cannot all pass against the last dollar, and a
request whose estimate bounds its cost never takes a budget past its limit. README "Budgets"
states the bound with several replicas."""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from operator import attrgetter
from typing import Any, Final

from meterline.common.budget_spend import SpendAsk, SpendSource
from meterline.common.budgets import (
    Budget,
    BudgetValue,
    RequestScope,
    Window,
    budget_timezone,
    budget_values,
    describe,
    window,
)
from meterline.common.config import GatewayConfig, TeamConfig
from meterline.common.events import UsageEvent
from meterline.common.pricing import (
    MILLION,
    TOKEN_FIELDS,
    PerMillionRates,
    TokenCounts,
    team_cost,
    team_rates,
)
from meterline.common.waiting import wait_event
from meterline.ingress.publishing.protocol import UsagePublisher
from meterline.ingress.route_prices import ListPrices

log = logging.getLogger("meterline.ingress.budgets")
_event_tokens: Final = attrgetter(*TOKEN_FIELDS)

ZERO: Final = Decimal(0)
INPUT_BYTES_PER_TOKEN: Final = 3
"""The input estimate's bytes per token: English text runs near four bytes a token and CJK
text near three, so the body's size over three bounds a text prompt's tokens (JSON and
base64 images only make it larger)."""
OUTPUT_LIMIT_FIELDS: Final = (
    "max_completion_tokens",
    "max_tokens",
    "max_output_tokens",
    "maxOutputTokens",
)
"""Where each surface's request names its output limit (Chat Completions, Messages,
Responses, the AI SDK's language model)."""
LANDED_MARGIN: Final = timedelta(seconds=2)
"""How long after its event shows in the raw table an admission still counts here: an
insert commits the raw table's rows before its views have fed every rollup, so a spend read
just after may not hold an event the raw table already shows (seen here: half a second
under load). Counting it twice meanwhile only refuses early; not at all would overshoot."""
FORGET_UNLANDED_AFTER: Final = timedelta(minutes=15)
MAX_CACHED_PRICERS: Final = 10_000
"""An admission whose event the warehouse never shows (dead-lettered, say) stops counting
after this long."""


@dataclass(frozen=True, slots=True)
class Costs:
    """A request's cost in both of the ways a budget can count it."""

    market: Decimal
    total: Decimal

    def of(self, counts: str) -> Decimal:
        return self.market if counts == "market_cost" else self.total


@dataclass(frozen=True, slots=True)
class Pricer:
    """How a request's estimate and its settled cost are priced: list price, and what the
    team is charged (its overrides; BYOK nothing). None: the price is unknown."""

    market: Callable[[TokenCounts], Decimal | None]
    total: Callable[[TokenCounts], Decimal | None]
    dearest: tuple[Decimal, Decimal, Decimal, Decimal] | None = None
    """For linear prices: the dearest input and output rates per token, market then total,
    so ``bound`` is two products instead of ten price computations."""
    charged_at_market: bool = False
    """The team is charged the list price (no override, its gateway's keys): one price
    computation gives both costs."""

    def costs(self, tokens: TokenCounts) -> Costs:
        market = self.market(tokens) or ZERO
        if self.charged_at_market:
            return Costs(market, market)
        return Costs(market, self.total(tokens) or ZERO)

    def bound(self, estimate: TokenCounts) -> Costs:
        """The most ``estimate``'s input and output tokens can cost, whatever kinds they
        turn out to be: the input at its dearest kind (plain, a one-hour cache write, or
        audio), the output at its dearest (text or audio)."""
        n, m = estimate.input_tokens, estimate.output_tokens
        if self.dearest is not None:
            market_in, market_out, total_in, total_out = self.dearest
            return Costs(market_in * n + market_out * m, total_in * n + total_out * m)
        inputs = [
            self.costs(TokenCounts(n, 0)),
            self.costs(
                TokenCounts(n, 0, cache_creation_input_tokens=n, cache_creation_1h_input_tokens=n)
            ),
            self.costs(TokenCounts(n, 0, input_audio_tokens=n)),
        ]
        outputs = [
            self.costs(TokenCounts(0, m)),
            self.costs(TokenCounts(0, m, output_audio_tokens=m)),
        ]
        return Costs(
            max(c.market for c in inputs) + max(c.market for c in outputs),
            max(c.total for c in inputs) + max(c.total for c in outputs),
        )


def _dearest(rates: PerMillionRates | None) -> tuple[Decimal, Decimal]:
    if rates is None:
        return ZERO, ZERO
    inputs = (rates.input, rates.cache_write, rates.cache_write_1h, rates.input_audio)
    return max(inputs) / MILLION, max(rates.output, rates.output_audio) / MILLION


def _unknown(tokens: TokenCounts) -> Decimal | None:
    return None


UNPRICED: Final = Pricer(_unknown, _unknown)


Key = tuple[str, str, BudgetValue, datetime | None]
"""(team, budget id, budget value, period start)."""


@dataclass(frozen=True, slots=True)
class Refusal:
    """Why a request was not forwarded."""

    budget: Budget
    value: BudgetValue
    spent: Decimal
    limit: Decimal
    estimate: Decimal
    resets_at: datetime | None
    key: Key

    def message(self) -> str:
        resets = (
            f"it resets at {self.resets_at.isoformat().replace('+00:00', 'Z')}"
            if self.resets_at is not None
            else "it does not reset"
        )
        return (
            f"budget {self.budget.id!r} ({describe(self.value)}) is exhausted: "
            f"{_usd(self.spent)} of {_usd(self.limit)} spent or reserved, and this request "
            f"may cost up to {_usd(self.estimate)}; {resets}"
        )


def _usd(amount: Decimal) -> str:
    return f"${amount.quantize(Decimal('0.000001')).normalize():f}"


@dataclass(frozen=True, slots=True)
class _Line:
    """A hard budget in its current period, as the request path checks it."""

    budget: Budget
    start: datetime | None
    resets_at: datetime | None
    committed: Mapping[BudgetValue, Decimal]
    market: bool
    """It counts ``market_cost`` (else ``total_cost``)."""


@dataclass(slots=True)
class Admission:
    team_id: str
    started_at: datetime
    pricer: Pricer
    keys: list[tuple[Key, str]]
    """Each budget value it counts towards, and what that budget counts."""
    costs: Costs
    settled: bool = False
    settled_at: datetime | None = None
    landed_at: datetime | None = None
    """When a refresh first found its event in the raw table."""


@dataclass(slots=True)
class Snapshot:
    """What one refresh read from the warehouse."""

    committed: dict[tuple[str, str, datetime | None], Mapping[BudgetValue, Decimal]]
    landed: set[str]
    read_at: datetime
    hard: dict[str, list[Budget]]
    """The hard budgets the spend is of: configured and API-made."""


@dataclass(slots=True)
class GuardStats:
    blocked: Counter[tuple[str, str]] = field(default_factory=Counter)
    """Refused requests per (team, budget id)."""
    refreshes: int = 0
    refresh_failures: int = 0


def output_limit(body: Mapping[str, Any], default: int) -> int:
    for name in OUTPUT_LIMIT_FIELDS:
        value = body.get(name)
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            return value
    return default


class BudgetGuard:
    def __init__(
        self,
        config: GatewayConfig,
        source: SpendSource | None,
        prices: ListPrices,
        *,
        refresh_seconds: float = 2.0,
        default_output_tokens: int = 4096,
        replicas: int = 1,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ):
        self._configured = {
            team.id: [b for b in team.budgets if b.mode == "hard"] for team in config.teams
        }
        self._configured_ids = {team.id: {b.id for b in team.budgets} for team in config.teams}
        self._hard: dict[str, list[Budget]] = dict(self._configured)
        """Configured and API-made hard budgets per team, as the last refresh left them."""
        self._timezones = {team.id: team.timezone for team in config.teams}
        self._source = source
        self._prices = prices
        self._refresh_seconds = refresh_seconds
        self._default_output_tokens = default_output_tokens
        self._replicas = replicas
        self._clock = clock
        self._windows: dict[tuple[str, str, str, str | None], Window] = {}
        self._pricers: dict[tuple[str, str, str, str], tuple[date, Pricer]] = {}
        self._committed: dict[tuple[str, str, datetime | None], Mapping[BudgetValue, Decimal]] = {}
        self._local: dict[Key, Decimal] = {}
        self._plans: dict[str, tuple[datetime | None, list[_Line]]] = {}
        """Per team: its hard budgets as ``_plan`` built them, and until when they hold."""
        self._admissions: dict[str, Admission] = {}
        self._unsent_blocked: Counter[Key] = Counter()
        """Refusals not yet added to the warehouse's count (``SpendAsk.blocked``)."""
        self.stats = GuardStats()

    @property
    def enabled(self) -> bool:
        """Whether there are budgets to check, or may be (made through the API)."""
        return self._source is not None or any(self._configured.values())

    def enforces(self, team_id: str) -> bool:
        return bool(self._hard.get(team_id))

    # ---- the request path ----

    def pricer(self, team: TeamConfig, provider: str, model: str, credential_type: str) -> Pricer:
        """Cached per team, route and credential for the day (prices change on days)."""
        now = self._clock()
        day = now.date()
        key = (team.id, provider, model, credential_type)
        cached = self._pricers.get(key)
        if cached is not None and cached[0] == day:
            return cached[1]
        pricer = self._new_pricer(team, provider, model, credential_type, now)
        if pricer is not UNPRICED:  # asked again once the price list is in
            if len(self._pricers) >= MAX_CACHED_PRICERS:
                self._pricers.clear()
            self._pricers[key] = (day, pricer)
        return pricer

    def _new_pricer(
        self, team: TeamConfig, provider: str, model: str, credential_type: str, now: datetime
    ) -> Pricer:
        override = team.price_override(provider, model)
        market = self._prices.day_rates(provider, model, now)
        if market is None:
            return UNPRICED
        if isinstance(market, PerMillionRates) or market == "unknown":
            known = market if isinstance(market, PerMillionRates) else None
            charged = team_rates(known, credential_type, override)
            return Pricer(
                _unknown if known is None else known.cost,
                _unknown if charged is None else charged.cost,
                (*_dearest(known), *_dearest(charged)),
                charged_at_market=charged is known,
            )

        # Tiered by the prompt's size: priced by the price list for each count.
        def market_cost(tokens: TokenCounts) -> Decimal | None:
            return self._prices.market_cost(provider, model, now, tokens)

        def total_cost(tokens: TokenCounts) -> Decimal | None:
            return team_cost(market_cost(tokens), tokens, credential_type, override)

        return Pricer(market_cost, total_cost)

    def admit(
        self,
        team: TeamConfig,
        scope: RequestScope,
        event_id: str,
        pricer: Pricer,
        estimate: TokenCounts,
        *,
        reserve: bool = True,
    ) -> Refusal | None:
        """Reserve the request's estimate against every hard budget value it counts towards,
        or say which one it would take past its limit (and reserve nothing). A request
        admitted again (its next route) gives up its earlier reservation first.
        ``reserve=False`` only checks, and counts no refusal."""
        if reserve:
            self._release(event_id)
        return self._admit(team, scope, event_id, pricer, estimate, reserve)

    def _admit(
        self,
        team: TeamConfig,
        scope: RequestScope,
        event_id: str,
        pricer: Pricer,
        estimate: TokenCounts,
        reserve: bool,
    ) -> Refusal | None:
        now = self._clock()
        costs = pricer.bound(estimate)
        keys: list[tuple[Key, str]] = []
        team_id, replicas, local = team.id, self._replicas, self._local
        for line in self._plan(team_id, now):
            budget = line.budget
            values = budget_values(budget, scope)
            if not values:
                continue
            amount = costs.market if line.market else costs.total
            for value in values:
                key = (team_id, budget.id, value, line.start)
                warehouse, here = line.committed.get(value, ZERO), local.get(key, ZERO)
                spent = warehouse + here
                limit = budget.limit(value)
                # With N replicas, this one may hold at most 1/N of what the warehouse says
                # is left: a burst spread over every replica cannot spend it N times over.
                over_share = replicas > 1 and here + amount > (limit - warehouse) / replicas
                if spent + amount > limit or spent >= limit or over_share:
                    refusal = Refusal(budget, value, spent, limit, amount, line.resets_at, key)
                    if reserve:
                        self.count(refusal)
                    return refusal
                keys.append((key, budget.counts))
        if keys and reserve:
            for key, counts in keys:
                self._local[key] = self._local.get(key, ZERO) + costs.of(counts)
            self._admissions[event_id] = Admission(team.id, now, pricer, keys, costs)
        return None

    def count(self, refusal: Refusal) -> None:
        """A request refused: in the metrics now, in the warehouse with the next refresh."""
        team_id, budget_id = refusal.key[0], refusal.key[1]
        self.stats.blocked[(team_id, budget_id)] += 1
        self._unsent_blocked[refusal.key] += 1

    def _release(self, event_id: str) -> None:
        admission = self._admissions.pop(event_id, None)
        if admission is not None:
            for key, counts in admission.keys:
                self._local[key] = self._local.get(key, ZERO) - admission.costs.of(counts)

    def settle(self, event: UsageEvent) -> None:
        """The request's usage is known: count its cost instead of its estimate."""
        admission = self._admissions.get(event.event_id)
        if admission is None or admission.settled:
            return
        tokens = TokenCounts(*_event_tokens(event))
        actual = admission.pricer.costs(tokens)
        for key, counts in admission.keys:
            self._local[key] = (
                self._local.get(key, ZERO) + actual.of(counts) - admission.costs.of(counts)
            )
        admission.costs = actual
        admission.settled = True
        admission.settled_at = self._clock()

    def _plan(self, team_id: str, now: datetime) -> list[_Line]:
        """The team's hard budgets in their current periods, built again when one of them
        resets or a refresh brings new spend: the request path only reads it."""
        cached = self._plans.get(team_id)
        if cached is not None and (cached[0] is None or now < cached[0]):
            return cached[1]
        lines = []
        for budget in self._hard.get(team_id, ()):
            period = self._window(team_id, budget, now)
            committed = self._committed.get((team_id, budget.id, period.start), {})
            market = budget.counts == "market_cost"
            lines.append(_Line(budget, period.start, period.resets_at, committed, market))
        resets = [line.resets_at for line in lines if line.resets_at is not None]
        self._plans[team_id] = (min(resets, default=None), lines)
        return lines

    def _window(self, team_id: str, budget: Budget, now: datetime) -> Window:
        # Keyed by the period's definition too: a budget changed through the API keeps its id.
        cache_key = (team_id, budget.id, budget.period, budget.timezone)
        cached = self._windows.get(cache_key)
        if cached is not None and (cached.resets_at is None or now < cached.resets_at):
            return cached
        tz = budget_timezone(budget, self._timezones.get(team_id, "UTC"))
        current = self._windows[cache_key] = window(budget.period, tz, now)
        return current

    # ---- the background refresh ----

    def read(self, blocked: Mapping[Key, int] | None = None) -> Snapshot:
        """Blocking: the warehouse's spend of every hard budget in its current period, and
        which of the settled admissions it holds."""
        assert self._source is not None
        now = self._clock()
        pending: dict[str, list[tuple[str, datetime]]] = {}
        for event_id, admission in list(self._admissions.items()):
            if admission.settled and admission.landed_at is None:
                pending.setdefault(admission.team_id, []).append((event_id, admission.started_at))
        hard = self._hard
        periods = {
            (team_id, budget.id): self._window(team_id, budget, now).start
            for team_id, budgets in hard.items()
            for budget in budgets
        }
        ask = SpendAsk(
            budgets=[
                (team_id, budget, periods[(team_id, budget.id)])
                for team_id, budgets in hard.items()
                for budget in budgets
            ],
            pending={
                team_id: ([i for i, _ in admitted], min(started for _, started in admitted))
                for team_id, admitted in pending.items()
            },
            blocked=dict(blocked or {}),
            api_budgets=True,
        )
        answer = self._source.read(ask)
        spent = dict(answer.committed)
        merged = self._merged(answer.api_budgets)
        # Budgets made or changed since the last refresh: their spend, before they count.
        asked = {(t, b.model_dump_json()) for t, budgets in hard.items() for b in budgets}
        new = [
            (t, b)
            for t, budgets in merged.items()
            for b in budgets
            if (t, b.model_dump_json()) not in asked
        ]
        for team_id, budget in new:
            periods[(team_id, budget.id)] = self._window(team_id, budget, now).start
        if new:
            later = self._source.read(SpendAsk([(t, b, periods[(t, b.id)]) for t, b in new], {}))
            spent.update(later.committed)
        committed: dict[tuple[str, str, datetime | None], Mapping[BudgetValue, Decimal]] = {
            (team_id, budget.id, periods[(team_id, budget.id)]): spent.get((team_id, budget.id), {})
            for team_id, budgets in merged.items()
            for budget in budgets
        }
        return Snapshot(committed, answer.landed, now, merged)

    def _merged(self, api: Mapping[str, list[Budget]]) -> dict[str, list[Budget]]:
        """The configured hard budgets, and the API's of configured teams (a configured
        budget wins over an API one of the same id)."""
        merged = {team_id: list(budgets) for team_id, budgets in self._configured.items()}
        for team_id, budgets in api.items():
            if team_id not in self._timezones:
                continue
            taken = self._configured_ids[team_id]
            merged[team_id] += [b for b in budgets if b.mode == "hard" and b.id not in taken]
        return merged

    def apply(self, snapshot: Snapshot) -> None:
        """On the event loop: take the snapshot, and stop counting what it holds."""
        self._hard = snapshot.hard
        self._committed = snapshot.committed
        self._plans.clear()
        current = set(snapshot.committed)
        forget_before = snapshot.read_at - FORGET_UNLANDED_AFTER
        for event_id, admission in list(self._admissions.items()):
            if admission.landed_at is None and event_id in snapshot.landed:
                admission.landed_at = snapshot.read_at
            # In the rollup for sure: found in the raw table a margin before this read.
            landed = (
                admission.landed_at is not None
                and snapshot.read_at - admission.landed_at >= LANDED_MARGIN
            )
            stale = all((k[0], k[1], k[3]) not in current for k, _ in admission.keys)
            forgotten = admission.started_at < forget_before
            if landed or stale or forgotten:
                self._release(event_id)
        # Values of a past period, and values back to nothing.
        for key in [
            k for k, v in self._local.items() if (k[0], k[1], k[3]) not in current or not v
        ]:
            del self._local[key]
        self.stats.refreshes += 1

    async def refresh(self) -> bool:
        if self._source is None:
            return False
        blocked, self._unsent_blocked = self._unsent_blocked, Counter()
        try:
            snapshot = await asyncio.to_thread(self.read, blocked)
        except Exception as error:  # the warehouse is down: keep the last spend, go on
            self._unsent_blocked.update(blocked)
            self.stats.refresh_failures += 1
            log.warning("budget spend not refreshed (the last one stands): %s", error)
            return False
        self.apply(snapshot)
        return True

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            await self.refresh()
            await wait_event(stop, self._refresh_seconds)

    def prometheus_text(self) -> str:
        """Refusals and refreshes; spend, limit and what remains of each budget without
        ``"*"`` (one series per budget: a default budget's values would be a series per user
        or tag, which no Prometheus should hold)."""
        lines = [
            "# HELP meterline_budget_blocked_total Requests a hard budget refused.",
            "# TYPE meterline_budget_blocked_total counter",
        ]
        for team_id, budgets in self._hard.items():
            for budget in budgets:
                labels = f'team="{team_id}",budget="{budget.id}"'
                lines.append(
                    f"meterline_budget_blocked_total{{{labels}}} "
                    f"{self.stats.blocked[(team_id, budget.id)]}"
                )
        gauges: dict[str, list[str]] = {"spend": [], "limit": [], "remaining": []}
        now = self._clock()
        for team_id, budgets in self._hard.items():
            for budget in budgets:
                if budget.wildcards:
                    continue
                period = self._window(team_id, budget, now)
                key = (team_id, budget.id, (), period.start)
                committed = self._committed.get((team_id, budget.id, period.start), {})
                spent = committed.get((), ZERO) + self._local.get(key, ZERO)
                limit = budget.limit(())
                labels = f'team="{team_id}",budget="{budget.id}"'
                gauges["spend"].append(f"{{{labels}}} {spent:f}")
                gauges["limit"].append(f"{{{labels}}} {limit:f}")
                gauges["remaining"].append(f"{{{labels}}} {max(limit - spent, ZERO):f}")
        helps = {
            "spend": "What a hard budget without '*' has spent or reserved this period (USD).",
            "limit": "A hard budget's limit (USD).",
            "remaining": "What is left of a hard budget this period (USD).",
        }
        for name, series in gauges.items():
            metric = f"meterline_budget_{name}_usd"
            lines += [f"# HELP {metric} {helps[name]}", f"# TYPE {metric} gauge"]
            lines += [f"{metric}{line}" for line in series]
        lines += [
            "# HELP meterline_budget_refreshes_total Reads of the budgets' committed spend.",
            "# TYPE meterline_budget_refreshes_total counter",
            f"meterline_budget_refreshes_total {self.stats.refreshes}",
            "# HELP meterline_budget_refresh_failures_total Reads of the committed spend "
            "that failed (the last one stands).",
            "# TYPE meterline_budget_refresh_failures_total counter",
            f"meterline_budget_refresh_failures_total {self.stats.refresh_failures}",
        ]
        return "\n".join(lines) + "\n"

    def reserved(self) -> Mapping[Key, Decimal]:
        """What this process counts on top of the warehouse, per budget value (tests, metrics)."""
        return dict(self._local)


class SettlingPublisher:
    """A publisher that tells the guard each request's usage as its event goes out."""

    def __init__(self, inner: UsagePublisher, guard: BudgetGuard):
        self._inner = inner
        self._guard = guard

    async def start(self) -> None:
        await self._inner.start()

    async def stop(self) -> None:
        await self._inner.stop()

    def publish(self, event: UsageEvent) -> None:
        try:
            self._guard.settle(event)
        except Exception:  # a publisher never raises: the event goes out all the same
            log.exception("settling the budget reservation of %s failed", event.event_id)
        self._inner.publish(event)

    def metrics(self) -> Mapping[str, int]:
        return self._inner.metrics()
