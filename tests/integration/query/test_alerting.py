"""Which alerts the query service raises, decided on the real engine's rollups with the
clock injected: each budget value's thresholds once, a reset in a period's first hour, a
spike of the team's total; evaluating again raises nothing new."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from meterline.common.alerts import AlertDelivery, MemoryAlertStore, MemorySender
from meterline.common.clickhouse import RAW_COLUMNS, connect
from meterline.common.config import GatewayConfig
from meterline.common.migrations import migrate
from meterline.common.pricing import PerMillionRates, StaticPrices
from meterline.consumer.enrich import Enricher
from meterline.query.alerting import Alerter
from meterline.query.warehouse import Warehouse
from tests.support.events import usage_event

pytestmark = pytest.mark.clickhouse

# A million input tokens cost $1.
RATES = PerMillionRates.text(Decimal(1), Decimal(0), Decimal(0), Decimal(0))
NOW = datetime(2026, 3, 9, 15, 10, tzinfo=UTC)
CONFIG = GatewayConfig.model_validate(
    {
        "teams": [
            {
                "id": "acme",
                "budgets": [
                    {
                        "id": "per-user",
                        "amount_usd": "1",
                        "scope": {"user": "*"},
                        "period": "daily",
                        "mode": "soft",
                        "thresholds": [50, 100],
                    },
                    {"id": "team", "amount_usd": "1000", "alert_on_reset": True},
                ],
                "spikes": {"min_spend_usd": "0.5"},
            }
        ]
    }
)


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def warehouse(clickhouse_url: str) -> Iterator[Warehouse]:
    database = f"test_{uuid.uuid4().hex[:12]}"
    client = connect(clickhouse_url, database)
    migrate(client)
    enricher = Enricher(StaticPrices({("openai", "gpt-x"): RATES}), CONFIG)
    rows: list[Any] = []
    # A quiet week: ten cents at 14:00 every day, then $3.10 in the evaluated hour.
    for day in range(1, 8):
        at = NOW.replace(hour=14, minute=20) - timedelta(days=day)
        rows.append(enricher.row(usage_event(started_at=at, input_tokens=100_000, output_tokens=0)))
    for user, millions in (("ana", "0.6"), ("bo", "1.2"), ("cy", "1.3")):
        tokens = int(Decimal(millions) * 1_000_000)
        at = NOW.replace(hour=14, minute=30)
        rows.append(
            enricher.row(
                usage_event(started_at=at, user_id=user, input_tokens=tokens, output_tokens=0)
            )
        )
    client.insert("usage_events", rows, column_names=list(RAW_COLUMNS))
    served = Warehouse(lambda: connect(clickhouse_url, database), 2, 30)
    try:
        yield served
    finally:
        client.command(f"DROP DATABASE IF EXISTS {database}")


def test_thresholds_resets_and_spikes_are_raised_once(warehouse: Warehouse) -> None:
    store = MemoryAlertStore()
    delivery = AlertDelivery(store, MemorySender(), CONFIG)
    clock = Clock(NOW)
    alerter = Alerter(CONFIG, warehouse, delivery, clock=clock)

    raised = asyncio.run(alerter.evaluate())
    thresholds = sorted(
        (dict(a.scope)["user"], a.threshold_percent) for a in raised if a.kind == "budget_threshold"
    )
    assert thresholds == [("ana", 50), ("bo", 50), ("bo", 100), ("cy", 50), ("cy", 100)]
    [spike] = [a for a in raised if a.kind == "spike"]
    assert spike.subject == "team" and spike.scope == ()
    assert spike.period_start == NOW.replace(hour=14, minute=0)
    assert spike.spend_usd == Decimal("3.1") and spike.baseline_usd == Decimal("0.1")
    # The team budget is monthly: its period began on the 1st, far more than an hour ago.
    assert not [a for a in raised if a.kind == "budget_reset"]
    bo = next(a for a in raised if a.scope == (("user", "bo"),) and a.threshold_percent == 100)
    assert bo.limit_usd == Decimal(1) and bo.spend_usd == Decimal("1.2")
    assert "per-user (user=bo)" in bo.message and "100%" in bo.message

    # Again, and from another process (a replica, a restart): nothing new.
    assert asyncio.run(alerter.evaluate()) == []
    again = Alerter(CONFIG, warehouse, delivery, clock=clock)
    repeated = asyncio.run(again.evaluate())
    assert {a.alert_id for a in repeated} == {a.alert_id for a in raised}
    assert len(store.alerts) == len(raised)

    # Ten minutes into April: the monthly budget reset; the day's spend is behind it.
    clock.now = datetime(2026, 4, 1, 0, 10, tzinfo=UTC)
    [reset] = asyncio.run(alerter.evaluate())
    assert reset.kind == "budget_reset" and reset.subject == "team"
    assert reset.period_start == datetime(2026, 4, 1, tzinfo=UTC)
