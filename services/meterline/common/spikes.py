"""Spike detection: an hour in which a team, or one value of a dimension it watches (a
user, a tag, a model, a provider), spent far more than it usually does.

The method. The hour evaluated is a whole UTC hour ``H`` (the one just completed, or the
one in progress). Each value's *history* is its spend in the ``baseline_days * 24`` hours
before ``H``, read from the hourly rollup. Its baseline is the larger of

- the **same hour**: its mean spend in ``H``'s hour of day on each of those days (a day
  without spend counts as zero), so a peak that comes every day at the same hour is its own
  baseline and not a spike; and
- its **typical hour**: its mean spend over the hours of the window in which it spent
  anything, so a value whose busy hour moves around (a user who works at ten one day and at
  three the next) is not a spike at every new hour, nor is one whose spend is spread thin.

A value without any spend in the window (a new user, a new tag) has no history of its own:
its baseline is the typical hour of the dimension's values together (the mean over every
value and hour with spend), so a new user spending what users usually spend in an hour is
not a spike, and one spending ``factor`` times that is. With no history in the dimension
at all (a new team) there is nothing to compare with, and nothing is a spike.

An hour is a spike when its spend is above ``factor`` times its baseline *and* above
``min_spend_usd``: the floor keeps a quiet user's few cents against a baseline of fractions
of a cent from raising alerts.

Plain means over a fixed window, not an exponentially weighted average: the result depends
only on the rollup's rows, so evaluating an hour twice gives the same spikes whatever was
evaluated before, and there is no state to keep between runs. A spike in the window raises
the baseline by at most ``1 / baseline_days`` of itself for the same hour.

The team total is always watched; ``dimensions`` adds the per-value ones. A request with
several tags counts once for each of its tags; a request without a user is no user's. BYOK
requests cost nothing under ``total_cost``: count ``market_cost`` to watch them too.

Reads are blocking calls: callers run them in a worker thread."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import ROUND_CEILING, Decimal
from typing import Any, Final, Literal, Protocol, get_args

from clickhouse_connect.driver.client import Client
from pydantic import BaseModel, ConfigDict, Field, field_validator

SpikeDimension = Literal["user", "tag", "model", "provider"]
SPIKE_DIMENSIONS: Final[tuple[SpikeDimension, ...]] = get_args(SpikeDimension)
Watched = Literal["team", "user", "tag", "model", "provider"]
"""What a spike is about: ``team`` for the team total, else a dimension."""
Counts = Literal["total_cost", "market_cost"]

TEAM_TOTAL: Final = ""
"""The value of the team dimension: there is only one."""

ZERO: Final = Decimal(0)
HOUR: Final = timedelta(hours=1)
# The rollup's scale. A mean that does not come out even is rounded up, so an hour of
# exactly ``factor`` times it ($4 against 3 x 12/9) is not a spike by a rounding.
SCALE: Final = Decimal("1e-12")


class SpikeSettings(BaseModel):
    """A team's spike detection, ``spikes = {...}`` in its configuration."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    dimensions: list[SpikeDimension] = []
    """Dimensions watched per value, besides the team total (always watched)."""
    factor: Decimal = Field(default=Decimal(3), gt=1, max_digits=12, decimal_places=4)
    """An hour is a spike above ``factor`` times its baseline."""
    min_spend_usd: Decimal = Field(default=Decimal("1.00"), ge=0, max_digits=24, decimal_places=12)
    """...and above this much: smaller hours are never spikes."""
    baseline_days: int = Field(default=7, ge=1, le=31)
    counts: Counts = "total_cost"
    """``total_cost``: what the team is charged; ``market_cost``: list price, BYOK too."""

    @field_validator("dimensions")
    @classmethod
    def _each_once(cls, dimensions: list[SpikeDimension]) -> list[SpikeDimension]:
        return [d for d in SPIKE_DIMENSIONS if d in dimensions]


@dataclass(frozen=True, slots=True)
class History:
    """Spend in the window before the evaluated hour: a value's, or a whole dimension's
    (then ``hours`` counts each value's hours)."""

    spend: Decimal = ZERO
    hours: int = 0
    """Hours with any spend."""
    same_hour: Decimal = ZERO
    """Spend in the evaluated hour's hour of day, on all the window's days together."""


def baseline(history: History, peers: History, days: int) -> Decimal | None:
    """What an hour is compared with; None: nothing to compare with."""
    if history.hours:
        found = max(history.same_hour / days, history.spend / history.hours)
    elif peers.hours:
        found = peers.spend / peers.hours
    else:
        return None
    return found.quantize(SCALE, rounding=ROUND_CEILING)


def is_spike(spend: Decimal, base: Decimal, settings: SpikeSettings) -> bool:
    return spend > settings.min_spend_usd and spend > settings.factor * base


@dataclass(frozen=True, slots=True)
class Spike:
    team_id: str
    dimension: Watched
    value: str
    """The dimension's value; ``TEAM_TOTAL`` for the team."""
    hour: datetime
    """The hour's start, UTC."""
    spend: Decimal
    baseline: Decimal
    factor: Decimal

    @property
    def key(self) -> tuple[str, Watched, str, datetime]:
        """One alert per key: an hour evaluated again (or while in progress, then after)
        is the same spike, with its spend so far."""
        return (self.team_id, self.dimension, self.value, self.hour)


@dataclass(frozen=True, slots=True)
class DimensionSpend:
    """One dimension's spend for spike detection: each value that spent in the evaluated
    hour, that hour's spend and its history; and the dimension's history, every value's."""

    current: Mapping[str, tuple[Decimal, History]]
    peers: History


class SpikeSource(Protocol):
    def read(
        self, team_id: str, dimension: Watched, hour: datetime, days: int, counts: Counts
    ) -> DimensionSpend:
        """Blocking. ``hour``: the evaluated hour's start, UTC; the window is the ``days *
        24`` hours before it."""
        ...


def evaluated_hour(now: datetime, *, in_progress: bool = False) -> datetime:
    """The hour just completed at ``now``, or the one in progress. An hour in progress only
    gains spend, so a spike found in it early is still one when it ends."""
    start = now.astimezone(UTC).replace(minute=0, second=0, microsecond=0)
    return start if in_progress else start - HOUR


def find_spikes(
    source: SpikeSource,
    team_id: str,
    settings: SpikeSettings,
    now: datetime,
    *,
    in_progress: bool = False,
) -> list[Spike]:
    """The team's spikes in the hour ``evaluated_hour`` picks, team total first, then by
    dimension and value. Events land in the rollup a consumer batch after their request:
    evaluate a completed hour a little after its end."""
    hour = evaluated_hour(now, in_progress=in_progress)
    spikes: list[Spike] = []
    for dimension in watched(settings):
        read = source.read(team_id, dimension, hour, settings.baseline_days, settings.counts)
        for value in sorted(read.current):
            spend, history = read.current[value]
            base = baseline(history, read.peers, settings.baseline_days)
            if base is not None and is_spike(spend, base, settings):
                spikes.append(Spike(team_id, dimension, value, hour, spend, base, settings.factor))
    return spikes


def watched(settings: SpikeSettings) -> Iterator[Watched]:
    yield "team"
    yield from settings.dimensions


# ---- The warehouse: the hourly rollup, two queries per dimension. ----

KEY: Final[dict[Watched, str]] = {
    "team": "''",
    "user": "user_id",
    # A request with several tags is one row in usage_hourly; arrayJoin counts it once for
    # each of them.
    "tag": "arrayJoin(tags)",
    "model": "model",
    "provider": "provider",
}


def hourly_query(dimension: Watched, counts: Counts, *, until: str) -> str:
    """Each value's spend in each hour with any, from the window's start up to ``until``
    (a comparison with the ``hour`` parameter)."""
    where = [
        "team_id = {team:String}",
        "hour >= {start:DateTime('UTC')}",
        f"hour {until} {{hour:DateTime('UTC')}}",
    ]
    if dimension == "user":
        where.append("user_id != ''")
    return (
        f"SELECT {KEY[dimension]} AS value, hour, sum({counts}) AS spend FROM usage_hourly"
        f" WHERE {' AND '.join(where)} GROUP BY value, hour HAVING spend > 0"
    )


def current_query(dimension: Watched, counts: Counts) -> str:
    return (
        "SELECT value, sumIf(spend, hour = {hour:DateTime('UTC')}) AS current,"
        " sumIf(spend, hour < {hour:DateTime('UTC')}) AS before,"
        " countIf(hour < {hour:DateTime('UTC')}) AS hours,"
        " sumIf(spend, hour < {hour:DateTime('UTC')} AND toHour(hour) = {hour_of_day:UInt8})"
        " AS same_hour"
        f" FROM ({hourly_query(dimension, counts, until='<=')})"
        " GROUP BY value HAVING current > 0"
    )


def peers_query(dimension: Watched, counts: Counts) -> str:
    return (
        "SELECT sum(spend), count(), sumIf(spend, toHour(hour) = {hour_of_day:UInt8})"
        f" FROM ({hourly_query(dimension, counts, until='<')})"
    )


class WarehouseSpikes:
    """``SpikeSource`` on ClickHouse (a server, or the embedded engine)."""

    def __init__(self, client_factory: Callable[[], Client]):
        self._client_factory = client_factory
        self._client: Client | None = None

    def _query(self, sql: str, parameters: dict[str, Any]) -> list[Any]:
        if self._client is None:
            self._client = self._client_factory()
        return list(self._client.query(sql, parameters=parameters).result_rows)

    def read(
        self, team_id: str, dimension: Watched, hour: datetime, days: int, counts: Counts
    ) -> DimensionSpend:
        parameters = {
            "team": team_id,
            "start": hour - days * 24 * HOUR,
            "hour": hour,
            "hour_of_day": hour.hour,
        }
        current = {
            str(value): (
                Decimal(spend),
                History(Decimal(before), int(hours), Decimal(same_hour)),
            )
            for value, spend, before, hours, same_hour in self._query(
                current_query(dimension, counts), parameters
            )
        }
        [(spend, hours, same_hour)] = self._query(peers_query(dimension, counts), parameters)
        return DimensionSpend(current, History(Decimal(spend), int(hours), Decimal(same_hour)))

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None


@dataclass(slots=True)
class MemorySpikes:
    """``SpikeSource`` for unit tests: each (team, dimension, value, hour)'s spend, as the
    test sets it (``counts`` is not told apart)."""

    spend: dict[tuple[str, Watched, str, datetime], Decimal] = field(default_factory=dict)

    def add(
        self, team_id: str, dimension: Watched, value: str, hour: datetime, spend: Decimal
    ) -> None:
        key = (team_id, dimension, value, hour)
        self.spend[key] = self.spend.get(key, ZERO) + spend

    def read(
        self, team_id: str, dimension: Watched, hour: datetime, days: int, counts: Counts
    ) -> DimensionSpend:
        start = hour - days * 24 * HOUR
        now: dict[str, Decimal] = {}
        before: dict[str, History] = {}
        for (team, watched_, value, at), spend in self.spend.items():
            if team != team_id or watched_ != dimension or spend <= 0:
                continue
            if at == hour:
                now[value] = spend
            elif start <= at < hour:
                before[value] = _plus(before.get(value, History()), spend, at.hour == hour.hour)
        peers = History()
        for history in before.values():
            peers = History(
                peers.spend + history.spend,
                peers.hours + history.hours,
                peers.same_hour + history.same_hour,
            )
        return DimensionSpend(
            {value: (spend, before.get(value, History())) for value, spend in now.items()}, peers
        )


def _plus(history: History, spend: Decimal, same_hour: bool) -> History:
    return History(
        history.spend + spend,
        history.hours + 1,
        history.same_hour + (spend if same_hour else ZERO),
    )
