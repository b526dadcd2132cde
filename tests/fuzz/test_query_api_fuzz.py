"""Schemathesis against the query service's own OpenAPI description, in process, on the
real ClickHouse engine holding two teams' usage: valid and invalid parameters alike never
get a 500, every answer is in the documented status codes, content types and schemas, and
every error is ``{"error": {"message", "type"}}`` (a 400 also naming its ``param``)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import pytest
import schemathesis
from fastapi import FastAPI
from hypothesis import given
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from meterline.common.alerts import ClickHouseAlertStore
from meterline.common.clickhouse import RAW_COLUMNS, connect
from meterline.common.config import GatewayConfig, GatewayKey, TeamConfig, hash_key, new_key
from meterline.common.migrations import migrate
from meterline.consumer.enrich import Enricher
from meterline.query.app import create_app
from meterline.query.settings import QuerySettings
from tests.fuzz.settings import FUZZ_HTTP
from tests.security.conftest import EVENTS, PRICES, TEAMS
from tests.support.alerts import budget_alert

pytestmark = pytest.mark.clickhouse

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]


@dataclass
class Service:
    app: FastAPI
    keys: dict[str, str]
    ids: dict[str, list[str]]
    """Event ids per team."""


@pytest.fixture(scope="module")
def service(clickhouse_url: str) -> Iterator[Service]:
    database = f"test_{uuid.uuid4().hex[:12]}"
    client = connect(clickhouse_url, database)
    migrate(client)
    keys = {team: new_key() for team in TEAMS}
    config = GatewayConfig(
        teams=[
            TeamConfig(id=team, keys=[GatewayKey(name="reports", sha256=hash_key(key))])
            for team, key in keys.items()
        ]
    )
    client.insert(
        "usage_events",
        [Enricher(PRICES, config).row(e) for e in EVENTS],
        column_names=RAW_COLUMNS,
    )
    app = create_app(
        QuerySettings(), client_factory=lambda: connect(clickhouse_url, database), config=config
    )
    ids = {team: [e.event_id for e in EVENTS if e.team_id == team] for team in TEAMS}
    store = ClickHouseAlertStore(client)
    for team in TEAMS:
        asyncio.run(store.raise_alert(budget_alert(team_id=team), ["ops"]))
    try:
        yield Service(app, keys, ids)
    finally:
        client.command(f"DROP DATABASE IF EXISTS {database}")


def assert_in_our_format(response: Any) -> None:
    status = response.status_code
    assert status < 500, response.text
    # Schemathesis keeps every value of a header, as a list.
    content_type = (response.headers.get("content-type") or [""])[0]
    if status >= 400 or not content_type.startswith("text/csv"):
        assert content_type == "application/json", content_type
    if status >= 400:
        body = response.json()
        assert list(body) == ["error"]
        error = body["error"]
        assert isinstance(error["message"], str) and error["message"]
        assert isinstance(error["type"], str) and error["type"]
        if status == 400:
            assert error["message"].startswith(error["param"] + ": ")


def operation_strategy(service: Service, path: str) -> Any:
    schema = schemathesis.openapi.from_asgi("/openapi.json", service.app)
    operation = schema[path]["GET"]
    return st.one_of(
        operation.as_strategy(generation_mode=GenerationMode.POSITIVE),
        operation.as_strategy(generation_mode=GenerationMode.NEGATIVE),
    )


def test_report_parameters(service: Service) -> None:
    strategy = operation_strategy(service, "/v1/report")
    statuses: set[int] = set()

    @FUZZ_HTTP
    @given(case=strategy, team=st.sampled_from(TEAMS))
    def run(case: Any, team: str) -> None:
        response = case.call(headers={"Authorization": f"Bearer {service.keys[team]}"})
        statuses.add(response.status_code)
        assert_in_our_format(response)
        case.validate_response(response, checks=CHECKS)

    run()
    # The budget reached both the answers and the refusals.
    assert {200, 400} <= statuses


def test_generation_ids(service: Service) -> None:
    strategy = operation_strategy(service, "/v1/generation")
    # Real ids of both teams as well as generated strings: own ids answer, the other
    # team's are a 404 like ids that do not exist.
    ids = st.sampled_from(service.ids["acme"] + service.ids["globex"])
    statuses: set[int] = set()

    @FUZZ_HTTP
    @given(case=strategy, team=st.sampled_from(TEAMS), real_id=st.none() | ids)
    def run(case: Any, team: str, real_id: str | None) -> None:
        if real_id is not None:
            case.query = {"id": real_id}
        response = case.call(headers={"Authorization": f"Bearer {service.keys[team]}"})
        statuses.add(response.status_code)
        assert_in_our_format(response)
        case.validate_response(response, checks=CHECKS)
        if real_id is not None:
            own = real_id in service.ids[team]
            assert response.status_code == (200 if own else 404), response.text
            if own:
                assert response.json()["id"] == real_id

    run()
    assert {200, 400, 404} <= statuses


def test_credits(service: Service) -> None:
    strategy = operation_strategy(service, "/v1/credits")
    answers: dict[str, set[tuple[str, str]]] = {team: set() for team in TEAMS}

    @FUZZ_HTTP
    @given(case=strategy, team=st.sampled_from(TEAMS))
    def run(case: Any, team: str) -> None:
        response = case.call(headers={"Authorization": f"Bearer {service.keys[team]}"})
        assert_in_our_format(response)
        case.validate_response(response, checks=CHECKS)
        # It takes no parameters: whatever else a request carries, the team's credits.
        assert response.status_code == 200, response.text
        body = response.json()
        answers[team].add((body["balance"], body["total_used"]))

    run()
    # One answer per team whatever was sent; no credit configured, so the balance is minus
    # what was used, and the teams' totals differ.
    for team, seen in answers.items():
        assert len(seen) == 1, (team, seen)
        [(balance, used)] = seen
        assert Decimal(balance) == -Decimal(used), team
    assert len({next(iter(seen)) for seen in answers.values()}) == len(TEAMS)


def test_alerts_parameters(service: Service) -> None:
    strategy = operation_strategy(service, "/v1/alerts")
    statuses: set[int] = set()

    @FUZZ_HTTP
    @given(case=strategy, team=st.sampled_from(TEAMS))
    def run(case: Any, team: str) -> None:
        response = case.call(headers={"Authorization": f"Bearer {service.keys[team]}"})
        statuses.add(response.status_code)
        assert_in_our_format(response)
        case.validate_response(response, checks=CHECKS)
        if response.status_code == 200:
            assert {a["team_id"] for a in response.json()["results"]} <= {team}

    run()
    assert {200, 400} <= statuses


@pytest.mark.parametrize("path", ["/v1/report", "/v1/generation", "/v1/credits", "/v1/alerts"])
def test_authorization_headers(service: Service, path: str) -> None:
    strategy = operation_strategy(service, path)

    @FUZZ_HTTP
    @given(
        case=strategy,
        # A value with leading whitespace is one no HTTP client sends (requests refuses it).
        authorization=st.text(
            st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=80
        ).filter(lambda value: not value.startswith(" ")),
    )
    def run(case: Any, authorization: str) -> None:
        response = case.call(headers={"Authorization": authorization})
        assert_in_our_format(response)
        assert response.status_code == 401, response.text
        assert response.json()["error"]["type"] == "authentication_error"

    run()
