"""GET /v1/alerts on the real engine: the caller's team's alerts only, newest first, each
once however many replicas raised it, with its deliveries; kind, since and limit filter; a
bad parameter is a 400 naming it, in the query service's error format."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from fastapi.testclient import TestClient

from meterline.all_in_one.app import QUERY_PATHS
from meterline.common.alerts import Alert, ClickHouseAlertStore
from meterline.common.clickhouse import connect
from meterline.common.config import GatewayConfig, GatewayKey, TeamConfig, hash_key
from meterline.common.migrations import migrate
from meterline.query.app import create_app
from meterline.query.settings import QuerySettings
from tests.support.alerts import budget_alert

pytestmark = pytest.mark.clickhouse

KEYS = {"acme": "ml_acme_alerts_key", "globex": "ml_globex_alerts_key"}
START = datetime(2026, 3, 1, 8, tzinfo=UTC)
PAIRS = (("user", "ana"), ("tag", "feature:x"))


def make_alerts() -> list[Alert]:
    """Every six hours for a week, acme's and (every third) globex's, of every kind."""
    alerts = []
    for n in range(28):
        team = "globex" if n % 3 == 0 else "acme"
        kind = ("budget_threshold", "budget_reset", "spike")[n % 3 if n % 3 else (n // 3) % 3]
        alerts.append(
            budget_alert(
                team_id=team,
                kind=kind,
                subject=f"budget-{n}" if kind != "spike" else "model",
                scope=(("model", f"model-{n}"),) if kind == "spike" else PAIRS,
                threshold_percent=80 if kind == "budget_threshold" else None,
                spend_usd=Decimal(n) + Decimal("0.000000000001"),
                baseline_usd=Decimal("3.5") if kind == "spike" else None,
                raised_at=START + timedelta(hours=6 * n),
            )
        )
    return alerts


ALERTS = make_alerts()


@pytest.fixture(scope="module")
def api(clickhouse_url: str) -> Iterator[TestClient]:
    database = f"test_{uuid.uuid4().hex[:12]}"
    client = connect(clickhouse_url, database)
    migrate(client)

    async def raise_all() -> None:
        # Two replicas raise every alert; each must be listed once.
        one, two = (
            ClickHouseAlertStore(client),
            ClickHouseAlertStore(connect(clickhouse_url, database)),
        )
        for alert in ALERTS:
            await asyncio.gather(one.raise_alert(alert, ["ops"]), two.raise_alert(alert, ["ops"]))
        [due, *_] = await one.due(datetime(2100, 1, 1, tzinfo=UTC), 100)
        at = datetime(2026, 3, 20, tzinfo=UTC)
        await one.record(
            replace(
                due.delivery,
                status="delivered",
                attempts=2,
                last_attempt_at=at,
                last_http_status=200,
                delivered_at=at,
            )
        )

    asyncio.run(raise_all())
    config = GatewayConfig(
        teams=[
            TeamConfig(id=team, keys=[GatewayKey(name="k", sha256=hash_key(key))])
            for team, key in KEYS.items()
        ]
    )
    app = create_app(
        QuerySettings(), client_factory=lambda: connect(clickhouse_url, database), config=config
    )
    try:
        # The stored deliveries are the test's own: this service must not send them.
        with pytest.MonkeyPatch.context() as patch:
            patch.setenv("METERLINE_ALERT_DELIVER", "false")
            with TestClient(app) as api_client:
                yield api_client
    finally:
        client.command(f"DROP DATABASE IF EXISTS {database}")


def get(api: TestClient, team: str = "acme", status: int = 200, **params: str) -> Any:
    response = api.get(
        "/v1/alerts", params=params, headers={"Authorization": f"Bearer {KEYS[team]}"}
    )
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    return response.json()


def ids(body: Any) -> list[str]:
    return [item["alert_id"] for item in body["results"]]


def newest_first(alerts: list[Alert]) -> list[str]:
    return [a.alert_id for a in sorted(alerts, key=lambda a: a.raised_at, reverse=True)]


def test_a_team_sees_its_own_alerts_once_each_newest_first(api: TestClient) -> None:
    for team in KEYS:
        assert ids(get(api, team)) == newest_first([a for a in ALERTS if a.team_id == team])


def test_an_alert_has_the_webhook_body_fields_and_its_deliveries(api: TestClient) -> None:
    results = {item["alert_id"]: item for item in get(api, "globex")["results"]}
    first = ALERTS[0]
    item = results[first.alert_id]
    assert item == {
        "alert_id": first.alert_id,
        "team_id": "globex",
        "kind": first.kind,
        "subject": first.subject,
        "scope": [
            {"dimension": "user", "value": "ana"},
            {"dimension": "tag", "value": "feature:x"},
        ],
        "period_start": "2026-03-01T00:00:00.000Z",
        "threshold_percent": first.threshold_percent,
        "spend_usd": "0.000000000001",
        "limit_usd": "100",
        "baseline_usd": None,
        "message": first.message,
        "raised_at": "2026-03-01T08:00:00.000Z",
        "deliveries": [
            {
                "webhook": "ops",
                "status": "delivered",
                "attempts": 2,
                "last_attempt_at": "2026-03-20T00:00:00.000Z",
                "last_http_status": 200,
                "last_error": "",
                "delivered_at": "2026-03-20T00:00:00.000Z",
                "next_attempt_at": None,
            }
        ],
    }
    pending = results[ALERTS[3].alert_id]["deliveries"]
    assert [(d["status"], d["attempts"], d["delivered_at"]) for d in pending] == [
        ("pending", 0, None)
    ]
    assert pending[0]["next_attempt_at"] == "2026-03-02T02:00:00.000Z"


def test_kind_since_and_limit_filter(api: TestClient) -> None:
    acme = [a for a in ALERTS if a.team_id == "acme"]
    spikes = [a for a in acme if a.kind == "spike"]
    assert spikes and ids(get(api, kind="spike")) == newest_first(spikes)
    resets_and_spikes = [a for a in acme if a.kind in ("spike", "budget_reset")]
    assert ids(get(api, kind="spike,budget_reset")) == newest_first(resets_and_spikes)
    since = datetime(2026, 3, 4, tzinfo=UTC)
    later = [a for a in acme if a.raised_at >= since]
    assert 0 < len(later) < len(acme)
    assert ids(get(api, since="2026-03-04")) == newest_first(later)
    assert ids(get(api, since="2026-03-04T02:00:00+02:00")) == newest_first(later)
    assert ids(get(api, since="2026-03-04T00:00:00")) == newest_first(later)
    assert ids(get(api, since="2026-03-04T00:00:00.001Z")) == newest_first(
        [a for a in later if a.raised_at > since]
    )
    assert ids(get(api, limit="3")) == newest_first(acme)[:3]
    assert ids(get(api, limit="1000", kind="spike", since="2026-03-04")) == newest_first(
        [a for a in later if a.kind == "spike"]
    )
    assert get(api, since="2030-01-01") == {"results": []}
    assert ids(get(api, since="0001-01-01")) == newest_first(acme)
    assert ids(get(api, since="0001-01-01T00:00:00+00:00")) == newest_first(acme)
    assert get(api, since="9999-12-31") == {"results": []}


@pytest.mark.parametrize(
    ("params", "param"),
    [
        ({"limit": "0"}, "limit"),
        ({"limit": "1001"}, "limit"),
        ({"limit": "ten"}, "limit"),
        ({"kind": "budget_exceeded"}, "kind"),
        ({"kind": "spike,"}, "kind"),
        ({"since": "yesterday"}, "since"),
        ({"since": "2026-13-01"}, "since"),
        ({"team_id": "globex"}, "team_id"),
        ({"start_date": "2026-03-01"}, "start_date"),
    ],
)
def test_a_bad_parameter_is_a_400_naming_it(
    api: TestClient, params: dict[str, str], param: str
) -> None:
    body = get(api, status=400, **params)
    assert body["error"]["param"] == param
    assert body["error"]["type"] == "invalid_request_error"
    assert body["error"]["message"].startswith(f"{param}: ")


def test_a_repeated_parameter_is_a_400(api: TestClient) -> None:
    response = api.get(
        "/v1/alerts?kind=spike&kind=budget_reset",
        headers={"Authorization": f"Bearer {KEYS['acme']}"},
    )
    assert response.status_code == 400
    assert response.json()["error"]["param"] == "kind"


@pytest.mark.parametrize("header", [None, "Bearer nope", "Basic abc"])
def test_without_a_valid_key_it_is_a_401(api: TestClient, header: str | None) -> None:
    headers = {"Authorization": header} if header else {}
    response = api.get("/v1/alerts", headers=headers)
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"
    assert json.loads(response.text)["error"]["type"] == "authentication_error"


def test_the_all_in_one_routes_it_to_the_query_service() -> None:
    assert "/v1/alerts".startswith(QUERY_PATHS)
