"""The query service's ``/metrics`` after real requests (latency by route template, rows
returned, status classes, the warehouse's state), its access log, and its readiness
following the warehouse."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import cast

import pytest
from clickhouse_connect.driver.client import Client
from fastapi.testclient import TestClient

from meterline.common.config import GatewayConfig, GatewayKey, TeamConfig, hash_key, new_key
from meterline.query.app import create_app
from meterline.query.settings import QuerySettings
from tests.integration.consumer.test_warehouse_outage import FlakyClickHouse
from tests.support.prometheus import names, value

pytestmark = pytest.mark.clickhouse

KEY = new_key()
CONFIG = GatewayConfig(
    teams=[TeamConfig(id="acme", keys=[GatewayKey(name="k", sha256=hash_key(KEY))])]
)
REPORT = {"group_by": "model", "start_date": "2026-01-01", "end_date": "2026-01-31"}


def test_metrics_move_with_requests(
    clickhouse_factory: Callable[[], Client],
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("METERLINE_ALERT_DELIVER", "false")
    app = create_app(QuerySettings(), client_factory=clickhouse_factory, config=CONFIG)
    auth = {"Authorization": f"Bearer {KEY}"}
    with TestClient(app) as api, caplog.at_level(logging.INFO, logger="meterline.access"):
        before = api.get("/metrics").text
        assert api.get("/v1/report", params=REPORT, headers=auth).status_code == 200
        assert api.get("/v1/report", params=REPORT, headers=auth).status_code == 200
        event = "6f1c2b8e-0d5a-4c1e-9a43-2b9f6c7d8e01"
        assert api.get("/v1/generation", params={"id": event}, headers=auth).status_code == 404
        assert api.get("/v1/report", params=REPORT).status_code == 401
        after = api.get("/metrics").text

    def moved(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    requests = "meterline_query_requests_total"
    assert moved(requests, route="/v1/report", status_class="2xx") == 2
    assert moved(requests, route="/v1/report", status_class="4xx") == 1
    assert moved(requests, route="/v1/generation", status_class="4xx") == 1
    assert moved("meterline_query_request_duration_seconds_count", route="/v1/report") == 3
    assert moved("meterline_query_rows_returned_count", route="/v1/report") == 2
    assert moved("meterline_query_rows_returned_count", route="/v1/generation") == 1
    assert value(after, "meterline_query_warehouse_up") == 1
    assert {"meterline_alert_deliveries_total", "process_cpu_seconds_total"} <= names(after)
    # The raw path is never a label: it may hold an event id.
    assert event not in after

    lines = [r for r in caplog.records if r.name == "meterline.access"]
    assert [(r.__dict__["route"], r.__dict__["status"]) for r in lines] == [
        ("/v1/report", 200),
        ("/v1/report", 200),
        ("/v1/generation", 404),
        ("/v1/report", 401),
    ]
    assert lines[0].__dict__["team"] == "acme" and lines[3].__dict__["team"] is None
    assert all(KEY not in r.getMessage() + repr(r.__dict__) for r in lines)


def test_ready_only_while_the_warehouse_answers(clickhouse: Client) -> None:
    flaky = FlakyClickHouse(clickhouse)
    app = create_app(QuerySettings(), client_factory=lambda: cast(Client, flaky))
    with TestClient(app) as api:
        assert api.get("/readyz").status_code == 200
        flaky.down = True
        ready = api.get("/readyz")
        assert ready.status_code == 503 and "warehouse" in ready.json()["reason"]
        assert value(api.get("/metrics").text, "meterline_query_warehouse_up") == 0
        assert api.get("/livez").json() == {"status": "ok"}
        flaky.down = False
        assert api.get("/readyz").status_code == 200
        assert value(api.get("/metrics").text, "meterline_query_warehouse_up") == 1
