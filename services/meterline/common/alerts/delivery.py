"""The delivery loop: an asyncio task that sends the store's pending deliveries to their
webhooks and records each attempt.

Guarantees. At least once: a delivery stays pending in the store until an attempt is
recorded as delivered or failed, so a receiver that is down gets it after it comes back,
and a process that stops or crashes leaves it for the next one. Exactly once in the normal
case: the 2xx is recorded right after it arrives; only a crash (or a store write failing)
between the two sends the alert again, with the same ``Meterline-Idempotency-Key``. Run one
delivery loop per warehouse: two loops on one store could both send a due delivery
(raising from any number of replicas is fine)."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import random
from collections import Counter
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta

from clickhouse_connect.driver.client import Client
from pydantic import Field

from meterline.common.alerts.model import Alert
from meterline.common.alerts.store import AlertStore, ClickHouseAlertStore, Delivery, Due
from meterline.common.alerts.webhooks import (
    HttpxSender,
    RetryPolicy,
    SendResult,
    WebhookSender,
    build_request,
    outcome,
)
from meterline.common.clickhouse import connect
from meterline.common.config import GatewayConfig, WebhookConfig
from meterline.common.settings import CommonSettings
from meterline.common.waiting import wait_event

log = logging.getLogger(__name__)


class AlertSettings(CommonSettings):
    """``METERLINE_ALERT_*``: how the delivery loop polls and retries."""

    alert_deliver: bool = True
    """Whether this process sends the alerts (every process may raise them). Deliveries
    are not claimed between processes: with several query replicas, let one deliver."""
    alert_evaluate_seconds: float = Field(default=30.0, gt=0)
    """How often the query service decides which alerts are due (budget thresholds and
    resets, spikes; ``query/alerting.py``)."""
    alert_poll_seconds: float = Field(default=5.0, gt=0)
    """How often the store is asked for due deliveries (a raise in this process wakes
    the loop at once)."""
    alert_retry_base_seconds: float = Field(default=2.0, gt=0)
    alert_retry_max_delay_seconds: float = Field(default=3600.0, gt=0)
    alert_max_attempts: int = Field(default=60, ge=1)
    alert_concurrency: int = Field(default=8, ge=1)
    """Deliveries in flight at once, so a slow receiver holds one slot, not the loop."""

    def retry_policy(self) -> RetryPolicy:
        return RetryPolicy(
            self.alert_retry_base_seconds,
            self.alert_retry_max_delay_seconds,
            self.alert_max_attempts,
        )


def _now() -> datetime:
    # Milliseconds, the precision the store keeps.
    now = datetime.now(UTC)
    return now.replace(microsecond=now.microsecond // 1000 * 1000)


class AlertDelivery:
    def __init__(
        self,
        store: AlertStore,
        sender: WebhookSender,
        config: GatewayConfig,
        policy: RetryPolicy | None = None,
        poll_seconds: float = 5.0,
        concurrency: int = 8,
        stop_grace_seconds: float = 5.0,
        rng: Callable[[], float] = random.random,
    ):
        self.store = store
        self._sender = sender
        self._config = config
        self._policy = policy or RetryPolicy()
        self._poll_seconds = poll_seconds
        self._concurrency = concurrency
        self._stop_grace_seconds = stop_grace_seconds
        self._rng = rng
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._in_flight: dict[tuple[str, str], asyncio.Task[None]] = {}
        self.counts: Counter[str] = Counter()
        """``raised`` by this process; attempts ``delivered``, ``retried`` and ``failed``
        (for good): the Prometheus counters (``prometheus_text``)."""

    @classmethod
    def from_settings(
        cls,
        settings: AlertSettings,
        config: GatewayConfig,
        client: Client | None = None,
        sender: WebhookSender | None = None,
    ) -> AlertDelivery:
        """The loop on the warehouse the settings name, sending over HTTP. Refuses a
        configuration whose webhook secrets or URLs are not in the environment, at start-up
        rather than at the first alert."""
        missing = [
            f"team {team.id!r} webhook {webhook.name!r}: {', '.join(webhook.missing_env())}"
            for team in config.teams
            for webhook in team.webhooks
            if webhook.missing_env()
        ]
        if missing:
            raise ValueError("webhook settings not in the environment: " + "; ".join(missing))
        if client is None:
            client = connect(settings.resolved_clickhouse_url(), settings.clickhouse_database)
        return cls(
            ClickHouseAlertStore(client),
            sender or HttpxSender(),
            config,
            policy=settings.retry_policy(),
            poll_seconds=settings.alert_poll_seconds,
            concurrency=settings.alert_concurrency,
        )

    async def raise_alert(self, alert: Alert) -> None:
        """Store the alert with a pending delivery to each of its team's webhooks that
        takes its kind. Only a store write: it returns before anything is sent."""
        team = self._config.team(alert.team_id)
        webhooks = [w.name for w in team.webhooks if w.wants(alert.kind)] if team else []
        await self.store.raise_alert(alert, webhooks)
        self.counts["raised"] += 1
        self._wake.set()

    async def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="alert-delivery")

    async def stop(self) -> None:
        """Stop polling, give the attempts in flight a moment to finish (one cut short is
        still pending and is sent again by the next start), and close the sender: a stopped
        delivery is not started again (build a new one, as a restarted process would)."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self._in_flight:
            _, late = await asyncio.wait(
                list(self._in_flight.values()), timeout=self._stop_grace_seconds
            )
            for task in late:
                task.cancel()
            await asyncio.gather(*late, return_exceptions=True)
        await self._sender.aclose()

    async def deliver_due(self) -> None:
        """Send what is due now and wait for those attempts: one round of the loop."""
        await self._start_due()
        if self._in_flight:
            await asyncio.gather(*self._in_flight.values(), return_exceptions=True)

    async def _run(self) -> None:
        while True:
            self._wake.clear()
            try:
                await self._start_due()
            except Exception:
                log.exception("reading the pending alert deliveries failed; trying again")
            await wait_event(self._wake, self._poll_seconds)

    async def _start_due(self) -> None:
        free = self._concurrency - len(self._in_flight)
        if free <= 0:
            return
        # Ask for enough to fill the free slots even when the oldest are in flight already.
        for due in await self.store.due(_now(), free + len(self._in_flight)):
            key = (due.alert.alert_id, due.delivery.webhook)
            if key in self._in_flight:
                continue
            task = asyncio.create_task(self._attempt(due), name=f"alert-delivery-{key}")
            self._in_flight[key] = task
            task.add_done_callback(functools.partial(self._finished, key))
            free -= 1
            if free == 0:
                break

    def _finished(self, key: tuple[str, str], task: asyncio.Task[None]) -> None:
        self._in_flight.pop(key, None)
        # A slot is free: what else is due need not wait for the next poll.
        self._wake.set()

    async def _attempt(self, due: Due) -> None:
        delivery = due.delivery
        attempt = delivery.attempts + 1
        webhook = self._webhook(delivery)
        if webhook is None:
            # Removed from the configuration since the alert was raised: nowhere to send.
            result = SendResult(None, f"no webhook {delivery.webhook!r} for the team any more")
            state = self._next_state(delivery, attempt, result, give_up=True)
        else:
            missing = webhook.missing_env()
            url = webhook.resolved_url()
            if missing or url is None:
                # Retried: the variables may be set by the time a restarted process tries.
                result = SendResult(None, f"environment not set: {', '.join(missing)}")
            else:
                body, headers = build_request(webhook, due.alert, attempt)
                result = await self._send(webhook, url, body, headers)
            state = self._next_state(delivery, attempt, result)
        self.counts["retried" if state.status == "pending" else str(state.status)] += 1
        try:
            await self.store.record(state)
        except Exception:
            # Still pending in the store: sent again later, with the same idempotency key.
            log.exception(
                "recording the delivery of alert %s to webhook %s failed",
                delivery.alert_id,
                delivery.webhook,
            )
            # Held for a poll before the slot frees: the store still says due, and the
            # receiver should not be sent it again at once, round after round.
            await asyncio.sleep(self._poll_seconds)

    async def _send(
        self, webhook: WebhookConfig, url: str, body: bytes, headers: dict[str, str]
    ) -> SendResult:
        try:
            return await self._sender.send(url, body, headers, webhook.timeout_seconds)
        except Exception as error:
            # A sender's own failure (not the receiver's) is retried like no answer, rather
            # than lost with the task.
            log.exception("sending to webhook %s failed", webhook.name)
            return SendResult(None, f"{type(error).__name__}: {error}")

    def prometheus_text(self) -> str:
        lines = [
            "# HELP meterline_alerts_raised_total Alerts this process raised (a repeat of"
            " one already stored counts again).",
            "# TYPE meterline_alerts_raised_total counter",
            f"meterline_alerts_raised_total {self.counts['raised']}",
            "# HELP meterline_alert_deliveries_total Delivery attempts, by outcome: delivered,"
            " retried (tried again later) or failed (for good).",
            "# TYPE meterline_alert_deliveries_total counter",
        ]
        lines += [
            f'meterline_alert_deliveries_total{{outcome="{outcome}"}} {self.counts[outcome]}'
            for outcome in ("delivered", "retried", "failed")
        ]
        return "\n".join(lines) + "\n"

    def _webhook(self, delivery: Delivery) -> WebhookConfig | None:
        team = self._config.team(delivery.team_id)
        if team is None:
            return None
        return next((w for w in team.webhooks if w.name == delivery.webhook), None)

    def _next_state(
        self, delivery: Delivery, attempt: int, result: SendResult, give_up: bool = False
    ) -> Delivery:
        now = _now()
        tried = replace(
            delivery,
            attempts=attempt,
            last_attempt_at=now,
            last_http_status=result.status_code,
            last_error=result.error,
        )
        verdict = "failed" if give_up else outcome(result)
        if verdict == "delivered":
            return replace(tried, status="delivered", delivered_at=now, last_error="")
        if verdict == "failed" or attempt >= self._policy.max_attempts:
            log.warning(
                "alert %s to webhook %s failed for good after %d attempts: %s",
                delivery.alert_id,
                delivery.webhook,
                attempt,
                result.error,
            )
            return replace(tried, status="failed")
        wait = self._policy.delay(attempt, result.retry_after_seconds, self._rng)
        return replace(tried, next_attempt_at=now + timedelta(seconds=wait))
