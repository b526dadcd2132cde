"""Alerts without I/O: the id, the bodies, the signature, the retry schedule, what an answer
means, and the delivery loop over the memory store and sender."""

from __future__ import annotations

import asyncio
import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import pytest
from pydantic import ValidationError

from meterline.common.alerts import (
    Alert,
    AlertDelivery,
    AlertSettings,
    Delivery,
    MemoryAlertStore,
    MemorySender,
    RetryPolicy,
    SendResult,
    alert_id,
    verify_signature,
)
from meterline.common.alerts.model import json_body, slack_body
from meterline.common.alerts.signature import sign, signature_header
from meterline.common.alerts.webhooks import SentRequest, outcome
from meterline.common.config import GatewayConfig, TeamConfig, WebhookConfig

PERIOD = datetime(2026, 3, 1, tzinfo=UTC)
SECRET = "whsec_test_secret"


def alert(**overrides: Any) -> Alert:
    values: dict[str, Any] = {
        "team_id": "acme",
        "kind": "budget_threshold",
        "subject": "monthly",
        "scope": (("user", "ana"), ("tag", "feature:x")),
        "period_start": PERIOD,
        "threshold_percent": 80,
        "spend_usd": Decimal("80.125"),
        "limit_usd": Decimal("100"),
        "message": "Team acme has spent $80.125 of its $100 monthly budget (80 %).",
        "raised_at": datetime(2026, 3, 20, 9, 30, 1, 123456, tzinfo=UTC),
    }
    return Alert.new(**(values | overrides))


def config(*webhooks: WebhookConfig) -> GatewayConfig:
    return GatewayConfig(teams=[TeamConfig(id="acme", webhooks=list(webhooks))])


def webhook(name: str = "ops", **overrides: Any) -> WebhookConfig:
    values: dict[str, Any] = {
        "name": name,
        "url": f"https://hooks.example/{name}",
        "secret_env": "TEST_ALERT_SECRET",
    }
    return WebhookConfig(**(values | overrides))


@pytest.fixture(autouse=True)
def secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TEST_ALERT_SECRET", SECRET)


# The id


def test_the_id_is_the_same_for_the_same_alert_whoever_raises_it_and_when() -> None:
    first = alert()
    again = alert(
        raised_at=datetime(2026, 3, 20, 11, tzinfo=UTC),
        spend_usd=Decimal("81"),
        message="another sentence",
        scope=(("tag", "feature:x"), ("user", "ana")),
        # The same instant in another zone is the same period.
        period_start=PERIOD.astimezone(timezone(timedelta(hours=2))),
    )
    assert first.alert_id == again.alert_id
    assert first.alert_id == alert_id(
        "acme", "budget_threshold", "monthly", first.scope, PERIOD, 80
    )
    assert first.alert_id.startswith("alert_") and len(first.alert_id) == 38


@pytest.mark.parametrize(
    "change",
    [
        {"team_id": "globex"},
        {"kind": "budget_reset", "threshold_percent": None},
        {"subject": "weekly"},
        {"scope": (("user", "ana"),)},
        {"scope": (("user", "ana"), ("tag", "feature:y"))},
        {"period_start": PERIOD + timedelta(days=31)},
        {"threshold_percent": 100},
    ],
)
def test_the_id_differs_when_the_alert_does(change: dict[str, Any]) -> None:
    assert alert(**change).alert_id != alert().alert_id


def test_fields_cannot_be_forged_into_another_alert_by_separators() -> None:
    one = alert_id("a|b", "spike", "c", (), PERIOD, None)
    other = alert_id("a", "spike", "b|c", (), PERIOD, None)
    assert one != other


def test_times_must_be_utc_and_money_decimal() -> None:
    with pytest.raises(ValueError, match="naive"):
        alert(period_start=datetime(2026, 3, 1))
    with pytest.raises(TypeError, match="Decimal"):
        alert(spend_usd=80.5)
    with pytest.raises(ValueError, match="kind"):
        alert(kind="budget_exceeded")
    made = alert()
    with pytest.raises(ValueError, match="UTC"):
        replace(made, raised_at=made.raised_at.astimezone(timezone(timedelta(hours=2))))
    assert made.raised_at.microsecond == 123000  # the store's millisecond


# The bodies


def test_the_json_body_has_stable_names_and_money_as_decimal_strings() -> None:
    body = json.loads(json_body(alert(spend_usd=Decimal("80.1250"), baseline_usd=None)))
    assert body == {
        "alert_id": alert().alert_id,
        "team_id": "acme",
        "kind": "budget_threshold",
        "subject": "monthly",
        "scope": [
            {"dimension": "user", "value": "ana"},
            {"dimension": "tag", "value": "feature:x"},
        ],
        "period_start": "2026-03-01T00:00:00.000Z",
        "threshold_percent": 80,
        "spend_usd": "80.125",
        "limit_usd": "100",
        "baseline_usd": None,
        "message": "Team acme has spent $80.125 of its $100 monthly budget (80 %).",
        "raised_at": "2026-03-20T09:30:01.123Z",
    }


def test_money_is_exact_and_never_in_exponent_notation() -> None:
    body = json.loads(json_body(alert(spend_usd=Decimal("1E-9"), limit_usd=Decimal("1.0E+3"))))
    assert (body["spend_usd"], body["limit_usd"]) == ("0.000000001", "1000")


def test_the_slack_body_is_one_text_with_slack_characters_escaped() -> None:
    spike = alert(
        kind="spike",
        subject="model",
        scope=(("model", "gpt-4o"),),
        threshold_percent=None,
        limit_usd=None,
        baseline_usd=Decimal("12.5"),
        message="Spend on <gpt-4o> is 4× its usual & rising",
    )
    assert json.loads(slack_body(spike)) == {
        "text": "Meterline alert for team acme: Spend on &lt;gpt-4o&gt; is 4× its usual"
        " &amp; rising (scope: model gpt-4o)"
    }


# The signature


def test_a_signature_verifies_for_its_body_and_secret_only() -> None:
    body = json_body(alert())
    header = signature_header(SECRET, body, timestamp=1_770_000_000)
    assert header == f"t=1770000000,v1={sign(SECRET, 1_770_000_000, body)}"
    assert verify_signature(SECRET, header, body, 300, now=1_770_000_100)
    assert verify_signature(SECRET.encode(), header, body.decode(), 300, now=1_770_000_100)
    assert not verify_signature("other", header, body, 300, now=1_770_000_100)
    assert not verify_signature(SECRET, header, body + b" ", 300, now=1_770_000_100)
    # Too old, or from the future: a captured request cannot be replayed later.
    assert not verify_signature(SECRET, header, body, 300, now=1_770_000_301)
    assert not verify_signature(SECRET, header, body, 300, now=1_769_999_699)


def test_any_v1_of_a_header_may_match_while_secrets_rotate() -> None:
    body = b"{}"
    rotated = f"t=100,v1={sign('old', 100, body)},v1={sign(SECRET, 100, body)}"
    assert verify_signature(SECRET, rotated, body, 10, now=105)
    assert verify_signature("old", rotated, body, 10, now=105)


@pytest.mark.parametrize(
    "header", [None, "", "v1=abc", "t=100", "t=soon,v1=abc", "t=100,v0=abc", "garbage"]
)
def test_a_malformed_header_does_not_verify(header: str | None) -> None:
    assert not verify_signature(SECRET, header, b"{}", 10, now=100)


# Retries


def test_the_backoff_doubles_up_to_its_cap_with_the_upper_half_random() -> None:
    policy = RetryPolicy(base_seconds=1, max_delay_seconds=60, max_attempts=10)
    lowest = [policy.delay(n, rng=lambda: 0.0) for n in range(1, 9)]
    highest = [policy.delay(n, rng=lambda: 1.0) for n in range(1, 9)]
    assert highest == [1, 2, 4, 8, 16, 32, 60, 60]
    assert lowest == [h / 2 for h in highest]
    assert policy.delay(10_000, rng=lambda: 1.0) == 60  # no overflow, still capped


def test_retry_after_is_honoured_up_to_the_cap() -> None:
    policy = RetryPolicy(base_seconds=1, max_delay_seconds=60, max_attempts=10)
    assert policy.delay(1, retry_after_seconds=30, rng=lambda: 1.0) == 30
    assert policy.delay(1, retry_after_seconds=3600, rng=lambda: 1.0) == 60
    assert policy.delay(7, retry_after_seconds=1, rng=lambda: 1.0) == 60


def test_the_default_schedule_spans_one_to_two_days() -> None:
    policy = RetryPolicy()
    delays = range(1, policy.max_attempts)
    assert 24 * 3600 < sum(policy.delay(n, rng=lambda: 0.0) for n in delays) < 26 * 3600
    assert 48 * 3600 < sum(policy.delay(n, rng=lambda: 1.0) for n in delays) < 50 * 3600


@pytest.mark.parametrize(
    ("status", "verdict"),
    [
        (200, "delivered"),
        (204, "delivered"),
        (None, "retry"),
        (408, "retry"),
        (429, "retry"),
        (500, "retry"),
        (503, "retry"),
        (301, "failed"),
        (400, "failed"),
        (401, "failed"),
        (404, "failed"),
        (410, "failed"),
    ],
)
def test_what_an_answer_means(status: int | None, verdict: str) -> None:
    assert outcome(SendResult(status)) == verdict


# The configuration


def test_a_json_webhook_needs_a_secret_and_names_are_unique_per_team() -> None:
    with pytest.raises(ValidationError, match="secret_env"):
        WebhookConfig(name="ops", url="https://hooks.example/ops")
    assert WebhookConfig(name="chat", url="https://hooks.slack.com/x", format="slack")
    with pytest.raises(ValidationError, match="unique"):
        config(webhook("ops"), webhook("ops"))
    with pytest.raises(ValidationError):
        webhook(kinds=["budget_exceeded"])
    with pytest.raises(ValidationError):
        webhook(url="ftp://hooks.example/x")


# The loop, in memory


def delivery(
    sender: MemorySender, *webhooks: WebhookConfig, max_attempts: int = 5
) -> AlertDelivery:
    return AlertDelivery(
        MemoryAlertStore(),
        sender,
        config(*webhooks),
        policy=RetryPolicy(base_seconds=0.001, max_delay_seconds=0.001, max_attempts=max_attempts),
    )


async def deliver_until_settled(loop: AlertDelivery, rounds: int = 50) -> None:
    for _ in range(rounds):
        await loop.deliver_due()
        await asyncio.sleep(0.002)


async def test_an_alert_raised_twice_is_stored_once_and_sent_once_per_webhook() -> None:
    sender = MemorySender()
    loop = delivery(sender, webhook("ops"), webhook("chat", format="slack", secret_env=None))
    first = alert()
    await loop.raise_alert(first)
    await loop.raise_alert(alert(raised_at=datetime(2026, 3, 20, 10, tzinfo=UTC)))
    await deliver_until_settled(loop)
    await loop.raise_alert(first)  # after delivery too: a restart raising it again
    await deliver_until_settled(loop)

    assert sorted(r.url for r in sender.sent) == [
        "https://hooks.example/chat",
        "https://hooks.example/ops",
    ]
    store = loop.store
    assert await store.alert(first.alert_id) == first  # the first raise is kept
    states = await store.deliveries(first.alert_id)
    assert [(d.webhook, d.status, d.attempts) for d in states] == [
        ("chat", "delivered", 1),
        ("ops", "delivered", 1),
    ]


async def test_a_request_carries_the_idempotency_key_and_a_signature_that_verifies() -> None:
    sender = MemorySender()
    loop = delivery(sender, webhook("ops"), webhook("chat", format="slack", secret_env=None))
    raised = alert()
    await loop.raise_alert(raised)
    await loop.deliver_due()
    by_url = {r.url: r for r in sender.sent}
    signed = by_url["https://hooks.example/ops"]
    assert signed.headers["Meterline-Idempotency-Key"] == raised.alert_id
    assert signed.headers["Meterline-Delivery-Attempt"] == "1"
    assert signed.headers["Content-Type"] == "application/json"
    assert verify_signature(SECRET, signed.headers["Meterline-Signature"], signed.body, 60)
    assert signed.body == json_body(raised)
    slack = by_url["https://hooks.example/chat"]
    assert "Meterline-Signature" not in slack.headers
    assert json.loads(slack.body) == json.loads(slack_body(raised))


async def test_kinds_choose_the_webhooks_an_alert_goes_to() -> None:
    sender = MemorySender()
    loop = delivery(sender, webhook("spikes", kinds=["spike"]), webhook("all"))
    await loop.raise_alert(alert())
    await loop.deliver_due()
    assert [r.url for r in sender.sent] == ["https://hooks.example/all"]


async def test_a_refusal_is_failed_for_good_and_not_sent_again() -> None:
    sender = MemorySender(answers=[SendResult(400, "HTTP 400: bad body")])
    loop = delivery(sender, webhook("ops"))
    await loop.raise_alert(alert())
    await deliver_until_settled(loop)
    [state] = await loop.store.deliveries(alert().alert_id)
    assert (state.status, state.attempts, state.last_http_status) == ("failed", 1, 400)
    assert state.last_error == "HTTP 400: bad body" and state.delivered_at is None
    assert len(sender.sent) == 1


async def test_no_answer_and_5xx_are_tried_again_until_delivered() -> None:
    answers = [SendResult(None, "timed out after 10 s"), SendResult(503), SendResult(429)]
    sender = MemorySender(answers=answers)
    loop = delivery(sender, webhook("ops"))
    await loop.raise_alert(alert())
    await deliver_until_settled(loop)
    [state] = await loop.store.deliveries(alert().alert_id)
    assert (state.status, state.attempts, state.last_http_status) == ("delivered", 4, 200)
    assert state.last_error == "" and state.delivered_at is not None
    assert [r.headers["Meterline-Delivery-Attempt"] for r in sender.sent] == ["1", "2", "3", "4"]
    assert len({r.headers["Meterline-Idempotency-Key"] for r in sender.sent}) == 1


async def test_retries_are_bounded() -> None:
    sender = MemorySender(default=SendResult(500, "HTTP 500"))
    loop = delivery(sender, webhook("ops"), max_attempts=3)
    await loop.raise_alert(alert())
    await deliver_until_settled(loop)
    [state] = await loop.store.deliveries(alert().alert_id)
    assert (state.status, state.attempts, state.last_error) == ("failed", 3, "HTTP 500")
    assert len(sender.sent) == 3


async def test_a_missing_secret_is_retried_not_sent_unsigned(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("TEST_ALERT_SECRET")
    sender = MemorySender()
    loop = delivery(sender, webhook("ops"), max_attempts=2)
    await loop.raise_alert(alert())
    await deliver_until_settled(loop)
    [state] = await loop.store.deliveries(alert().alert_id)
    assert state.status == "failed" and "TEST_ALERT_SECRET" in state.last_error
    assert sender.sent == []
    with pytest.raises(ValueError, match="TEST_ALERT_SECRET"):
        AlertDelivery.from_settings(AlertSettings(), config(webhook("ops")))


async def test_a_webhook_removed_from_the_configuration_is_given_up() -> None:
    store = MemoryAlertStore()
    first = AlertDelivery(store, MemorySender(), config(webhook("ops")))
    await first.raise_alert(alert())
    sender = MemorySender()
    later = AlertDelivery(store, sender, config(webhook("other")))
    await later.deliver_due()
    [state] = await store.deliveries(alert().alert_id)
    assert state.status == "failed" and "ops" in state.last_error
    assert sender.sent == []


async def test_an_alert_of_a_team_without_webhooks_is_stored_and_sends_nothing() -> None:
    sender = MemorySender()
    loop = AlertDelivery(MemoryAlertStore(), sender, GatewayConfig())
    await loop.raise_alert(alert())
    await loop.deliver_due()
    assert await loop.store.alert(alert().alert_id) == alert()
    assert await loop.store.deliveries(alert().alert_id) == []
    assert sender.sent == []


async def test_the_loop_delivers_soon_after_a_raise_and_stops() -> None:
    sender = MemorySender()
    loop = AlertDelivery(MemoryAlertStore(), sender, config(webhook("ops")), poll_seconds=60)
    await loop.start()
    await loop.raise_alert(alert())
    for _ in range(200):
        if sender.sent:
            break
        await asyncio.sleep(0.01)
    await loop.stop()
    assert len(sender.sent) == 1  # woken by the raise, not by the 60 s poll


class BrokenOnceSender(MemorySender):
    async def send(
        self, url: str, body: bytes, headers: dict[str, str], timeout_seconds: float
    ) -> SendResult:
        if not self.sent:
            self.sent.append(SentRequest(url, body, dict(headers)))
            raise RuntimeError("bug in a sender")
        return await super().send(url, body, headers, timeout_seconds)


async def test_a_failing_sender_is_retried_like_no_answer() -> None:
    sender = BrokenOnceSender()
    loop = delivery(sender, webhook("ops"))
    await loop.raise_alert(alert())
    await deliver_until_settled(loop)
    [state] = await loop.store.deliveries(alert().alert_id)
    assert (state.status, state.attempts) == ("delivered", 2)
    assert len(sender.sent) == 2


async def test_a_url_may_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ValidationError, match="url or url_env"):
        WebhookConfig(name="chat", format="slack")
    with pytest.raises(ValidationError, match="url or url_env"):
        WebhookConfig(name="chat", format="slack", url="https://a.example", url_env="X")
    chat = WebhookConfig(name="chat", format="slack", url_env="TEST_SLACK_URL")
    assert chat.missing_env() == ["TEST_SLACK_URL"]
    with pytest.raises(ValueError, match="TEST_SLACK_URL"):
        AlertDelivery.from_settings(AlertSettings(), config(chat))

    monkeypatch.setenv("TEST_SLACK_URL", "https://hooks.slack.example/T000/B000/secret")
    sender = MemorySender()
    loop = delivery(sender, chat)
    await loop.raise_alert(alert())
    await loop.deliver_due()
    assert [r.url for r in sender.sent] == ["https://hooks.slack.example/T000/B000/secret"]


def test_the_readme_receiver_snippet_verifies_what_is_sent() -> None:
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[3] / "README.md").read_text()
    section = readme.split("### Alert delivery (webhooks)")[1]
    snippet = section.split("```python\n")[1].split("```")[0]
    namespace: dict[str, Any] = {}
    exec(snippet, namespace)
    verify = namespace["verify"]
    body = json_body(alert())
    header = signature_header(SECRET, body)
    assert verify(SECRET.encode(), header, body)
    assert not verify(SECRET.encode(), header, body + b" ")
    assert not verify(b"other", header, body)
    assert not verify(SECRET.encode(), signature_header(SECRET, body, timestamp=1), body)


class ForgetfulStore(MemoryAlertStore):
    """Fails to write down the first attempt, as a warehouse outage would."""

    failed = False

    async def record(self, delivery: Delivery) -> None:
        if not self.failed:
            self.failed = True
            raise ConnectionError("warehouse unavailable")
        await super().record(delivery)


async def test_a_delivery_not_written_down_is_sent_again_with_the_same_key() -> None:
    sender = MemorySender()
    store = ForgetfulStore()
    policy = RetryPolicy(base_seconds=0.001, max_delay_seconds=0.001)
    loop = AlertDelivery(store, sender, config(webhook("ops")), policy, poll_seconds=0.01)
    await loop.raise_alert(alert())
    await deliver_until_settled(loop, rounds=5)
    assert [r.headers["Meterline-Idempotency-Key"] for r in sender.sent] == [alert().alert_id] * 2
    [state] = await store.deliveries(alert().alert_id)
    assert state.status == "delivered"
