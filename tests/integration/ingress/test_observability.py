"""The ingress' ``/metrics`` after real traffic through the SDKs (requests by surface,
provider and status class; added latency without the provider's time; time to first
token; provider errors by kind), its access log, and its probes: ready only while a usage
event would be kept."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from meterline.common.config import GatewayConfig
from meterline.ingress.app import create_app
from meterline.ingress.publishing.kafka import kafka_publisher
from meterline.ingress.settings import IngressSettings
from meterline.processes import free_port
from tests.support.gateway import Gateway, ServerThread
from tests.support.prometheus import names, value

PROMPT = "A prompt that must never reach the logs."
MESSAGES: Any = [{"role": "user", "content": PROMPT}]


def scrape(gw: Gateway) -> str:
    response = httpx.get(f"{gw.url}/metrics", timeout=5)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    return response.text


def test_metrics_move_with_traffic(gw: Gateway) -> None:
    before = scrape(gw)
    client = gw.openai()
    client.chat.completions.create(model="sim/gpt-4o", messages=MESSAGES)
    for _ in client.chat.completions.create(model="sim/gpt-4o", messages=MESSAGES, stream=True):
        pass
    gw.anthropic().messages.create(
        model="anthropic/claude-haiku-4-5", max_tokens=20, messages=MESSAGES
    )
    with pytest.raises(openai.InternalServerError, match="unreachable"):
        client.chat.completions.create(model="down/gpt-4o", messages=MESSAGES)
    gw.upstream.inject["x-simulator-status"] = "503"
    with pytest.raises(openai.InternalServerError):
        client.chat.completions.create(model="sim/gpt-4o", messages=MESSAGES)
    gw.upstream.inject["x-simulator-status"] = "429"
    with pytest.raises(openai.RateLimitError):
        client.chat.completions.create(model="sim/gpt-4o", messages=MESSAGES)
    gw.upstream.inject.clear()
    with pytest.raises(openai.AuthenticationError):
        gw.openai(key="not-a-key").chat.completions.create(model="sim/gpt-4o", messages=MESSAGES)
    gw.wait_for_events(5)
    after = scrape(gw)

    def moved(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    requests = "meterline_ingress_requests_total"
    assert moved(requests, surface="chat_completions", provider="sim", status_class="2xx") == 2
    assert moved(requests, surface="messages", provider="anthropic", status_class="2xx") == 1
    assert moved(requests, surface="chat_completions", provider="sim", status_class="5xx") == 1
    assert moved(requests, surface="chat_completions", provider="sim", status_class="4xx") == 1
    # Nothing reached the provider "down": no event, so no provider either.
    assert moved(requests, surface="chat_completions", provider="none", status_class="5xx") == 1
    assert moved(requests, surface="chat_completions", provider="none", status_class="4xx") == 1
    errors = "meterline_ingress_upstream_errors_total"
    assert moved(errors, provider="down", kind="connect") == 1
    assert moved(errors, provider="sim", kind="5xx") == 1
    assert moved(errors, provider="sim", kind="4xx") == 1
    # Every request that reached a provider has its added latency; only the stream a TTFT.
    added = "meterline_ingress_added_latency_seconds_count"
    assert moved(added, surface="chat_completions", provider="sim") == 4
    assert moved(added, surface="messages", provider="anthropic") == 1
    assert moved("meterline_ingress_time_to_first_token_seconds_count", provider="sim") == 1
    assert moved("meterline_ingress_events_sent_total") == 5  # the ones that reached a provider
    assert {
        "process_cpu_seconds_total",
        "process_resident_memory_bytes",
        "process_open_fds",
        "process_start_time_seconds",
    } <= names(after)


def test_added_latency_leaves_out_the_providers_time(gw: Gateway) -> None:
    before = scrape(gw)
    gw.upstream.inject["x-simulator-delay-ms"] = "600"  # under the provider's 1 s timeout
    gw.openai().chat.completions.create(model="sim/gpt-4o", messages=MESSAGES)
    gw.wait_for_events(1)
    after = scrape(gw)
    labels = {"surface": "chat_completions", "provider": "sim"}
    whole = value(after, "meterline_ingress_request_duration_seconds_sum", **labels) - value(
        before, "meterline_ingress_request_duration_seconds_sum", **labels
    )
    added = value(after, "meterline_ingress_added_latency_seconds_sum", **labels) - value(
        before, "meterline_ingress_added_latency_seconds_sum", **labels
    )
    assert whole >= 0.6
    assert 0 < added < whole - 0.5


def access_lines(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "meterline.access"]


def test_one_access_line_per_request_without_key_or_prompt(
    gw: Gateway, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="meterline.access"):
        raw = gw.openai().chat.completions.with_raw_response.create(
            model="sim/gpt-4o", messages=MESSAGES
        )
        [event] = gw.wait_for_events(1)
        httpx.get(f"{gw.url}/metrics")  # scrapes and probes are not logged
        with pytest.raises(openai.AuthenticationError):
            gw.openai(key="sk-wrong-key").chat.completions.create(
                model="sim/gpt-4o", messages=MESSAGES
            )
        # A line is written once its answer has gone out: the client may be first.
        deadline = time.monotonic() + 10
        while len(access_lines(caplog)) < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(0.2)  # and no third line comes
    lines = access_lines(caplog)
    assert len(lines) == 2
    ok, refused = lines
    assert raw.headers["x-meterline-event-id"] == event.event_id
    fields: dict[str, Any] = ok.__dict__
    assert fields["event_id"] == event.event_id
    assert (fields["team"], fields["surface"], fields["provider"], fields["model"]) == (
        "acme",
        "chat_completions",
        "sim",
        "gpt-4o",
    )
    assert fields["status"] == 200 and fields["duration_ms"] > 0 and fields["added_ms"] >= 0
    assert event.event_id in ok.getMessage() and "200" in ok.getMessage()
    assert refused.__dict__["status"] == 401 and refused.__dict__["event_id"] is None
    for record in lines:
        text = record.getMessage() + repr(record.__dict__)
        assert gw.key not in text and "sk-wrong-key" not in text and PROMPT not in text


def test_probes(gw: Gateway) -> None:
    for path in ("/livez", "/healthz", "/readyz"):
        response = httpx.get(f"{gw.url}{path}", timeout=5)
        assert response.status_code == 200 and response.json() == {"status": "ok"}, path


@pytest.mark.parametrize("spool_bytes", [0, 1 << 20])
def test_ready_only_while_an_event_would_be_kept(tmp_path: Path, spool_bytes: int) -> None:
    """Kafka unreachable: ready while the spool has room, not without one."""
    settings = IngressSettings(
        kafka_bootstrap_servers=f"127.0.0.1:{free_port()}",  # nothing listens there
        data_dir=tmp_path,
        ingress_spool_max_bytes=spool_bytes,
        publish_flush_timeout_seconds=0,
    )
    app = create_app(settings, GatewayConfig(), kafka_publisher(settings))
    with ServerThread(app) as server:
        live = httpx.get(f"{server.url}/livez", timeout=5)
        ready = httpx.get(f"{server.url}/readyz", timeout=5)
    assert live.status_code == 200
    if spool_bytes:
        assert ready.status_code == 200, ready.text
    else:
        assert ready.status_code == 503
        assert "Kafka" in ready.json()["reason"]
