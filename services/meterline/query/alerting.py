"""Which alerts are due, decided from the rollups every ``METERLINE_ALERT_EVALUATE_SECONDS``
and handed to the delivery (``common/alerts``), which stores and sends them.

- **Thresholds**: each budget value (configured or made through the API, hard or soft)
  whose spend this period reached a threshold's share of its limit raises one
  ``budget_threshold`` alert per threshold, for that value and period.
- **Resets**: a budget with ``alert_on_reset`` raises a ``budget_reset`` alert in the first
  hour of each new period.
- **Spikes**: the hour that ended at least ``SPIKE_SETTLE`` ago, per team and the
  dimensions it watches (``common/spikes``), raises a ``spike`` alert per spike.

An alert's id is a hash of what makes it the same alert (team, kind, budget or dimension,
value, period or hour, threshold), so evaluating again, another query replica evaluating
at the same time, or a restart raise it again harmlessly: the store keeps it once and it
is delivered once per webhook."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any, Final

from meterline.common.alerts import Alert, AlertDelivery
from meterline.common.budget_spend import NEVER_RESETS, SpendAsk, WarehouseSpend, api_budgets
from meterline.common.budgets import Budget, BudgetValue, budget_timezone, describe, window
from meterline.common.config import GatewayConfig, TeamConfig
from meterline.common.spikes import TEAM_TOTAL, Spike, WarehouseSpikes, find_spikes
from meterline.common.waiting import wait_event
from meterline.query.warehouse import Warehouse

log = logging.getLogger(__name__)

SPIKE_SETTLE: Final = timedelta(minutes=5)
"""How long after an hour ends it is evaluated for spikes: its last events reach the
rollup a consumer batch after they happened."""
RESET_WINDOW: Final = timedelta(hours=1)
MAX_REMEMBERED: Final = 100_000


def _usd(amount: Decimal) -> str:
    return f"${amount.quantize(Decimal('0.01')):f}" if amount >= 1 else f"${amount.normalize():f}"


def threshold_alerts(
    team: TeamConfig,
    budget: Budget,
    spent: dict[BudgetValue, Decimal],
    period_start: datetime | None,
    resets_at: datetime | None,
    now: datetime,
) -> list[Alert]:
    """One alert per threshold each value's spend has reached (a limit of 0: any spend)."""
    alerts = []
    for value, spend in spent.items():
        limit = budget.limit(value)
        for percent in budget.thresholds:
            if spend <= 0 or spend * 100 < limit * percent:
                continue
            resets = (
                f"it resets at {resets_at.isoformat().replace('+00:00', 'Z')}"
                if resets_at
                else "it does not reset"
            )
            alerts.append(
                Alert.new(
                    team_id=team.id,
                    kind="budget_threshold",
                    subject=budget.id,
                    scope=value,
                    period_start=period_start or NEVER_RESETS,
                    threshold_percent=percent,
                    spend_usd=spend,
                    limit_usd=limit,
                    message=(
                        f"Budget {budget.id} ({describe(value)}) of team {team.id} reached "
                        f"{percent}%: {_usd(spend)} of {_usd(limit)} ({budget.mode}); {resets}."
                    ),
                    raised_at=now,
                )
            )
    return alerts


def reset_alert(team: TeamConfig, budget: Budget, period_start: datetime, now: datetime) -> Alert:
    return Alert.new(
        team_id=team.id,
        kind="budget_reset",
        subject=budget.id,
        period_start=period_start,
        spend_usd=Decimal(0),
        limit_usd=budget.amount_usd,
        message=(
            f"Budget {budget.id} of team {team.id} reset: a new {budget.period} period began "
            f"at {period_start.isoformat().replace('+00:00', 'Z')}, limit "
            f"{_usd(budget.amount_usd)}."
        ),
        raised_at=now,
    )


def spike_alert(spike: Spike, now: datetime) -> Alert:
    what = "the team total" if spike.dimension == "team" else f"{spike.dimension} {spike.value}"
    scope = () if spike.value == TEAM_TOTAL else ((spike.dimension, spike.value),)
    return Alert.new(
        team_id=spike.team_id,
        kind="spike",
        subject=spike.dimension,
        scope=scope,
        period_start=spike.hour,
        spend_usd=spike.spend,
        baseline_usd=spike.baseline,
        message=(
            f"Spend spike for {what} of team {spike.team_id}: {_usd(spike.spend)} in the hour "
            f"from {spike.hour.isoformat().replace('+00:00', 'Z')}, against "
            f"{_usd(spike.baseline)} usually ({spike.factor}x the usual at most)."
        ),
        raised_at=now,
    )


class Alerter:
    def __init__(
        self,
        config: GatewayConfig,
        warehouse: Warehouse,
        delivery: AlertDelivery,
        *,
        evaluate_seconds: float = 30.0,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ):
        self._config = config
        self._warehouse = warehouse
        self._delivery = delivery
        self._evaluate_seconds = evaluate_seconds
        self._clock = clock
        self._raised: set[str] = set()
        """Alert ids this process raised already: raising again is harmless, but a write."""

    async def evaluate(self) -> list[Alert]:
        """Raise what is due and not raised yet by this process; the alerts raised."""
        now = self._clock()
        api = await self._warehouse.run(api_budgets)
        due: list[Alert] = []
        for team in self._config.teams:
            configured = {b.id for b in team.budgets}
            budgets = list(team.budgets) + [
                b for b in api.get(team.id, []) if b.id not in configured
            ]
            due += await self._budget_alerts(team, budgets, now)
            due += await self._spike_alerts(team, now)
        raised = []
        for alert in due:
            if alert.alert_id in self._raised:
                continue
            await self._delivery.raise_alert(alert)
            if len(self._raised) >= MAX_REMEMBERED:
                self._raised.clear()
            self._raised.add(alert.alert_id)
            raised.append(alert)
        return raised

    async def _budget_alerts(
        self, team: TeamConfig, budgets: list[Budget], now: datetime
    ) -> list[Alert]:
        if not budgets:
            return []
        periods = {b.id: window(b.period, budget_timezone(b, team.timezone), now) for b in budgets}
        ask = SpendAsk([(team.id, b, periods[b.id].start) for b in budgets], {})
        answer = await self._warehouse.run(lambda client: WarehouseSpend(lambda: client).read(ask))
        alerts = []
        for budget in budgets:
            period = periods[budget.id]
            spent = answer.committed.get((team.id, budget.id), {})
            alerts += threshold_alerts(team, budget, spent, period.start, period.resets_at, now)
            start = period.start
            if budget.alert_on_reset and start is not None and now - start < RESET_WINDOW:
                alerts.append(reset_alert(team, budget, start, now))
        return alerts

    async def _spike_alerts(self, team: TeamConfig, now: datetime) -> list[Alert]:
        settings = team.spikes

        def read(client: Any) -> list[Spike]:
            return find_spikes(
                WarehouseSpikes(lambda: client), team.id, settings, now - SPIKE_SETTLE
            )

        return [spike_alert(spike, now) for spike in await self._warehouse.run(read)]

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                await self.evaluate()
            except Exception as error:  # the warehouse is down: try again next round
                log.warning(
                    "alerts not evaluated (tried again in %ss): %s", self._evaluate_seconds, error
                )
            await wait_event(stop, self._evaluate_seconds)
