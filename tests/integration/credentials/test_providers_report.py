"""The report counts Chat Completions traffic the same whichever provider served it: an
Anthropic model (translated both ways), and two OpenAI-compatible providers configured only
by slug, base URL and key variable (here Groq and Mistral, both played by the simulator),
with system and request-scoped BYOK keys.

The official ``openai`` SDK -> ``all-in-one`` (in-process bus, the consumer pipeline, chDB)
-> ``GET /v1/report`` grouped by ``provider,model,credential_type``: every row's token sums and
request count equal what the client received; BYOK rows cost the team nothing."""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from meterline.all_in_one.app import AllInOne
from meterline.common.config import GatewayConfig, hash_key, new_key
from meterline.simulator.app import create_app as create_simulator
from tests.support.all_in_one import embedded_settings
from tests.support.gateway import ServerThread

pytestmark = [pytest.mark.clickhouse]

TOKENS = (
    "input_tokens",
    "output_tokens",
    "cached_input_tokens",
    "cache_creation_input_tokens",
    "reasoning_tokens",
)
Key = tuple[str, str, str]


@pytest.fixture
def gateway(
    tmp_path: Path, clickhouse_url: str, clickhouse_database: str
) -> Iterator[tuple[str, str]]:
    team_key = new_key()
    settings = embedded_settings(
        tmp_path, clickhouse_url, clickhouse_database, max_batch_seconds=0.2
    )
    with pytest.MonkeyPatch.context() as patch, ServerThread(create_simulator()) as simulator:
        patch.setenv("PROVIDERS_TEST_KEY", "sk-providers-system")
        openai_compatible = {"api_key_env": "PROVIDERS_TEST_KEY", "base_url": f"{simulator.url}/v1"}
        config = GatewayConfig.model_validate(
            {
                "providers": [
                    {"slug": "groq", **openai_compatible},
                    {"slug": "mistral", **openai_compatible},
                    {
                        "slug": "anthropic",
                        "wire": "anthropic",
                        "base_url": simulator.url,
                        "api_key_env": "PROVIDERS_TEST_KEY",
                    },
                ],
                "teams": [{"id": "acme", "keys": [{"name": "app", "sha256": hash_key(team_key)}]}],
            }
        )
        with ServerThread(AllInOne(settings, config)) as server:
            yield server.url, team_key


def client_tokens(usage: Any) -> dict[str, int]:
    """The client's usage in the report's convention (OpenAI's, which the gateway also
    answers translated Anthropic usage in)."""
    prompt = usage.prompt_tokens_details
    completion = usage.completion_tokens_details
    return {
        "input_tokens": usage.prompt_tokens,
        "output_tokens": usage.completion_tokens,
        "cached_input_tokens": (prompt.cached_tokens or 0) if prompt else 0,
        "cache_creation_input_tokens": (prompt.cache_write_tokens or 0) if prompt else 0,
        "reasoning_tokens": (completion.reasoning_tokens or 0) if completion else 0,
    }


def test_report_equals_what_the_client_received(gateway: tuple[str, str]) -> None:
    url, team_key = gateway
    sdk = openai.OpenAI(base_url=f"{url}/v1", api_key=team_key, max_retries=0)
    expected: dict[Key, dict[str, int]] = defaultdict(lambda: dict.fromkeys(TOKENS, 0))
    counts: dict[Key, int] = defaultdict(int)
    byok: Any = {
        "providerOptions": {"gateway": {"byok": {"anthropic": [{"apiKey": "sk-ant-own"}]}}}
    }
    requests: list[tuple[str, str, bool, Any]] = [
        ("anthropic", "claude-sonnet-4-6", False, None),
        ("anthropic", "claude-sonnet-4-6", True, None),
        ("anthropic", "claude-haiku-4-5", True, byok),
        ("anthropic", "claude-haiku-4-5", False, byok),
        ("groq", "llama-3.3-70b-versatile", False, None),
        ("groq", "llama-3.3-70b-versatile", True, None),
        ("mistral", "mistral-small-latest", False, None),
        ("mistral", "mistral-small-latest", True, None),
    ]
    for n, (provider, model, stream, extra) in enumerate(requests):
        messages: Any = [
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": f"Request {n}: " + "meter history " * 300},
                    {"type": "text", "text": "Summarise.", "cache_control": {"type": "ephemeral"}},
                ],
            }
        ]
        if provider != "anthropic":
            messages[0]["content"][1].pop("cache_control")
        if stream:
            chunks = list(
                sdk.chat.completions.create(
                    model=f"{provider}/{model}",
                    messages=messages,
                    stream=True,
                    stream_options={"include_usage": True},
                    extra_body=extra,
                )
            )
            usage = chunks[-1].usage
        else:
            usage = sdk.chat.completions.create(
                model=f"{provider}/{model}", messages=messages, extra_body=extra
            ).usage
        key = (provider, model, "byok" if extra else "system")
        for name, value in client_tokens(usage).items():
            expected[key][name] += value
        counts[key] += 1
    assert sum(t["cached_input_tokens"] for t in expected.values()) > 0

    today = datetime.now(UTC).date().isoformat()
    params = {"start_date": today, "end_date": today, "group_by": "provider,model,credential_type"}
    deadline = time.monotonic() + 30
    rows: list[dict[str, Any]] = []
    while time.monotonic() < deadline:
        response = httpx.get(
            f"{url}/v1/report", params=params, headers={"authorization": f"Bearer {team_key}"}
        )
        assert response.status_code == 200, response.text
        rows = response.json()["results"]
        if sum(r["request_count"] for r in rows) == len(requests):
            break
        time.sleep(0.2)
    got = {(r["provider"], r["model"], r["credential_type"]): r for r in rows}
    assert set(got) == set(expected)
    for key, tokens in expected.items():
        row = got[key]
        assert {name: row[name] for name in TOKENS} == tokens, key
        assert row["request_count"] == counts[key]
        if key[2] == "byok":
            assert float(row["total_cost"]) == 0 and float(row["market_cost"]) > 0
    anthropic_system = got[("anthropic", "claude-sonnet-4-6", "system")]
    assert float(anthropic_system["total_cost"]) == float(anthropic_system["market_cost"]) > 0
