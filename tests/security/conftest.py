"""Two teams' usage in one warehouse (the real ClickHouse engine), and the query service in
front of it.

Both teams use the same users, models, providers, key names and tags, so any filter that
slipped past the team scope would find the other team's rows; their token counts differ by
team, so a row that mixed the teams could not equal either team's sums. Some values are
SQL fragments, stored as data: a filter naming one must match exactly that row."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest
from clickhouse_connect.driver.client import Client
from fastapi.testclient import TestClient

from meterline.common.clickhouse import RAW_COLUMNS, connect
from meterline.common.config import GatewayConfig, GatewayKey, TeamConfig, hash_key, new_key
from meterline.common.events import UsageEvent
from meterline.common.migrations import migrate
from meterline.common.pricing import StaticPrices
from meterline.consumer.enrich import Enricher
from meterline.query.app import create_app
from meterline.query.settings import QuerySettings
from tests.support.prices import RATES

TEAMS = ("acme", "globex")
INJECTION_USER = "x' OR 1=1 --"
INJECTION_TAG = "t'); DROP TABLE usage_events; --"
USERS = ("u1", "u2", INJECTION_USER, None)
MODELS = (("gpt-x", "openai"), ("claude-x", "anthropic"))
TAG_SETS: tuple[list[str], ...] = (["a"], ["a", "b"], [], [INJECTION_TAG], ["b", INJECTION_TAG])
KEY_NAMES = ("prod", "dev")
START = datetime(2026, 5, 1, 0, 30, tzinfo=UTC)
FIRST_DAY, LAST_DAY = "2026-05-01", "2026-05-03"
PRICES = StaticPrices({("openai", "gpt-x"): RATES, ("anthropic", "claude-x"): RATES})


def make_events() -> list[UsageEvent]:
    events = []
    for n in range(160):
        team = TEAMS[n % 2]
        model, provider = MODELS[(n // 2) % 2]
        events.append(
            UsageEvent(
                event_id=str(uuid.UUID(int=10_000 + n)),
                team_id=team,
                api_key_name=KEY_NAMES[(n // 4) % 2],
                api_surface="chat_completions",
                started_at=START + timedelta(minutes=37 * n),
                duration_ms=50,
                model_requested=f"{provider}/{model}",
                model=model,
                provider=provider,
                credential_type=("system", "byok")[(n // 3) % 2],
                streamed=False,
                status="success",
                http_status=200,
                # acme's counts are multiples of 1000, globex's are not: a mixed sum
                # equals neither team's.
                input_tokens=1000 * (n + 1) if team == "acme" else 7 * n + 3,
                output_tokens=10 * n + 1,
                user_id=USERS[(n // 2) % len(USERS)],
                tags=TAG_SETS[(n // 2) % len(TAG_SETS)],
            )
        )
    return events


EVENTS = make_events()


@dataclass
class TwoTeams:
    api: TestClient
    keys: dict[str, str]
    client: Client

    def headers(self, team: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.keys[team]}"}


@pytest.fixture(scope="module")
def two_teams(clickhouse_url: str) -> Iterator[TwoTeams]:
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
    enricher = Enricher(PRICES, config)
    client.insert("usage_events", [enricher.row(e) for e in EVENTS], column_names=RAW_COLUMNS)
    app = create_app(
        QuerySettings(), client_factory=lambda: connect(clickhouse_url, database), config=config
    )
    try:
        with TestClient(app) as api:
            yield TwoTeams(api, keys, client)
    finally:
        client.command(f"DROP DATABASE IF EXISTS {database}")
