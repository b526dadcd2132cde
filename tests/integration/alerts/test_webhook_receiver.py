"""Delivery over real HTTP to a receiver on this machine that checks the signature: while
it is down (nothing listens on its port) the alerts wait; once it is up it gets each alert
exactly once. A receiver that hangs is timed out and tried again without holding up the
others, and one that refuses an alert is not sent it again."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator

import pytest
from clickhouse_connect.driver.client import Client

from meterline.common.alerts import (
    Alert,
    AlertDelivery,
    ClickHouseAlertStore,
    HttpxSender,
    RetryPolicy,
)
from meterline.common.config import GatewayConfig, TeamConfig, WebhookConfig
from meterline.processes import free_port
from tests.support.alerts import SECRET, Receiver, budget_alert

pytestmark = pytest.mark.clickhouse

FAST = RetryPolicy(base_seconds=0.05, max_delay_seconds=0.2, max_attempts=1000)


@pytest.fixture
def receivers() -> Iterator[Callable[[], Receiver]]:
    made: list[Receiver] = []

    def make() -> Receiver:
        made.append(Receiver(free_port()))
        return made[-1]

    yield make
    for receiver in made:
        receiver.stop()


@pytest.fixture(autouse=True)
def secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RECEIVER_SECRET", SECRET)


def sender_for(client: Client, *webhooks: WebhookConfig) -> AlertDelivery:
    config = GatewayConfig(teams=[TeamConfig(id="acme", webhooks=list(webhooks))])
    return AlertDelivery(
        ClickHouseAlertStore(client), HttpxSender(), config, policy=FAST, poll_seconds=0.02
    )


def hook(name: str, receiver: Receiver, timeout: float = 5.0) -> WebhookConfig:
    return WebhookConfig(
        name=name, url=receiver.url, secret_env="RECEIVER_SECRET", timeout_seconds=timeout
    )


async def wait_for(condition: Callable[[], bool], seconds: float = 20) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "not reached in time"
        await asyncio.sleep(0.02)


async def test_a_receiver_that_was_down_gets_each_alert_exactly_once(
    clickhouse: Client, receivers: Callable[[], Receiver]
) -> None:
    receiver = receivers()
    loop = sender_for(clickhouse, hook("ops", receiver))
    alerts = [budget_alert(threshold_percent=p) for p in (50, 80, 100)]
    # Raising is a store write: it returns before anything is sent (no attempt yet).
    for alert in alerts:
        await loop.raise_alert(alert)
    for alert in alerts:
        [state] = await loop.store.deliveries(alert.alert_id)
        assert (state.status, state.attempts) == ("pending", 0)
    await loop.start()
    try:

        async def attempts() -> int:
            states = [d for a in alerts for d in await loop.store.deliveries(a.alert_id)]
            return min(d.attempts for d in states)

        deadline = time.monotonic() + 20
        while await attempts() < 3:
            assert time.monotonic() < deadline
            await asyncio.sleep(0.02)
        for alert in alerts:
            [state] = await loop.store.deliveries(alert.alert_id)
            assert state.status == "pending" and state.last_http_status is None
            assert state.last_error

        receiver.start()
        await wait_for(lambda: len(receiver.received) >= len(alerts))
        await asyncio.sleep(0.5)  # several more polls and backoffs: nothing comes again
    finally:
        await loop.stop()

    assert receiver.bad_signatures == 0
    assert sorted(key for key, _ in receiver.received) == sorted(a.alert_id for a in alerts)
    for alert in alerts:
        [state] = await loop.store.deliveries(alert.alert_id)
        assert (state.status, state.last_http_status, state.last_error) == ("delivered", 200, "")


async def all_delivered(loop: AlertDelivery, alerts: list[Alert]) -> bool:
    states = [d for a in alerts for d in await loop.store.deliveries(a.alert_id)]
    return all(d.status == "delivered" for d in states)


async def test_a_hanging_receiver_is_timed_out_and_holds_up_no_other(
    clickhouse: Client, receivers: Callable[[], Receiver]
) -> None:
    slow, fine = receivers(), receivers()
    slow.hang_seconds = 1.0
    slow.start()
    fine.start()
    loop = sender_for(clickhouse, hook("slow", slow, timeout=0.2), hook("fine", fine))
    alerts = [budget_alert(threshold_percent=p) for p in (50, 80)]
    await loop.start()
    try:
        for alert in alerts:
            await loop.raise_alert(alert)
        await wait_for(lambda: len(fine.received) == len(alerts), seconds=5)
        # The store, not the receiver, says when: the receiver also keeps the alerts of the
        # attempts that timed out on the sender's side (receivers drop those repeats).
        deadline = time.monotonic() + 20
        while not await all_delivered(loop, alerts):
            assert time.monotonic() < deadline, "not delivered in time"
            await asyncio.sleep(0.02)
    finally:
        await loop.stop()
    for alert in alerts:
        states = {d.webhook: d for d in await loop.store.deliveries(alert.alert_id)}
        assert states["fine"].attempts == 1 and states["fine"].status == "delivered"
        assert states["slow"].status == "delivered" and states["slow"].attempts >= 2
    assert {key for key, _ in slow.received} == {a.alert_id for a in alerts}


async def test_a_refusing_receiver_is_not_sent_the_alert_again(
    clickhouse: Client, receivers: Callable[[], Receiver]
) -> None:
    receiver = receivers()
    receiver.status = 410
    receiver.start()
    loop = sender_for(clickhouse, hook("ops", receiver))
    alert = budget_alert()
    await loop.start()
    try:
        await loop.raise_alert(alert)
        await wait_for(lambda: len(receiver.received) == 1)
        await asyncio.sleep(0.5)
    finally:
        await loop.stop()
    assert len(receiver.received) == 1
    [state] = await loop.store.deliveries(alert.alert_id)
    assert (state.status, state.attempts, state.last_http_status) == ("failed", 1, 410)
    assert state.last_error == "HTTP 410"
