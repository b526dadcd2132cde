"""The ``AlertStore`` contract, against the memory store and the one in the warehouse: an
alert reads back equal to itself, raising it again keeps one alert and one delivery per
webhook and never resets a tried delivery, only pending deliveries that are due are due,
and the state with the most attempts is the one kept."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from clickhouse_connect.driver.client import Client

from meterline.common.alerts import AlertStore, ClickHouseAlertStore, MemoryAlertStore
from tests.support.alerts import budget_alert

LATER = datetime(2100, 1, 1, tzinfo=UTC)


@pytest.fixture(params=["memory", pytest.param("clickhouse", marks=pytest.mark.clickhouse)])
def make_store(request: pytest.FixtureRequest) -> Callable[[], AlertStore]:
    """A store; two calls see the same alerts (for the warehouse: two replicas, or one
    process after a restart)."""
    if request.param == "memory":
        store = MemoryAlertStore()
        return lambda: store
    client: Client = request.getfixturevalue("clickhouse")
    return lambda: ClickHouseAlertStore(client)


async def test_an_alert_reads_back_equal_to_itself(make_store: Callable[[], AlertStore]) -> None:
    store = make_store()
    alerts = [
        budget_alert(),
        budget_alert(
            kind="spike",
            subject="model",
            scope=(("model", "gpt-4o"),),
            threshold_percent=None,
            spend_usd=Decimal("0.000000000001"),
            limit_usd=None,
            baseline_usd=Decimal("12345678901234567890.5"),
            message="Ünïcode spend spike “quoted”",
        ),
        budget_alert(kind="budget_reset", threshold_percent=None, scope=()),
    ]
    for alert in alerts:
        await store.raise_alert(alert, [])
    for alert in alerts:
        assert await make_store().alert(alert.alert_id) == alert
    assert await store.alert("alert_unknown") is None


async def test_raising_again_keeps_one_alert_and_never_resets_a_delivery(
    make_store: Callable[[], AlertStore],
) -> None:
    first = budget_alert(raised_at=datetime(2026, 3, 20, 9, tzinfo=UTC))
    store = make_store()
    await store.raise_alert(first, ["ops", "chat"])
    [due_chat, due_ops] = await store.due(LATER, 10)
    assert (due_chat.delivery.webhook, due_ops.delivery.webhook) == ("chat", "ops")
    assert due_ops.alert == first and due_ops.delivery.attempts == 0
    delivered_at = datetime(2026, 3, 20, 9, 0, 1, tzinfo=UTC)
    await store.record(
        replace(due_ops.delivery, status="delivered", attempts=1, delivered_at=delivered_at)
    )

    again = budget_alert(raised_at=datetime(2026, 3, 20, 10, tzinfo=UTC), spend_usd=Decimal(90))
    await make_store().raise_alert(again, ["ops", "chat"])
    assert await store.alert(first.alert_id) == first
    states = await store.deliveries(first.alert_id)
    assert [(d.webhook, d.status, d.attempts) for d in states] == [
        ("chat", "pending", 0),
        ("ops", "delivered", 1),
    ]
    assert states[1].delivered_at == delivered_at
    assert [d.delivery.webhook for d in await store.due(LATER, 10)] == ["chat"]


async def test_only_pending_deliveries_that_are_due_are_due(
    make_store: Callable[[], AlertStore],
) -> None:
    store = make_store()
    raised = datetime(2026, 3, 20, 9, tzinfo=UTC)
    alerts = [budget_alert(threshold_percent=p, raised_at=raised) for p in (50, 80, 100)]
    for alert in alerts:
        await store.raise_alert(alert, ["ops"])
    [a50, a80, a100] = await store.due(raised, 10)
    assert [d.alert for d in (a50, a80, a100)] == sorted(
        alerts, key=lambda a: a.alert_id
    )  # same due time: by id
    soon = raised + timedelta(minutes=5)
    await store.record(replace(a50.delivery, attempts=1, next_attempt_at=soon, last_error="x"))
    await store.record(replace(a80.delivery, status="failed", attempts=1, last_http_status=410))
    assert [d.alert for d in await store.due(raised, 10)] == [a100.alert]
    assert [d.alert for d in await store.due(soon, 10)] == [a100.alert, a50.alert]
    assert [d.alert for d in await store.due(soon, 1)] == [a100.alert]
    [retried] = [d.delivery for d in await store.due(soon, 10) if d.alert == a50.alert]
    assert (retried.attempts, retried.last_error) == (1, "x")


async def test_the_state_with_the_most_attempts_is_kept(
    make_store: Callable[[], AlertStore],
) -> None:
    store = make_store()
    alert = budget_alert()
    await store.raise_alert(alert, ["ops"])
    [due] = await store.due(LATER, 10)
    now = datetime(2026, 3, 20, 9, tzinfo=UTC)
    third = replace(
        due.delivery,
        status="delivered",
        attempts=3,
        last_attempt_at=now,
        last_http_status=200,
        delivered_at=now,
    )
    await store.record(third)
    await store.record(replace(due.delivery, attempts=2, last_error="late record of attempt 2"))
    assert await make_store().deliveries(alert.alert_id) == [third]
    assert await store.due(LATER, 10) == []
