"""``/v1/budgets`` on the real engine: the configured budgets and the API's, made, changed
and deleted by a key allowed to (others get a 403), validated like the report (a 400 naming
the field), a configured budget not changeable through the API (409); the status' spend,
limit, remaining and refusals; and the ingresses' internal read with its token."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr

from meterline.common.budget_spend import (
    INTERNAL_SPEND_PATH,
    SpendAsk,
    answer_from_json,
    ask_to_json,
)
from meterline.common.budgets import Budget, window
from meterline.common.clickhouse import RAW_COLUMNS, connect
from meterline.common.config import GatewayConfig, TeamConfig, hash_key, new_key
from meterline.common.migrations import migrate
from meterline.common.pricing import PerMillionRates, StaticPrices
from meterline.consumer.enrich import Enricher
from meterline.query.app import create_app
from meterline.query.settings import QuerySettings
from tests.support.events import usage_event

pytestmark = pytest.mark.clickhouse

KEYS = {"reader": new_key(), "admin": new_key(), "other": new_key()}
TOKEN = "internal-test-token"
RATES = PerMillionRates.text(Decimal(1), Decimal(0), Decimal(0), Decimal(0))


def config() -> GatewayConfig:
    return GatewayConfig.model_validate(
        {
            "teams": [
                {
                    "id": "acme",
                    "timezone": "Europe/Berlin",
                    "keys": [
                        {"name": "app", "sha256": hash_key(KEYS["reader"])},
                        {"name": "ops", "sha256": hash_key(KEYS["admin"]), "manage_budgets": True},
                    ],
                    "budgets": [{"id": "monthly", "amount_usd": "10"}],
                },
                {"id": "globex", "keys": [{"name": "app", "sha256": hash_key(KEYS["other"])}]},
            ]
        }
    )


@pytest.fixture(scope="module")
def api(clickhouse_url: str) -> Iterator[TestClient]:
    database = f"test_{uuid.uuid4().hex[:12]}"
    client = connect(clickhouse_url, database)
    migrate(client)
    team = TeamConfig(id="acme")
    enricher = Enricher(StaticPrices({("openai", "gpt-x"): RATES}), GatewayConfig(teams=[team]))
    now = datetime.now(UTC)
    client.insert(
        "usage_events",
        [
            enricher.row(
                usage_event(
                    started_at=now, user_id=user, input_tokens=millions * 1_000_000, output_tokens=0
                )
            )
            for user, millions in (("ana", 2), ("bo", 3))
        ],
        column_names=list(RAW_COLUMNS),
    )
    settings = QuerySettings(internal_token=SecretStr(TOKEN))
    app = create_app(
        settings, client_factory=lambda: connect(clickhouse_url, database), config=config()
    )
    try:
        with TestClient(app) as api_client:
            yield api_client
    finally:
        client.command(f"DROP DATABASE IF EXISTS {database}")


def auth(who: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {KEYS[who]}"}


def put(api: TestClient, who: str, body: Any) -> Any:
    return api.put("/v1/budgets", json=body, headers=auth(who))


def listed(api: TestClient, who: str = "reader") -> dict[str, dict[str, Any]]:
    response = api.get("/v1/budgets", headers=auth(who))
    assert response.status_code == 200, response.text
    return {b["id"]: b for b in response.json()["results"]}


def test_a_budget_made_changed_and_deleted_through_the_api(api: TestClient) -> None:
    made = put(api, "admin", {"id": "per-user", "amount_usd": "4", "scope": {"user": "*"}})
    assert made.status_code == 200, made.text
    assert made.json()["source"] == "api" and made.json()["timezone"] == "Europe/Berlin"
    budgets = listed(api)
    assert budgets["monthly"]["source"] == "config"
    assert budgets["per-user"]["amount_usd"] == "4"
    # The same id again changes it.
    changed = put(
        api,
        "admin",
        {"id": "per-user", "amount_usd": "2.5", "scope": {"user": "*"}, "period": "daily"},
    )
    assert changed.status_code == 200
    assert listed(api)["per-user"]["period"] == "daily"
    # Another team sees none of them.
    assert listed(api, "other") == {}

    deleted = api.delete("/v1/budgets", params={"budget_id": "per-user"}, headers=auth("admin"))
    assert deleted.status_code == 200 and deleted.json() == {"deleted": "per-user"}
    assert "per-user" not in listed(api)
    again = api.delete("/v1/budgets", params={"budget_id": "per-user"}, headers=auth("admin"))
    assert again.status_code == 404


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"id": "x", "amount_usd": "-1"}, "amount_usd"),
        ({"id": "x", "amount_usd": "1", "period": "hourly"}, "period"),
        ({"id": "x", "amount_usd": "1", "timezone": "Mars/Base"}, "timezone"),
        ({"id": "x", "amount_usd": "1", "scope": {"team": "a"}}, "scope.team"),
        ({"id": "x", "amount_usd": "1", "colour": "red"}, "colour"),
        ({"amount_usd": "1"}, "id"),
        (["not", "an", "object"], "body"),
    ],
)
def test_a_bad_budget_is_a_400_naming_the_field(api: TestClient, body: Any, param: str) -> None:
    response = put(api, "admin", body)
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["param"] == param and error["message"].startswith(f"{param}: ")
    assert "x" not in listed(api)


def test_only_a_managing_key_changes_budgets_and_configured_ones_stay(api: TestClient) -> None:
    refused = put(api, "reader", {"id": "x", "amount_usd": "1"})
    assert refused.status_code == 403 and "manage_budgets" in refused.json()["error"]["message"]
    conflict = put(api, "admin", {"id": "monthly", "amount_usd": "99"})
    assert conflict.status_code == 409
    gone = api.delete("/v1/budgets", params={"budget_id": "monthly"}, headers=auth("admin"))
    assert gone.status_code == 409
    assert listed(api)["monthly"]["amount_usd"] == "10"


def test_the_status_has_each_values_spend_limit_and_reset(api: TestClient) -> None:
    assert (
        put(api, "admin", {"id": "users", "amount_usd": "2.5", "scope": {"user": "*"}}).status_code
        == 200
    )
    response = api.get("/v1/budgets/status", headers=auth("reader"))
    assert response.status_code == 200, response.text
    status = {s["budget"]["id"]: s for s in response.json()["results"]}
    month = window("monthly", "Europe/Berlin", datetime.now(UTC))
    assert month.start is not None
    assert status["monthly"]["period_start"] == month.start.isoformat().replace("+00:00", "Z")
    assert status["monthly"]["values"] == [
        {"value": {}, "spend": "5", "limit": "10", "remaining": "5", "blocked": 0}
    ]
    assert status["users"]["values"] == [
        {"value": {"user": "bo"}, "spend": "3", "limit": "2.5", "remaining": "0", "blocked": 0},
        {"value": {"user": "ana"}, "spend": "2", "limit": "2.5", "remaining": "0.5", "blocked": 0},
    ]
    unknown = api.get("/v1/budgets/status", params={"budget_id": "nope"}, headers=auth("reader"))
    assert unknown.status_code == 404
    bad = api.get("/v1/budgets/status", params={"group_by": "user"}, headers=auth("reader"))
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "group_by"


def test_the_internal_read_needs_its_token_and_answers_spend_and_api_budgets(
    api: TestClient,
) -> None:
    budget = Budget.model_validate({"id": "monthly", "amount_usd": "10"})
    ask = SpendAsk([("acme", budget, None)], {}, api_budgets=True)
    wrong = api.post(INTERNAL_SPEND_PATH, json=ask_to_json(ask), headers=auth("admin"))
    assert wrong.status_code == 401
    bad = api.post(
        INTERNAL_SPEND_PATH, json={"budgets": [{}]}, headers={"Authorization": f"Bearer {TOKEN}"}
    )
    assert bad.status_code == 400
    answered = api.post(
        INTERNAL_SPEND_PATH, json=ask_to_json(ask), headers={"Authorization": f"Bearer {TOKEN}"}
    )
    assert answered.status_code == 200, answered.text
    answer = answer_from_json(answered.json())
    assert answer.committed == {("acme", "monthly"): {(): Decimal(5)}}
    assert "acme" in answer.api_budgets
