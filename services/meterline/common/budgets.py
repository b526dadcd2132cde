"""Budgets: how much a team lets a scope of its traffic spend in a period, and what happens
when it is spent (``hard``: the gateway refuses before forwarding; ``soft``: alerts only).

A budget's scope names report dimensions (``api_key_name``, ``user``, ``tag``, ``provider``,
``model``) with a value each, or ``"*"`` for every value: ``{user = "*"}`` is one budget of
the same amount for each user (a *default* budget, with per-value ``overrides``), and
``{user = "*", tag = "feature:summarize"}`` each user's spend on that feature. An empty
scope is the whole team. Each combination of the ``"*"`` dimensions' values is a *budget
value* with its own spend; a request counts once towards each value it belongs to (a
request with two tags counts once for each tag's value of a ``{tag = "*"}`` budget, and
once, not twice, for a budget on one of them).

The period's boundaries are midnights (Mondays for ``weekly``, the 1st for ``monthly``) in
the budget's time zone; ``none`` never resets. Spend is read from the hourly rollup, so a
period that starts at a half hour in UTC (India, say) also counts the half hour before it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from functools import cached_property
from itertools import product
from typing import Final, Literal, get_args
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

Dimension = Literal["api_key_name", "user", "tag", "provider", "model"]
DIMENSIONS: Final[tuple[Dimension, ...]] = get_args(Dimension)
Period = Literal["daily", "weekly", "monthly", "none"]
PERIODS: Final[tuple[Period, ...]] = get_args(Period)
EVERY: Final = "*"
"""A scope value meaning every value of its dimension."""

QUOTA_EXCEEDED: Final = "quota_for_entity_exceeded"
"""The error code of a request refused by a hard budget (the reference gateway's)."""


class Budget(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field(pattern=r"^[A-Za-z0-9_.:-]{1,64}$")
    """Unique within the team; names the budget in errors, the status and alerts."""
    amount_usd: Decimal = Field(ge=0, max_digits=24, decimal_places=12)
    scope: dict[Dimension, str] = {}
    period: Period = "monthly"
    timezone: str | None = None
    """An IANA name; None: the team's ``timezone``."""
    counts: Literal["total_cost", "market_cost"] = "total_cost"
    """``total_cost``: what the team is charged (its price overrides; BYOK costs nothing);
    ``market_cost``: the providers' list price."""
    include_byok: bool = False
    """Count requests made with the team's own provider keys too (with ``market_cost``:
    their list price)."""
    mode: Literal["hard", "soft"] = "hard"
    thresholds: list[int] = [50, 80, 100]
    """Percentages of the amount at which an alert is raised, once per period and value."""
    alert_on_reset: bool = False
    overrides: dict[str, Decimal] = {}
    """Amounts for single values of a default budget's one ``"*"`` dimension."""

    @field_validator("scope")
    @classmethod
    def _scope_values(cls, scope: dict[Dimension, str]) -> dict[Dimension, str]:
        for dimension, value in scope.items():
            if not value or len(value) > 256:
                raise ValueError(f"scope.{dimension}: a value of 1 to 256 characters, or '*'")
        return scope

    @field_validator("timezone")
    @classmethod
    def _known_timezone(cls, name: str | None) -> str | None:
        if name is not None:
            zone(name)
        return name

    @field_validator("thresholds")
    @classmethod
    def _sorted_thresholds(cls, thresholds: list[int]) -> list[int]:
        if any(not 1 <= t <= 1000 for t in thresholds):
            raise ValueError("thresholds are percentages from 1 to 1000")
        return sorted(set(thresholds))

    @model_validator(mode="after")
    def _overrides_need_one_wildcard(self) -> Budget:
        if self.overrides and len(self.wildcards) != 1:
            raise ValueError("overrides need a scope with exactly one '*' dimension")
        if any(amount < 0 for amount in self.overrides.values()):
            raise ValueError("overrides are amounts of 0 or more")
        return self

    # Cached: both are read for every request a hard budget checks.
    @cached_property
    def wildcards(self) -> tuple[Dimension, ...]:
        """The ``"*"`` dimensions, in ``DIMENSIONS`` order: what a budget value is keyed by."""
        return tuple(d for d in DIMENSIONS if self.scope.get(d) == EVERY)

    @cached_property
    def fixed(self) -> tuple[tuple[Dimension, str], ...]:
        return tuple((d, v) for d, v in self.scope.items() if v != EVERY)

    def limit(self, value: BudgetValue) -> Decimal:
        if self.overrides and value:
            return self.overrides.get(value[0][1], self.amount_usd)
        return self.amount_usd

    def counts_credential(self, credential_type: str) -> bool:
        return self.include_byok or credential_type != "byok"


BudgetValue = tuple[tuple[str, str], ...]
"""A budget value: its ``"*"`` dimensions' values, as (dimension, value) pairs; () for a
budget without ``"*"``."""


@dataclass(frozen=True, slots=True)
class RequestScope:
    """What a request is, in the terms a budget's scope is written in."""

    api_key_name: str
    user: str | None
    tags: Sequence[str]
    provider: str
    model: str
    credential_type: str

    def values(self, dimension: Dimension) -> Sequence[str]:
        if dimension == "tag":
            return self.tags
        if dimension == "user":
            return () if self.user is None else (self.user,)
        value: str = getattr(self, dimension)
        return (value,)


def budget_values(budget: Budget, request: RequestScope) -> list[BudgetValue]:
    """The values of ``budget`` that ``request`` counts towards (none: not in its scope).
    On every request's path, once per hard budget: the common shapes (no ``"*"``, one)
    are built without the general product."""
    if request.credential_type == "byok" and not budget.include_byok:
        return []
    for dimension, wanted in budget.fixed:
        if dimension == "tag":
            if wanted not in request.tags:
                return []
        elif getattr(request, dimension) != wanted:
            return []
    wildcards = budget.wildcards
    if not wildcards:
        return [()]
    if len(wildcards) == 1:
        dimension = wildcards[0]
        if dimension == "tag":
            return [(("tag", tag),) for tag in request.tags]
        value = getattr(request, dimension)
        return [] if value is None else [((dimension, value),)]
    choices = [request.values(d) for d in wildcards]
    return [tuple(zip(wildcards, combination, strict=True)) for combination in product(*choices)]


def zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(
            f"unknown time zone {name!r}: an IANA name such as Europe/Berlin"
        ) from None


@dataclass(frozen=True, slots=True)
class Window:
    """A period: spend counts from ``start`` (None: ever) until ``resets_at`` (None: never)."""

    start: datetime | None
    resets_at: datetime | None


def window(period: Period, timezone: str, now: datetime) -> Window:
    """The period ``now`` falls in, its boundaries as UTC instants."""
    if period == "none":
        return Window(None, None)
    local = now.astimezone(zone(timezone))
    midnight = local.replace(hour=0, minute=0, second=0, microsecond=0)
    if period == "daily":
        start, end = midnight, midnight + timedelta(days=1)
    elif period == "weekly":
        start = midnight - timedelta(days=local.weekday())
        end = start + timedelta(days=7)
    else:
        start = midnight.replace(day=1)
        end = (start + timedelta(days=32)).replace(day=1)
    # Wall-clock arithmetic, then resolved in the zone: a day with a daylight saving change
    # is 23 or 25 hours long, and the next midnight is still a midnight.
    zone_info = zone(timezone)
    return Window(
        start.replace(tzinfo=None).replace(tzinfo=zone_info).astimezone(UTC),
        end.replace(tzinfo=None).replace(tzinfo=zone_info).astimezone(UTC),
    )


def budget_timezone(budget: Budget, team_timezone: str) -> str:
    return budget.timezone or team_timezone


def describe(value: BudgetValue) -> str:
    """A budget value for people: ``user=ana, tag=feature:x``; ``team`` for ()."""
    return ", ".join(f"{d}={v}" for d, v in value) or "team"


def unique_ids(budgets: Sequence[Budget]) -> Sequence[Budget]:
    ids = [b.id for b in budgets]
    duplicates = sorted({i for i in ids if ids.count(i) > 1})
    if duplicates:
        raise ValueError(f"budget ids must be unique within a team: {', '.join(duplicates)}")
    return budgets


def by_id(budgets: Sequence[Budget]) -> Mapping[str, Budget]:
    return {b.id: b for b in budgets}
