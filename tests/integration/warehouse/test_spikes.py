"""Spike detection on the real engine's hourly rollup, over eight days of generated traffic:
office hours with a peak at 14:00 every day, then on the eighth day at 14:00 one user at ten
times her usual hour on a new model, a new user's first request, a quiet user's few cents
over her usual fraction of a cent, and everyone else at their daily peak."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from meterline.common.clickhouse import RAW_COLUMNS, connect
from meterline.common.config import GatewayConfig, TeamConfig
from meterline.common.migrations import migrate
from meterline.common.pricing import PerMillionRates, StaticPrices
from meterline.common.spikes import TEAM_TOTAL, Spike, SpikeSettings, WarehouseSpikes, find_spikes
from meterline.consumer.enrich import Enricher
from tests.support.events import usage_event

pytestmark = pytest.mark.clickhouse

# A million input tokens cost $1, so an event's input in millions is its cost.
RATES = PerMillionRates.text(Decimal(1), Decimal(0), Decimal(0), Decimal(0))
FIRST_DAY = datetime(2026, 3, 2, tzinfo=UTC)
EVALUATED = datetime(2026, 3, 9, 14, tzinfo=UTC)
NOW = EVALUATED + timedelta(hours=1, minutes=5)
CHAT = ["feature:chat"]
DEE = ["feature:chat", "plan:pro"]

Request = tuple[str | None, list[str], str, str, datetime]
"""(user, tags, USD, model, started)."""


def office_day(day: datetime, user: str, tags: list[str]) -> Iterator[Request]:
    for hour in range(9, 18):
        yield user, tags, "4" if hour == 14 else "1", "gpt-x", day + timedelta(hours=hour)


def traffic() -> Iterator[Request]:
    for days in range(7):
        day = FIRST_DAY + timedelta(days=days)
        for user in ("ana", "bo", "cy"):
            yield from office_day(day, user, CHAT)
        yield from office_day(day, "dee", DEE)
        yield "zed", [], "0.01", "gpt-x", day + timedelta(hours=14, minutes=30)
    # The eighth day, up to the evaluated hour: the usual morning, then 14:00.
    eighth = FIRST_DAY + timedelta(days=7)
    for user, tags in (("ana", CHAT), ("bo", CHAT), ("cy", CHAT), ("dee", DEE)):
        for request in office_day(eighth, user, tags):
            if request[4] < EVALUATED:
                yield request
    for user in ("ana", "bo", "cy"):
        yield user, CHAT, "4", "gpt-x", EVALUATED + timedelta(minutes=10)
    # dee's one request with two tags, on a model the team never used: ten times her 14:00.
    yield "dee", DEE, "40", "gpt-y", EVALUATED + timedelta(minutes=20)
    # eve's first request ever, about what a user spends in a busy hour.
    yield "eve", CHAT, "3", "gpt-x", EVALUATED + timedelta(minutes=30)
    # fifty times zed's usual, but under the floor.
    yield "zed", [], "0.50", "gpt-x", EVALUATED + timedelta(minutes=40)
    # In the hour in progress at NOW: not evaluated.
    yield "ana", CHAT, "100", "gpt-x", NOW - timedelta(minutes=1)


@pytest.fixture(scope="module")
def source(clickhouse_url: str) -> Iterator[WarehouseSpikes]:
    # One database for the module: the tests only read, and migrating takes seconds.
    database = f"test_spikes_{uuid.uuid4().hex[:12]}"
    clickhouse = connect(clickhouse_url, database)
    migrate(clickhouse)
    prices = StaticPrices({("openai", "gpt-x"): RATES, ("openai", "gpt-y"): RATES})
    enricher = Enricher(prices, GatewayConfig(teams=[TeamConfig(id="acme")]))
    rows = [
        enricher.row(
            usage_event(
                event_id=f"00000000-0000-0000-0000-{n:012d}",
                user_id=user,
                tags=tags,
                input_tokens=int(Decimal(usd) * 1_000_000),
                output_tokens=0,
                model=model,
                started_at=started,
            )
        )
        for n, (user, tags, usd, model, started) in enumerate(traffic(), start=1)
    ]
    clickhouse.insert("usage_events", rows, column_names=list(RAW_COLUMNS))
    yield WarehouseSpikes(lambda: clickhouse)
    clickhouse.command(f"DROP DATABASE IF EXISTS {database}")


def found(spike: Spike) -> tuple[str, str, Decimal, Decimal]:
    return spike.dimension, spike.value, spike.spend, spike.baseline


def test_the_spike_is_found_and_the_peak_the_new_user_and_the_floor_are_not(
    source: WarehouseSpikes,
) -> None:
    settings = SpikeSettings(dimensions=["user", "tag", "model", "provider"])
    spikes = find_spikes(source, "acme", settings, NOW)
    assert {s.hour for s in spikes} == {EVALUATED}
    assert [found(s) for s in spikes] == [
        # Every 14:00 spent $16.01; the team's typical hour is $5.33.
        ("team", TEAM_TOTAL, Decimal("55.5"), Decimal("16.01")),
        ("user", "dee", Decimal(40), Decimal(4)),
        # dee's $40 counts once for each of its two tags; everyone's 14:00 was $16.
        ("tag", "feature:chat", Decimal(55), Decimal(16)),
        ("tag", "plan:pro", Decimal(40), Decimal(4)),
        # A model without history against the typical model hour, gpt-x's $5.33.
        ("model", "gpt-y", Decimal(40), Decimal("5.334444444445")),
        ("provider", "openai", Decimal("55.5"), Decimal("16.01")),
    ]
    # eve (new, $3 against the typical user hour of $1.30), ana, bo and cy (their daily
    # peak), zed (under the floor) and gpt-x ($15.50 against its $16.01) are not spikes.
    assert find_spikes(source, "acme", settings, NOW) == spikes


def test_the_floor_lowered_finds_the_quiet_user_and_an_ordinary_hour_has_no_spike(
    source: WarehouseSpikes,
) -> None:
    low_floor = SpikeSettings(dimensions=["user"], min_spend_usd=Decimal("0.10"))
    assert [found(s) for s in find_spikes(source, "acme", low_floor, NOW)] == [
        ("team", TEAM_TOTAL, Decimal("55.5"), Decimal("16.01")),
        ("user", "dee", Decimal(40), Decimal(4)),
        ("user", "zed", Decimal("0.5"), Decimal("0.01")),
    ]
    assert find_spikes(source, "acme", low_floor, EVALUATED) == []
    assert find_spikes(source, "another-team", low_floor, NOW) == []


def test_the_hour_in_progress_counts_what_it_has_so_far(source: WarehouseSpikes) -> None:
    settings = SpikeSettings(dimensions=["user"])
    # ana's $100 at 15:00: against her 15:00 of $1, and her typical hour of $1.33.
    assert [found(s) for s in find_spikes(source, "acme", settings, NOW, in_progress=True)] == [
        # The team's window now has the evaluated hour's $55.50 instead of a day's $16.01.
        ("team", TEAM_TOTAL, Decimal(100), Decimal("5.961269841270")),
        ("user", "ana", Decimal(100), Decimal("1.333333333334")),
    ]
