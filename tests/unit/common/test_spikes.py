"""Spike detection's rule over numbers (the daily peak, a real spike, a new value, the floor,
a busy hour that moves), its settings, the hour evaluated, and ``find_spikes`` over the
in-memory source."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import pytest
from pydantic import ValidationError

from meterline.common.spikes import (
    TEAM_TOTAL,
    History,
    MemorySpikes,
    Spike,
    SpikeSettings,
    baseline,
    evaluated_hour,
    find_spikes,
    is_spike,
)

DEFAULTS = SpikeSettings()
# Office hours at $1, the 14:00 peak at $4: what every user of the team does every day.
WORKDAY = {h: "1" for h in range(9, 18)} | {14: "4"}
NO_HISTORY = History()


def daily(pattern: Mapping[int, str], at: int, days: int = 7) -> History:
    """The history of a value that spends ``pattern`` (hour of day: USD) every day, seen
    from hour ``at``."""
    return History(
        spend=days * sum((Decimal(v) for v in pattern.values()), Decimal(0)),
        hours=days * len(pattern),
        same_hour=days * Decimal(pattern.get(at, "0")),
    )


def spike(spend: str, history: History, peers: History = NO_HISTORY, **settings: Any) -> bool:
    chosen = SpikeSettings.model_validate(settings)
    base = baseline(history, peers, chosen.baseline_days)
    return base is not None and is_spike(Decimal(spend), base, chosen)


def test_the_daily_peak_is_its_own_baseline_and_a_spike_only_off_its_hour() -> None:
    assert baseline(daily(WORKDAY, at=14), NO_HISTORY, 7) == Decimal(4)
    assert not spike("4", daily(WORKDAY, at=14))
    # At ten the same hour is $1 and the typical hour 12/9, rounded up: $4 is not above
    # three times it, $4.01 is.
    assert baseline(daily(WORKDAY, at=10), NO_HISTORY, 7) == Decimal("1.333333333334")
    assert not spike("4", daily(WORKDAY, at=10))
    assert spike("4.01", daily(WORKDAY, at=10))


def test_ten_times_the_usual_hour_is_a_spike() -> None:
    assert spike("40", daily(WORKDAY, at=14))
    assert spike("10", daily(WORKDAY, at=11))


def test_exactly_factor_times_the_baseline_is_not_a_spike() -> None:
    assert not spike("12", daily(WORKDAY, at=14))
    assert spike("12.01", daily(WORKDAY, at=14))
    assert not spike("12.01", daily(WORKDAY, at=14), factor="3.5")


def test_a_new_value_is_compared_with_the_typical_hour_of_its_peers() -> None:
    peers = daily(WORKDAY, at=14, days=7 * 4)  # four users like that
    assert baseline(NO_HISTORY, peers, 7) == Decimal("1.333333333334")
    assert not spike("3", NO_HISTORY, peers)
    assert spike("15", NO_HISTORY, peers)


def test_without_any_history_in_the_dimension_nothing_is_a_spike() -> None:
    assert baseline(NO_HISTORY, NO_HISTORY, 7) is None
    assert not spike("1000", NO_HISTORY, NO_HISTORY)


def test_below_the_floor_nothing_is_a_spike() -> None:
    quiet = daily({14: "0.01"}, at=14)
    assert not spike("0.50", quiet)
    assert not spike("1.00", quiet)
    assert spike("1.01", quiet)
    assert spike("0.50", quiet, min_spend_usd="0.10")


def test_a_busy_hour_that_moves_is_not_a_spike_at_each_new_hour() -> None:
    # $10 in one hour a day, a different hour each day: never at 16:00 so far.
    moving = History(spend=Decimal(70), hours=7, same_hour=Decimal(0))
    assert not spike("10", moving)
    assert spike("31", moving)


def test_a_spike_in_the_window_raises_the_same_hour_by_a_days_share_only() -> None:
    with_spike_yesterday = daily(WORKDAY, at=14)
    with_spike_yesterday = History(
        with_spike_yesterday.spend + 36, with_spike_yesterday.hours, Decimal(6 * 4 + 40)
    )
    assert baseline(with_spike_yesterday, NO_HISTORY, 7) == Decimal("9.142857142858")
    assert spike("40", with_spike_yesterday)


def test_a_longer_window_divides_the_same_hour_by_its_days() -> None:
    two_weeks = daily(WORKDAY, at=14, days=14)
    assert baseline(two_weeks, NO_HISTORY, 14) == Decimal(4)


def test_settings_defaults_and_validation() -> None:
    assert DEFAULTS.dimensions == []
    assert (DEFAULTS.factor, DEFAULTS.min_spend_usd) == (Decimal(3), Decimal("1.00"))
    assert (DEFAULTS.baseline_days, DEFAULTS.counts) == (7, "total_cost")
    chosen = SpikeSettings.model_validate({"dimensions": ["tag", "user", "tag"], "factor": "2.5"})
    assert chosen.dimensions == ["user", "tag"]
    assert chosen.factor == Decimal("2.5")
    for bad in (
        {"factor": 1},
        {"min_spend_usd": -1},
        {"baseline_days": 0},
        {"dimensions": ["api_key_name"]},
        {"counts": "tokens"},
        {"window": 3},
    ):
        with pytest.raises(ValidationError):
            SpikeSettings.model_validate(bad)


def test_the_hour_evaluated_is_the_one_just_completed_or_the_one_in_progress() -> None:
    berlin = timezone(timedelta(hours=1))
    now = datetime(2026, 3, 9, 15, 5, 30, tzinfo=berlin)
    assert evaluated_hour(now) == datetime(2026, 3, 9, 13, tzinfo=UTC)
    assert evaluated_hour(now, in_progress=True) == datetime(2026, 3, 9, 14, tzinfo=UTC)


def at(day: int, hour: int) -> datetime:
    return datetime(2026, 3, day, hour, tzinfo=UTC)


@pytest.fixture
def source() -> MemorySpikes:
    memory = MemorySpikes()
    for day in range(2, 9):
        for hour, spend in WORKDAY.items():
            for user in ("ana", "bo"):
                memory.add("acme", "user", user, at(day, hour), Decimal(spend))
            memory.add("acme", "team", TEAM_TOTAL, at(day, hour), 2 * Decimal(spend))
            memory.add("other", "team", TEAM_TOTAL, at(day, hour), Decimal(spend))
    # 9 March at 14:00: ana at her peak, bo ten times it, cy new, another team's peak.
    memory.add("acme", "user", "ana", at(9, 14), Decimal(4))
    memory.add("acme", "user", "bo", at(9, 14), Decimal(40))
    memory.add("acme", "user", "cy", at(9, 14), Decimal(3))
    memory.add("acme", "team", TEAM_TOTAL, at(9, 14), Decimal(47))
    memory.add("other", "team", TEAM_TOTAL, at(9, 14), Decimal(4))
    return memory


def test_find_spikes_team_total_first_then_each_dimension_and_value(source: MemorySpikes) -> None:
    settings = SpikeSettings(dimensions=["user"])
    found = find_spikes(source, "acme", settings, at(9, 15) + timedelta(minutes=5))
    assert found == [
        Spike("acme", "team", TEAM_TOTAL, at(9, 14), Decimal(47), Decimal(8), Decimal(3)),
        Spike("acme", "user", "bo", at(9, 14), Decimal(40), Decimal(4), Decimal(3)),
    ]
    assert found[1].key == ("acme", "user", "bo", at(9, 14))
    # The same hour again, or while it was in progress: the same spikes.
    assert find_spikes(source, "acme", settings, at(9, 15)) == found
    assert find_spikes(source, "acme", settings, at(9, 14), in_progress=True) == found
    # Without the user dimension only the team total is watched.
    assert find_spikes(source, "acme", DEFAULTS, at(9, 15)) == found[:1]
    assert find_spikes(source, "other", settings, at(9, 15)) == []
    # An ordinary hour.
    assert find_spikes(source, "acme", settings, at(8, 11)) == []
