"""``meterline all-in-one`` on the real Kafka broker (so with the ingress' spool and the
consumer's partitions) and the embedded engine, in front of the provider simulator: after
real traffic its one ``/metrics`` page holds the three services' series and the process'
once, its ``/readyz`` answers for every part, and every metric the Grafana dashboard and
the Prometheus alert rules query is one it serves."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from meterline.all_in_one.app import AllInOne, AllInOneSettings
from meterline.all_in_one.settings import LocalLogSettings
from meterline.common.clickhouse import connect
from meterline.common.config import GatewayConfig
from meterline.common.migrations import migrate
from meterline.consumer.settings import ConsumerSettings
from meterline.ingress.settings import IngressSettings
from meterline.query.settings import QuerySettings
from meterline.simulator.app import create_app as create_simulator
from tests.support.gateway import SYSTEM_KEY, SYSTEM_KEY_ENV, ServerThread, gateway_config
from tests.support.prometheus import metric_names, names, parse, value

pytestmark = [pytest.mark.kafka, pytest.mark.clickhouse]

FILES = Path(__file__).resolve().parents[3] / "deploy" / "helm" / "meterline" / "files"
MESSAGES = [{"role": "user", "content": "Count me."}]


@dataclass
class Scraped:
    before: str
    after: str
    ready: httpx.Response


async def create_topic(bootstrap: str, topic: str) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, num_partitions=2, replication_factor=1)])
    finally:
        await admin.close()


def wait_for(condition: Any, what: str, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting until {what}"
        time.sleep(0.2)


@pytest.fixture(scope="module")
def scraped(
    tmp_path_factory: pytest.TempPathFactory, clickhouse_url: str, kafka_bootstrap: str
) -> Iterator[Scraped]:
    suffix = uuid.uuid4().hex[:10]
    topic, database = f"usage-events-{suffix}", f"test_{suffix}"
    asyncio.run(create_topic(kafka_bootstrap, topic))
    migrate(connect(clickhouse_url, database))
    shared: dict[str, Any] = {
        "clickhouse_url": clickhouse_url,
        "clickhouse_database": database,
        "data_dir": tmp_path_factory.mktemp("all-in-one"),
        "kafka_bootstrap_servers": kafka_bootstrap,
        "usage_topic": topic,
    }
    settings = AllInOneSettings(
        IngressSettings(**shared),
        ConsumerSettings(**shared, consumer_group=f"group-{suffix}", max_batch_seconds=0.2),
        QuerySettings(**shared),
        LocalLogSettings(**shared),
    )
    key = "mk-" + uuid.uuid4().hex
    with pytest.MonkeyPatch.context() as patch, ServerThread(create_simulator()) as simulator:
        patch.setenv(SYSTEM_KEY_ENV, SYSTEM_KEY)
        patch.setenv("METERLINE_ALERT_DELIVER", "false")
        document = gateway_config(simulator.url, {"acme": key}).model_dump(mode="json")
        document["teams"][0]["budgets"] = [
            {"id": "daily", "amount_usd": "1000", "period": "daily", "mode": "hard"}
        ]
        app = AllInOne(settings, GatewayConfig.model_validate(document))
        with ServerThread(app) as server:
            base = server.url
            wait_for(lambda: httpx.get(f"{base}/readyz").status_code == 200, "ready")
            before = httpx.get(f"{base}/metrics", timeout=20).text
            auth = {"authorization": f"Bearer {key}"}
            chat = f"{base}/v1/chat/completions"
            for body in (
                {"model": "sim/gpt-4o", "messages": MESSAGES},
                {"model": "sim/gpt-4o", "messages": MESSAGES},
                {"model": "sim/gpt-4o", "messages": MESSAGES, "stream": True},
                {"model": "down/gpt-4o", "messages": MESSAGES},
            ):
                httpx.post(chat, json=body, headers=auth, timeout=20)
            report = {"group_by": "model", "start_date": "2026-01-01", "end_date": "2026-01-02"}
            assert httpx.get(f"{base}/v1/report", params=report, headers=auth).status_code == 200

            def written() -> bool:
                text = httpx.get(f"{base}/metrics", timeout=20).text
                return value(text, "meterline_consumer_events_written_total") >= 3

            wait_for(written, "the consumer wrote the events")
            after = httpx.get(f"{base}/metrics", timeout=20).text
            yield Scraped(before, after, httpx.get(f"{base}/readyz", timeout=20))


def test_one_page_holds_every_services_series_and_the_process_once(scraped: Scraped) -> None:
    before, after = scraped.before, scraped.after

    def moved(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    ok = {"surface": "chat_completions", "provider": "sim", "status_class": "2xx"}
    assert moved("meterline_ingress_requests_total", **ok) == 3
    assert moved("meterline_ingress_upstream_errors_total", provider="down", kind="connect") == 1
    assert moved("meterline_ingress_added_latency_seconds_count", provider="sim") == 3
    assert moved("meterline_ingress_time_to_first_token_seconds_count", provider="sim") == 1
    assert moved("meterline_ingress_events_sent_total") == 3
    assert moved("meterline_consumer_events_written_total") == 3
    assert moved("meterline_consumer_insert_duration_seconds_count") >= 1
    assert moved("meterline_query_requests_total", route="/v1/report", status_class="2xx") == 1
    assert value(after, "meterline_consumer_assigned_partitions") == 2
    assert value(after, "meterline_query_warehouse_up") == 1
    assert {"meterline_budget_blocked_total", "meterline_alert_deliveries_total"} <= names(after)
    # Each series once: the process' are not repeated per service.
    samples = [(s.name, tuple(sorted(s.labels.items()))) for s in parse(after)]
    assert len(samples) == len(set(samples))
    assert [s.name for s in parse(after)].count("process_cpu_seconds_total") == 1
    types = [line.split()[2] for line in after.splitlines() if line.startswith("# TYPE ")]
    assert len(types) == len(set(types))


def test_ready_when_every_part_is(scraped: Scraped) -> None:
    assert scraped.ready.status_code == 200, scraped.ready.text
    assert scraped.ready.json() == {"status": "ok"}


def test_every_dashboard_panel_queries_served_metrics(scraped: Scraped) -> None:
    dashboard = json.loads((FILES / "grafana-dashboard.json").read_text())
    served = names(scraped.after)
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    assert dashboard["panels"]
    titles = set()
    for panel in dashboard["panels"]:
        titles.add(panel["title"])
        assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            found = metric_names(target["expr"])
            assert found, (panel["title"], target["expr"])
            assert found <= served, (panel["title"], found - served)
    assert {
        "Requests per second",
        "5xx rate",
        "Added latency p50 / p99",
        "Time to first token (streams)",
        "Consumer lag",
        "Batch rows",
        "Insert latency",
        "Dead letters",
        "Breaker and warehouse",
        "Spool",
        "Budget blocked requests",
        "Alerts sent / failed",
    } <= titles


def test_alert_rules_name_only_served_metrics(scraped: Scraped) -> None:
    rules = yaml.safe_load((FILES / "prometheus-rules.yaml").read_text())
    served = names(scraped.after)
    alerts = {}
    for group in rules["groups"]:
        for rule in group["rules"]:
            found = metric_names(rule["expr"])
            assert found, rule["alert"]
            assert found <= served, (rule["alert"], found - served)
            assert rule["labels"]["severity"] in {"warning", "critical"}
            assert rule["annotations"]["summary"]
            alerts[rule["alert"]] = found
    assert "meterline_consumer_lag_messages" in alerts["MeterlineConsumerLagGrowing"]
    assert "meterline_ingress_spool_bytes" in alerts["MeterlineSpoolGrowing"]
    assert "meterline_consumer_dead_letters_total" in alerts["MeterlineDeadLetters"]
    assert "meterline_consumer_breaker_open" in alerts["MeterlineConsumerBreakerOpen"]
    assert "meterline_ingress_publish_failures_total" in alerts["MeterlinePublishFailures"]
    assert "meterline_ingress_requests_total" in alerts["MeterlineHighErrorRate"]
    assert {"meterline_consumer_warehouse_up", "meterline_query_warehouse_up"} <= alerts[
        "MeterlineWarehouseUnreachable"
    ]
