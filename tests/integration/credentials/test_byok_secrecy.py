"""BYOK end to end on real components: the official ``openai`` SDK -> ``all-in-one`` (ingress
publishing to a real Kafka broker, the consumer pipeline reading it back into ClickHouse on
chDB) -> the simulator as the provider.

- The BYOK keys reach the provider and nothing else: not one byte of any Kafka message, not
  one value of any column of any table in the warehouse (raw table, rollups, batch log).
- BYOK rows cost the team nothing (``total_cost`` 0) and carry the same ``market_cost`` as
  the identical request served with the system key (the simulator's usage is a function of
  the request, so the two used the same tokens).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import openai
import pytest
from aiokafka import AIOKafkaConsumer
from clickhouse_connect.driver.client import Client

from meterline.all_in_one.app import AllInOne, AllInOneSettings
from meterline.common.config import GatewayConfig, hash_key, new_key
from meterline.consumer.settings import ConsumerSettings
from meterline.ingress.settings import IngressSettings
from meterline.query.settings import QuerySettings
from meterline.simulator.app import create_app as create_simulator
from tests.support.gateway import Recorder, ServerThread

pytestmark = [pytest.mark.kafka, pytest.mark.clickhouse]

SYSTEM_KEY = "sk-system-secrecy-test"
TEAM_SECRET = "sk-team-byok-secret-4c1d9e"
REQUEST_SECRET = "sk-request-byok-secret-88b2f0"
ANTHROPIC_SECRET = "sk-ant-request-byok-secret-51aa"
SECRETS = (TEAM_SECRET, REQUEST_SECRET, ANTHROPIC_SECRET)
MESSAGES: Any = [{"role": "user", "content": "What does a meter count?"}]


def gateway_config(simulator: str, keys: dict[str, str]) -> GatewayConfig:
    return GatewayConfig.model_validate(
        {
            "providers": [
                {"slug": "openai", "base_url": f"{simulator}/v1", "api_key_env": "SECRECY_SYSTEM"},
                {
                    "slug": "anthropic",
                    "wire": "anthropic",
                    "base_url": simulator,
                    "api_key_env": "SECRECY_SYSTEM",
                },
            ],
            "teams": [
                {
                    "id": "byok-team",
                    "keys": [{"name": "app", "sha256": hash_key(keys["byok-team"])}],
                    "byok": [{"provider": "openai", "api_key_env": "SECRECY_TEAM_KEY"}],
                },
                {
                    "id": "system-team",
                    "keys": [{"name": "app", "sha256": hash_key(keys["system-team"])}],
                },
            ],
        }
    )


@pytest.fixture
def stack(
    tmp_path: Path,
    kafka_bootstrap: str,
    kafka_topic: str,
    clickhouse_url: str,
    clickhouse_database: str,
) -> Iterator[tuple[str, dict[str, str], Recorder]]:
    keys = {"byok-team": new_key(), "system-team": new_key()}
    shared: dict[str, Any] = {
        "kafka_bootstrap_servers": kafka_bootstrap,
        "usage_topic": kafka_topic,
        "dead_letter_topic": f"{kafka_topic}-dlq",
        "clickhouse_url": clickhouse_url,
        "clickhouse_database": clickhouse_database,
        "data_dir": tmp_path,
    }
    settings = AllInOneSettings(
        IngressSettings(**shared),
        ConsumerSettings(
            **shared, consumer_group=f"secrecy-{uuid.uuid4().hex[:8]}", max_batch_seconds=0.2
        ),
        QuerySettings(**shared),
    )
    recorder = Recorder(create_simulator())
    with pytest.MonkeyPatch.context() as patch, ServerThread(recorder) as simulator:
        patch.setenv("SECRECY_SYSTEM", SYSTEM_KEY)
        patch.setenv("SECRECY_TEAM_KEY", TEAM_SECRET)
        app = AllInOne(settings, gateway_config(simulator.url, keys))
        with ServerThread(app) as gateway:
            yield gateway.url, keys, recorder


def wait_rows(client: Client, count: int, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if client.query("SELECT count() FROM usage_events").result_rows[0][0] >= count:
            return
        time.sleep(0.1)
    raise AssertionError("the consumer did not write the events in time")


async def topic_bytes(bootstrap: str, topic: str, count: int) -> list[bytes]:
    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest", enable_auto_commit=False
    )
    await consumer.start()
    try:
        seen: list[bytes] = []
        deadline = time.monotonic() + 20
        while len(seen) < count and time.monotonic() < deadline:
            batches = await consumer.getmany(timeout_ms=500)
            for messages in batches.values():
                seen.extend((m.key or b"") + (m.value or b"") for m in messages)
        return seen
    finally:
        await consumer.stop()


def test_byok_keys_reach_the_provider_and_nothing_else(
    stack: tuple[str, dict[str, str], Recorder],
    clickhouse: Client,
    kafka_bootstrap: str,
    kafka_topic: str,
) -> None:
    url, keys, recorder = stack

    def client(team: str) -> openai.OpenAI:
        return openai.OpenAI(base_url=f"{url}/v1", api_key=keys[team], max_retries=0)

    def request_byok(provider: str, secret: str) -> dict[str, Any]:
        return {"providerOptions": {"gateway": {"byok": {provider: [{"apiKey": secret}]}}}}

    byok_team, system_team = client("byok-team"), client("system-team")
    # The same request three ways: the team's BYOK key, a request-scoped key, the system key.
    byok_team.chat.completions.create(model="openai/gpt-4o", messages=MESSAGES)
    list(
        system_team.chat.completions.create(
            model="openai/gpt-4o",
            messages=MESSAGES,
            stream=True,
            extra_body=request_byok("openai", REQUEST_SECRET),
        )
    )
    system_team.chat.completions.create(model="openai/gpt-4o", messages=MESSAGES)
    # An Anthropic model through Chat Completions, with a request-scoped key.
    system_team.chat.completions.create(
        model="anthropic/claude-sonnet-4-6",
        messages=MESSAGES,
        extra_body=request_byok("anthropic", ANTHROPIC_SECRET),
    )
    sent_keys = {
        r.headers.get("x-api-key") or r.headers["authorization"].removeprefix("Bearer ")
        for r in recorder.received
    }
    assert sent_keys == {TEAM_SECRET, REQUEST_SECRET, SYSTEM_KEY, ANTHROPIC_SECRET}

    wait_rows(clickhouse, 4)
    payloads = asyncio.run(topic_bytes(kafka_bootstrap, kafka_topic, 4))
    assert len(payloads) == 4
    for payload in payloads:
        for secret in SECRETS:
            assert secret.encode() not in payload

    tables = clickhouse.query(
        "SELECT name FROM system.tables WHERE database = currentDatabase()"
    ).result_rows
    assert len(tables) > 3
    for (table,) in tables:
        dump = repr(clickhouse.query(f"SELECT * FROM `{table}`").result_rows)
        for secret in SECRETS:
            assert secret not in dump, table

    rows = clickhouse.query(
        "SELECT team_id, provider, credential_type, market_cost, total_cost, input_tokens "
        "FROM usage_events ORDER BY started_at"
    ).result_rows
    openai_rows = [r for r in rows if r[1] == "openai"]
    assert [r[2] for r in openai_rows] == ["byok", "byok", "system"]
    system_market = openai_rows[2][3]
    assert system_market > 0 and openai_rows[2][4] == system_market
    for row in openai_rows[:2]:
        assert (row[3], row[4], row[5]) == (system_market, Decimal(0), openai_rows[2][5])
    [anthropic_row] = [r for r in rows if r[1] == "anthropic"]
    assert anthropic_row[2] == "byok" and anthropic_row[3] > 0 and anthropic_row[4] == 0
