"""The warehouse alert store across processes' worth of instances: two replicas raising
the same alerts at once store each once and get it delivered once per webhook; a sender
restarted on the same database resumes the pending deliveries where the last one stopped."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Callable

import pytest
from clickhouse_connect.driver.client import Client

from meterline.common.alerts import (
    AlertDelivery,
    ClickHouseAlertStore,
    MemorySender,
    RetryPolicy,
    SendResult,
)
from meterline.common.clickhouse import connect
from meterline.common.config import GatewayConfig, TeamConfig, WebhookConfig
from tests.support.alerts import budget_alert

pytestmark = pytest.mark.clickhouse

FAST = RetryPolicy(base_seconds=0.01, max_delay_seconds=0.02, max_attempts=100)
CONFIG = GatewayConfig(
    teams=[
        TeamConfig(
            id="acme",
            webhooks=[
                WebhookConfig(name="ops", url="https://hooks.example/ops", secret_env="T_SECRET"),
                WebhookConfig(name="chat", url="https://hooks.example/chat", format="slack"),
            ],
        )
    ]
)


@pytest.fixture(autouse=True)
def secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("T_SECRET", "s3cret")


def replica(url: str, database: str, sender: MemorySender) -> AlertDelivery:
    """A process of its own: its own client on the shared database."""
    return AlertDelivery(
        ClickHouseAlertStore(connect(url, database)), sender, CONFIG, policy=FAST, poll_seconds=0.01
    )


async def run_until(
    condition: Callable[[], bool], loop: AlertDelivery, seconds: float = 20
) -> None:
    await loop.start()
    try:
        for _ in range(int(seconds / 0.02)):
            if condition():
                return
            await asyncio.sleep(0.02)
        raise AssertionError("not reached in time")
    finally:
        await loop.stop()


async def test_two_replicas_raising_the_same_alerts_store_and_deliver_each_once(
    clickhouse_url: str, clickhouse_database: str, clickhouse: Client
) -> None:
    alerts = [budget_alert(threshold_percent=p) for p in (50, 80, 100)]
    sender = MemorySender()
    one = replica(clickhouse_url, clickhouse_database, sender)
    two = replica(clickhouse_url, clickhouse_database, MemorySender())
    await asyncio.gather(*(r.raise_alert(a) for a in alerts for r in (one, two)))
    await asyncio.gather(*(r.raise_alert(a) for a in alerts for r in (two, one)))

    rows = clickhouse.query("SELECT alert_id, count() FROM budget_alerts FINAL GROUP BY 1")
    assert sorted((str(i), int(n)) for i, n in rows.result_rows) == sorted(
        (a.alert_id, 1) for a in alerts
    )
    # One loop delivers (see AlertDelivery: one per warehouse).
    await run_until(lambda: len(sender.sent) >= 6, one)
    await one.deliver_due()
    sent = Counter((r.url, r.headers["Meterline-Idempotency-Key"]) for r in sender.sent)
    assert sent == Counter(
        {(f"https://hooks.example/{w}", a.alert_id): 1 for a in alerts for w in ("ops", "chat")}
    )
    for alert in alerts:
        states = await two.store.deliveries(alert.alert_id)
        assert [(d.webhook, d.status, d.attempts) for d in states] == [
            ("chat", "delivered", 1),
            ("ops", "delivered", 1),
        ]


async def test_a_restarted_sender_resumes_the_pending_deliveries(
    clickhouse_url: str, clickhouse_database: str
) -> None:
    alerts = [budget_alert(threshold_percent=p) for p in (50, 80)]
    down = MemorySender(default=SendResult(None, "ConnectError: connection refused"))
    before = replica(clickhouse_url, clickhouse_database, down)
    for alert in alerts:
        await before.raise_alert(alert)
    await run_until(lambda: len(down.sent) >= 8, before)
    tried = {a.alert_id: await before.store.deliveries(a.alert_id) for a in alerts}
    assert all(d.status == "pending" and d.attempts >= 1 for ds in tried.values() for d in ds)

    up = MemorySender()
    after = replica(clickhouse_url, clickhouse_database, up)  # the process after a restart
    await run_until(lambda: len(up.sent) >= 4, after)
    await after.deliver_due()
    assert len(up.sent) == 4
    assert len({(r.url, r.headers["Meterline-Idempotency-Key"]) for r in up.sent}) == 4
    for alert in alerts:
        for state in await after.store.deliveries(alert.alert_id):
            earlier = next(d for d in tried[alert.alert_id] if d.webhook == state.webhook)
            assert state.status == "delivered"
            assert state.attempts > earlier.attempts
