"""Zero data retention and ``sort`` through the gateway: the routes a request takes, the
record of the one that answered, and the 400 in each surface's format when no route is
left.

Two simulators serve as providers: one answering at once, one that waits before its first
byte (``x-simulator-delay-ms``, added to every request it gets), so that ``sort: "latency"``
has a slower provider to learn about."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import anthropic
import httpx
import openai
import pytest

from meterline.common.config import GatewayConfig, hash_key, new_key
from meterline.ingress.app import create_app
from meterline.ingress.publishing.memory import MemoryPublisher
from meterline.ingress.settings import IngressSettings
from meterline.simulator.app import create_app as create_simulator
from tests.support.gateway import (
    ANTHROPIC_VERSION,
    SYSTEM_KEY,
    SYSTEM_KEY_ENV,
    Recorder,
    ServerThread,
    wait_for_events,
)

SLOW_FIRST_BYTE_MS = "400"
MESSAGES: Any = [{"role": "user", "content": "Where does my prompt go?"}]
ZDR_PARAM = "providerOptions.gateway.zeroDataRetention"


def gateway(**options: Any) -> dict[str, Any]:
    return {"providerOptions": {"gateway": options}}


@dataclass
class Stack:
    url: str
    keys: dict[str, str]
    publisher: MemoryPublisher
    fast: Recorder
    slow: Recorder

    def openai(self, team: str = "acme") -> openai.OpenAI:
        return openai.OpenAI(
            base_url=f"{self.url}/v1", api_key=self.keys[team], max_retries=0, timeout=10
        )

    def post(self, path: str, body: dict[str, Any], team: str = "acme") -> httpx.Response:
        if path.startswith("/v1/messages"):
            headers = {"x-api-key": self.keys[team], "anthropic-version": ANTHROPIC_VERSION}
        else:
            headers = {"authorization": f"Bearer {self.keys[team]}"}
        return httpx.post(f"{self.url}{path}", json=body, headers=headers, timeout=10)


def config(fast: str, slow: str, keys: dict[str, str]) -> GatewayConfig:
    key = {"api_key_env": SYSTEM_KEY_ENV}
    return GatewayConfig.model_validate(
        {
            "providers": [
                {"slug": "keeps", "base_url": f"{fast}/v1", "models": ["gpt-4o"], **key},
                {
                    "slug": "forgets",
                    "base_url": f"{fast}/v1",
                    "models": ["gpt-4o"],
                    "zero_data_retention": True,
                    **key,
                },
                {"slug": "claude", "wire": "anthropic", "base_url": fast, **key},
                # The slow one first: without measurements, configuration order prefers it.
                {"slug": "slow", "base_url": f"{slow}/v1", "models": ["gpt-4o-mini"], **key},
                {"slug": "quick", "base_url": f"{fast}/v1", "models": ["gpt-4o-mini"], **key},
            ],
            "teams": [
                {"id": "acme", "keys": [{"name": "k", "sha256": hash_key(keys["acme"])}]},
                {
                    "id": "vault",
                    "keys": [{"name": "k", "sha256": hash_key(keys["vault"])}],
                    "zero_data_retention": True,
                },
            ],
        }
    )


@pytest.fixture(scope="module")
def stack() -> Iterator[Stack]:
    keys = {team: new_key() for team in ("acme", "vault")}
    fast = Recorder(create_simulator())
    slow = Recorder(create_simulator(), inject={"x-simulator-delay-ms": SLOW_FIRST_BYTE_MS})
    publisher = MemoryPublisher()
    with (
        pytest.MonkeyPatch.context() as patch,
        ServerThread(fast) as fast_server,
        ServerThread(slow) as slow_server,
    ):
        patch.setenv(SYSTEM_KEY_ENV, SYSTEM_KEY)
        app = create_app(
            IngressSettings(), config(fast_server.url, slow_server.url, keys), publisher
        )
        with ServerThread(app) as ingress:
            yield Stack(ingress.url, keys, publisher, fast, slow)


@pytest.fixture
def st(stack: Stack) -> Stack:
    stack.publisher.events.clear()
    stack.fast.received.clear()
    stack.slow.received.clear()
    return stack


def test_zero_data_retention_goes_to_the_provider_marked_so(st: Stack) -> None:
    st.openai().chat.completions.create(model="keeps/gpt-4o", messages=MESSAGES)
    st.openai().chat.completions.create(
        model="keeps/gpt-4o", messages=MESSAGES, extra_body=gateway(zeroDataRetention=True)
    )
    # The team's setting is enough, on every surface.
    st.openai("vault").responses.create(model="keeps/gpt-4o", input="hi")
    anthropic.Anthropic(
        base_url=st.url, api_key=st.keys["vault"], max_retries=0, timeout=10
    ).messages.create(model="keeps/gpt-4o", max_tokens=20, messages=MESSAGES)
    events = wait_for_events(st.publisher, 4)
    assert [(e.api_surface, e.provider, e.status) for e in events] == [
        ("chat_completions", "keeps", "success"),
        ("chat_completions", "forgets", "success"),
        ("responses", "forgets", "success"),
        ("messages", "forgets", "success"),
    ]
    assert [e.zero_data_retention for e in events] == [False, True, True, True]
    assert all(e.model_requested == "keeps/gpt-4o" for e in events)


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/v1/chat/completions", {"model": "claude/claude-sonnet-4-6", "messages": MESSAGES}),
        ("/v1/responses", {"model": "quick/gpt-4o-mini", "input": "hi"}),
    ],
)
def test_no_zero_data_retention_provider_is_a_400_in_openai_format(
    st: Stack, path: str, body: dict[str, Any]
) -> None:
    response = st.post(path, body | gateway(zeroDataRetention=True))
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["type"] == "invalid_request_error" and error["param"] == ZDR_PARAM
    assert error["message"].startswith(f"no zero-data-retention provider serves {body['model']!r}")
    # Refused before it was forwarded: no provider saw it, nothing was recorded.
    assert st.fast.received == [] and st.slow.received == [] and st.publisher.events == []

    response = st.post(path, body, team="vault")
    assert response.status_code == 400 and response.json()["error"]["param"] == ZDR_PARAM
    assert "team 'vault' requires zero data retention" in response.json()["error"]["message"]


def test_no_zero_data_retention_provider_is_a_400_in_anthropic_format(st: Stack) -> None:
    body = {"model": "claude/claude-sonnet-4-6", "max_tokens": 20, "messages": MESSAGES}
    response = st.post("/v1/messages", body | gateway(zeroDataRetention=True))
    assert response.status_code == 400
    payload = response.json()
    assert payload["type"] == "error" and payload["error"]["type"] == "invalid_request_error"
    assert payload["error"]["message"].startswith(
        "no zero-data-retention provider serves 'claude/claude-sonnet-4-6'"
    )
    client = anthropic.Anthropic(base_url=st.url, api_key=st.keys["vault"], max_retries=0)
    with pytest.raises(anthropic.BadRequestError, match="no zero-data-retention provider"):
        client.messages.create(**body)
    assert st.fast.received == [] and st.publisher.events == []


def test_a_bad_routing_option_is_a_400_naming_it(st: Stack) -> None:
    body = {"model": "quick/gpt-4o-mini", "messages": MESSAGES}
    for options, param in (
        ({"zeroDataRetention": "yes"}, ZDR_PARAM),
        ({"sort": "fastest"}, "providerOptions.gateway.sort"),
    ):
        response = st.post("/v1/chat/completions", body | gateway(**options))
        assert response.status_code == 400 and response.json()["error"]["param"] == param
    response = st.post("/v1/chat/completions", body | gateway(sort="fastest"))
    assert "'price', 'latency', 'throughput'" in response.json()["error"]["message"]
    assert st.fast.received == [] and st.slow.received == []


def test_sort_by_latency_prefers_the_provider_that_answered_faster(st: Stack) -> None:
    client = st.openai()
    latency = gateway(sort="latency")

    def served(model: str, **extra: Any) -> str:
        before = len(st.publisher.events)
        client.chat.completions.create(model=model, messages=MESSAGES, **extra)
        return wait_for_events(st.publisher, before + 1)[before].provider

    # Nothing measured yet: configuration order, which puts the slow one first.
    assert served("quick/gpt-4o-mini", extra_body=latency) == "slow"
    assert served("quick/gpt-4o-mini") == "quick"
    # Measured now, both of them: the faster one comes first, whichever the model names.
    assert served("slow/gpt-4o-mini", extra_body=latency) == "quick"
    assert served("quick/gpt-4o-mini", extra_body=latency) == "quick"
    # A stream is measured by its first token; still the faster one.
    stream = client.chat.completions.create(
        model="slow/gpt-4o-mini", messages=MESSAGES, stream=True, extra_body=latency
    )
    assert list(stream)
    events = wait_for_events(st.publisher, 5)
    assert (events[-1].provider, events[-1].streamed) == ("quick", True)
    # Without sort, the named provider, as ever.
    assert served("slow/gpt-4o-mini") == "slow"
    assert len(st.slow.received) == 2
