"""Budget threshold alerts end to end: the simulator as the provider, ``meterline
all-in-one`` on the embedded default (its query service evaluates the thresholds and
delivers), and a webhook receiver on this machine that verifies each signature.

The receiver is down while the team's traffic crosses 50 % of a soft budget, and the
all-in-one is restarted (SIGTERM, then again on its data directory) before the receiver
comes up: the 50 % alert arrives once, after both. More traffic crosses 100 %: that alert
arrives once too. No threshold arrives twice, and none that was not crossed arrives."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from meterline.common.config import hash_key, new_key
from meterline.processes import free_port, meterline_process, wait_http
from tests.support.alerts import SECRET, Receiver

pytestmark = [pytest.mark.e2e, pytest.mark.clickhouse]

LIMIT = Decimal("0.004")


def write_config(path: Path, simulator: str, key: str, receiver: Receiver) -> None:
    path.write_text(
        f"""
[[providers]]
slug = "openai"
base_url = "{simulator}/v1"
api_key_env = "ALERTS_PROVIDER_KEY"

[[teams]]
id = "acme"
[[teams.keys]]
name = "app"
sha256 = "{hash_key(key)}"
[[teams.budgets]]
id = "daily"
amount_usd = "{LIMIT}"
period = "daily"
mode = "soft"
thresholds = [50, 100]
[[teams.webhooks]]
name = "ops"
url = "{receiver.url}"
secret_env = "ALERTS_WEBHOOK_SECRET"
"""
    )


@pytest.fixture
def setup(tmp_path: Path) -> Iterator[tuple[dict[str, str], Path, Receiver, str]]:
    receiver = Receiver(free_port())
    key = new_key()
    simulator = free_port()
    write_config(tmp_path / "meterline.toml", f"http://127.0.0.1:{simulator}", key, receiver)
    env = {
        **os.environ,
        "METERLINE_CONFIG_FILE": str(tmp_path / "meterline.toml"),
        "METERLINE_DATA_DIR": str(tmp_path / "data"),
        "METERLINE_MAX_BATCH_SECONDS": "0.2",
        "METERLINE_ALERT_EVALUATE_SECONDS": "0.5",
        "METERLINE_ALERT_POLL_SECONDS": "0.3",
        "METERLINE_ALERT_RETRY_BASE_SECONDS": "0.2",
        "METERLINE_ALERT_RETRY_MAX_DELAY_SECONDS": "1",
        "ALERTS_WEBHOOK_SECRET": SECRET,
        "ALERTS_PROVIDER_KEY": "sk-simulator",
    }
    env.pop("KAFKA_BOOTSTRAP_SERVERS", None)
    env.pop("CLICKHOUSE_URL", None)
    log = tmp_path / "simulator.log"
    with meterline_process(["simulator", "--port", str(simulator)], env, log) as sim:
        wait_http(f"http://127.0.0.1:{simulator}/healthz", sim, log)
        try:
            yield env, tmp_path, receiver, key
        finally:
            receiver.stop()


def spend(base: str, key: str, until: Decimal) -> None:
    """Requests until the report says the team spent ``until`` or more."""
    client = openai.OpenAI(base_url=f"{base}/v1", api_key=key, max_retries=0)
    deadline = time.monotonic() + 60
    n = 0
    while spent(base, key) < until:
        assert time.monotonic() < deadline, "the spend did not reach its target"
        n += 1
        client.chat.completions.create(
            model="openai/gpt-4o",
            messages=[{"role": "user", "content": f"Alert question {n} {time.time()}."}],
            max_tokens=60,
        )
        time.sleep(0.25)  # the report lags the answers by a batch


def spent(base: str, key: str) -> Decimal:
    response = httpx.get(
        f"{base}/v1/budgets/status", headers={"Authorization": f"Bearer {key}"}, timeout=10
    )
    assert response.status_code == 200, response.text
    return Decimal(response.json()["results"][0]["values"][0]["spend"])


def thresholds(receiver: Receiver) -> list[tuple[str, int]]:
    return [(key, json.loads(body)["threshold_percent"]) for key, body in receiver.received]


def wait_for(condition: Any, seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.2)


def test_each_threshold_is_delivered_once_across_a_restart_and_a_receiver_outage(
    setup: tuple[dict[str, str], Path, Receiver, str],
) -> None:
    env, directory, receiver, key = setup
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    log = directory / "all-in-one.log"
    with meterline_process(["all-in-one", "--port", str(port)], env, log) as gateway:
        wait_http(f"{base}/healthz", gateway, log)
        spend(base, key, LIMIT / 2)
        assert spent(base, key) < LIMIT
        # The alert is raised while nothing listens: it waits in the warehouse.
        wait_for(lambda: _alerts(base, key) == [50])
        time.sleep(1)
    # SIGTERM, and a new process on the same data directory.
    log2 = directory / "all-in-one-2.log"
    with meterline_process(["all-in-one", "--port", str(port)], env, log2) as gateway:
        wait_http(f"{base}/healthz", gateway, log2)
        receiver.start()
        wait_for(lambda: len(receiver.received) >= 1)
        time.sleep(2)  # more evaluations and polls: nothing more may come
        assert [t for _, t in thresholds(receiver)] == [50]
        spend(base, key, LIMIT)
        wait_for(lambda: len(receiver.received) >= 2)
        time.sleep(2)
        # This process delivered both: the one left pending by the first, and its own.
        metrics = httpx.get(f"{base}/metrics", timeout=10).text.splitlines()
        assert 'meterline_alert_deliveries_total{outcome="delivered"} 2' in metrics
        assert 'meterline_alert_deliveries_total{outcome="failed"} 0' in metrics
        assert any(line.startswith("meterline_ingress_events_sent_total") for line in metrics)
    assert receiver.bad_signatures == 0
    received = thresholds(receiver)
    assert [t for _, t in received] == [50, 100]
    assert len({k for k, _ in received}) == 2
    body = json.loads(receiver.received[1][1])
    assert body["kind"] == "budget_threshold" and body["subject"] == "daily"
    assert Decimal(body["limit_usd"]) == LIMIT and Decimal(body["spend_usd"]) >= LIMIT


def _alerts(base: str, key: str) -> list[int]:
    response = httpx.get(
        f"{base}/v1/alerts", headers={"Authorization": f"Bearer {key}"}, timeout=10
    )
    assert response.status_code == 200, response.text
    return sorted(a["threshold_percent"] for a in response.json()["results"])
