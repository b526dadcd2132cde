"""A request a hard budget refuses, on every surface, streamed or not: a 402 with code
``quota_for_entity_exceeded`` in the surface's own format (the OpenAI and Anthropic SDKs
raise it as their status errors; the AI SDK's gateway provider reads its ``forbidden``
type), nothing forwarded, nothing metered. A route whose provider budget is spent is
skipped for the request's fallback model."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import anthropic
import httpx
import openai
import pytest

from meterline.common.budget_spend import MemorySpend
from meterline.common.config import GatewayConfig, TeamConfig, hash_key, new_key
from meterline.ingress.app import create_app
from meterline.ingress.publishing.memory import MemoryPublisher
from meterline.ingress.settings import IngressSettings
from meterline.simulator.app import create_app as create_simulator
from tests.support.gateway import (
    SYSTEM_KEY,
    SYSTEM_KEY_ENV,
    Gateway,
    Recorder,
    ServerThread,
    gateway_config,
)

# Every request of globex to the provider sim is refused: its budget is $0.
BUDGETS: list[dict[str, Any]] = [
    {"id": "sim-off", "amount_usd": "0", "scope": {"provider": "sim"}, "period": "daily"},
    {
        "id": "claude-off",
        "amount_usd": "0",
        "scope": {"model": "claude-sonnet-4-6"},
        "period": "none",
    },
]


@pytest.fixture(scope="module")
def gw() -> Iterator[Gateway]:
    keys = {"acme": new_key(), "globex": new_key()}
    recorder = Recorder(create_simulator())
    publisher = MemoryPublisher()
    with pytest.MonkeyPatch.context() as patch, ServerThread(recorder) as simulator:
        patch.setenv(SYSTEM_KEY_ENV, SYSTEM_KEY)
        base = gateway_config(simulator.url, keys)
        globex = TeamConfig.model_validate(
            {
                "id": "globex",
                "keys": [{"name": "globex-key", "sha256": hash_key(keys["globex"])}],
                "budgets": BUDGETS,
            }
        )
        config = GatewayConfig(providers=base.providers, teams=[base.teams[0], globex])
        app = create_app(IngressSettings(), config, publisher, spend=MemorySpend())
        with ServerThread(app) as ingress:
            yield Gateway(ingress.url, keys["globex"], keys["acme"], publisher, recorder)


@pytest.fixture
def fresh(gw: Gateway) -> Gateway:
    gw.publisher.events.clear()
    gw.upstream.received.clear()
    return gw


def assert_nothing_forwarded(gw: Gateway) -> None:
    assert gw.upstream.received == []
    assert gw.publisher.events == []


@pytest.mark.parametrize("stream", [False, True])
def test_chat_completions_and_responses_get_openais_format(fresh: Gateway, stream: bool) -> None:
    client = fresh.openai()
    with pytest.raises(openai.APIStatusError) as chat:
        client.chat.completions.create(
            model="sim/gpt-4o", messages=[{"role": "user", "content": "hi"}], stream=stream
        )
    with pytest.raises(openai.APIStatusError) as responses:
        client.responses.create(model="sim/gpt-4o", input="hi", stream=stream)
    for caught in (chat, responses):
        assert caught.value.status_code == 402
        assert caught.value.code == "quota_for_entity_exceeded"
        body = caught.value.body
        assert isinstance(body, dict) and body["type"] == "insufficient_quota"
        assert body["param"] == "budget"
        assert "budget 'sim-off' (team) is exhausted" in body["message"]
        assert "resets at " in body["message"]
    assert_nothing_forwarded(fresh)


@pytest.mark.parametrize("stream", [False, True])
def test_messages_get_anthropics_format(fresh: Gateway, stream: bool) -> None:
    client = fresh.anthropic()
    with pytest.raises(anthropic.APIStatusError) as caught:
        if stream:
            with client.messages.stream(
                model="anthropic/claude-sonnet-4-6",
                max_tokens=50,
                messages=[{"role": "user", "content": "hi"}],
            ) as events:
                events.get_final_message()
        else:
            client.messages.create(
                model="anthropic/claude-sonnet-4-6",
                max_tokens=50,
                messages=[{"role": "user", "content": "hi"}],
            )
    assert caught.value.status_code == 402
    body = caught.value.body
    assert isinstance(body, dict) and body["type"] == "error"
    assert body["error"]["type"] == "billing_error"
    assert body["error"]["code"] == "quota_for_entity_exceeded"
    assert "budget 'claude-off' (team) is exhausted" in body["error"]["message"]
    assert "it does not reset" in body["error"]["message"]
    assert_nothing_forwarded(fresh)


def test_the_language_model_gets_the_gateway_providers_forbidden(fresh: Gateway) -> None:
    answer = httpx.post(
        f"{fresh.url}/v3/ai/language-model",
        content=json.dumps(
            {"prompt": [{"role": "user", "content": [{"type": "text", "text": "hi"}]}]}
        ),
        headers={
            "authorization": f"Bearer {fresh.key}",
            "ai-language-model-specification-version": "3",
            "ai-language-model-id": "sim/gpt-4o",
            "ai-language-model-streaming": "false",
            "content-type": "application/json",
        },
        timeout=10,
    )
    assert answer.status_code == 402
    error = answer.json()["error"]
    assert error["type"] == "forbidden" and error["code"] == "quota_for_entity_exceeded"
    assert error["param"] == {"ruleId": "budget:sim-off"}
    assert_nothing_forwarded(fresh)


def test_a_fallback_model_on_another_provider_still_answers(fresh: Gateway) -> None:
    answer = fresh.openai().chat.completions.with_raw_response.create(
        model="sim/gpt-4o",
        messages=[{"role": "user", "content": "hi"}],
        max_tokens=20,
        extra_body={"providerOptions": {"gateway": {"models": ["anthropic/claude-haiku-4-5"]}}},
    )
    assert answer.status_code == 200
    [event] = fresh.wait_for_events(1)
    assert (event.provider, event.model) == ("anthropic", "claude-haiku-4-5")
    assert [r.path for r in fresh.upstream.received] == ["/v1/messages"]


def test_another_team_without_budgets_is_not_checked(fresh: Gateway) -> None:
    client = fresh.openai(fresh.other_team_key)
    answer = client.chat.completions.create(
        model="sim/gpt-4o", messages=[{"role": "user", "content": "hi"}], max_tokens=10
    )
    assert answer.choices
