"""BYOK through the gateway: team keys from configuration, request-scoped keys, the per-team
fallback to the system key, routing fallbacks, and keys never reaching a log line or an
event.

The provider is the simulator behind a gate that refuses the keys a test names (as a
provider refuses a revoked key), and a recorder that keeps the key each attempt carried."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import anthropic
import httpx
import openai
import pytest
from starlette.types import ASGIApp, Receive, Scope, Send

from meterline.common.codec import UsageEventCodec
from meterline.common.config import GatewayConfig, hash_key, new_key
from meterline.ingress.app import create_app
from meterline.ingress.publishing.memory import MemoryPublisher
from meterline.ingress.settings import IngressSettings
from meterline.simulator.app import create_app as create_simulator
from tests.support.gateway import Recorder, ServerThread

SYSTEM_KEY = "sk-system-credentials-test"
TEAM_KEY = "sk-team-byok-acme-0001"
STRICT_TEAM_KEY = "sk-team-byok-strict-0002"
ENV = {
    "CRED_TEST_SYSTEM": SYSTEM_KEY,
    "CRED_TEST_TEAM": TEAM_KEY,
    "CRED_TEST_STRICT": STRICT_TEAM_KEY,
}
MESSAGES: Any = [{"role": "user", "content": "Count my keys."}]


@dataclass
class KeyGate:
    """Answers 401, in the surface's format, to requests carrying a refused key."""

    app: ASGIApp
    refused: set[str] = field(default_factory=set)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        headers = {k.decode(): v.decode() for k, v in scope.get("headers", [])}
        key = headers.get("x-api-key") or headers.get("authorization", "").removeprefix("Bearer ")
        if scope["type"] == "http" and key in self.refused:
            body = json.dumps({"error": {"message": "invalid key", "type": "auth", "code": None}})
            await send(
                {
                    "type": "http.response.start",
                    "status": 401,
                    "headers": [(b"content-type", b"application/json")],
                }
            )
            await send({"type": "http.response.body", "body": body.encode()})
            return
        await self.app(scope, receive, send)


@dataclass
class Stack:
    url: str
    keys: dict[str, str]
    publisher: MemoryPublisher
    recorder: Recorder
    gate: KeyGate

    def client(self, team: str) -> openai.OpenAI:
        return openai.OpenAI(
            base_url=f"{self.url}/v1", api_key=self.keys[team], max_retries=0, timeout=10
        )

    def keys_sent(self) -> list[str]:
        return [
            r.headers.get("authorization", r.headers.get("x-api-key", "")).removeprefix("Bearer ")
            for r in self.recorder.received
        ]


def config(simulator: str, keys: dict[str, str]) -> GatewayConfig:
    provider = {"api_key_env": "CRED_TEST_SYSTEM", "timeout_seconds": 5, "models": ["gpt-4o"]}
    return GatewayConfig.model_validate(
        {
            "providers": [
                {"slug": "sim", "base_url": f"{simulator}/v1", **provider},
                {"slug": "sim2", "base_url": f"{simulator}/v1", **provider},
                {"slug": "down", "base_url": "http://127.0.0.1:9/v1", "models": ["gpt-4o"]},
                {"slug": "claude", "wire": "anthropic", "base_url": simulator, **provider},
            ],
            "teams": [
                {
                    "id": "acme",
                    "keys": [{"name": "k", "sha256": hash_key(keys["acme"])}],
                    "byok": [{"provider": "sim", "api_key_env": "CRED_TEST_TEAM"}],
                },
                {
                    "id": "strict",
                    "keys": [{"name": "k", "sha256": hash_key(keys["strict"])}],
                    "byok": [{"provider": "sim", "api_key_env": "CRED_TEST_STRICT"}],
                    "byok_fallback_to_system": False,
                },
                {"id": "plain", "keys": [{"name": "k", "sha256": hash_key(keys["plain"])}]},
            ],
        }
    )


@pytest.fixture(scope="module")
def stack() -> Iterator[Stack]:
    keys = {team: new_key() for team in ("acme", "strict", "plain")}
    gate = KeyGate(create_simulator())
    recorder = Recorder(gate)
    publisher = MemoryPublisher()
    with pytest.MonkeyPatch.context() as patch, ServerThread(recorder) as simulator:
        for name, value in ENV.items():
            patch.setenv(name, value)
        app = create_app(IngressSettings(), config(simulator.url, keys), publisher)
        with ServerThread(app) as ingress:
            yield Stack(ingress.url, keys, publisher, recorder, gate)


@pytest.fixture
def st(stack: Stack) -> Stack:
    stack.publisher.events.clear()
    stack.recorder.received.clear()
    stack.gate.refused.clear()
    return stack


def wait_events(st: Stack, count: int) -> list[Any]:
    import time

    deadline = time.monotonic() + 5
    while len(st.publisher.events) < count and time.monotonic() < deadline:
        time.sleep(0.005)
    assert len(st.publisher.events) == count, st.publisher.events
    return list(st.publisher.events)


def byok(*keys: str, provider: str = "sim") -> dict[str, Any]:
    return {"providerOptions": {"gateway": {"byok": {provider: [{"apiKey": k} for k in keys]}}}}


def test_the_system_key_serves_a_team_without_byok(st: Stack) -> None:
    st.client("plain").chat.completions.create(model="sim/gpt-4o", messages=MESSAGES)
    [event] = wait_events(st, 1)
    assert event.credential_type == "system" and st.keys_sent() == [SYSTEM_KEY]


def test_the_team_byok_key_is_used_first(st: Stack) -> None:
    st.client("acme").chat.completions.create(model="sim/gpt-4o", messages=MESSAGES)
    [event] = wait_events(st, 1)
    assert event.credential_type == "byok" and st.keys_sent() == [TEAM_KEY]
    # Only for its provider: sim2 has no team key.
    st.recorder.received.clear()
    st.client("acme").chat.completions.create(model="sim2/gpt-4o", messages=MESSAGES)
    assert st.keys_sent() == [SYSTEM_KEY]


def test_a_refused_team_key_falls_back_to_the_system_key(st: Stack) -> None:
    st.gate.refused.add(TEAM_KEY)
    completion = st.client("acme").chat.completions.create(model="sim/gpt-4o", messages=MESSAGES)
    [event] = wait_events(st, 1)
    assert st.keys_sent() == [TEAM_KEY, SYSTEM_KEY]
    assert (event.credential_type, event.status, event.provider) == ("system", "success", "sim")
    assert completion.usage is not None and event.input_tokens == completion.usage.prompt_tokens


def test_without_fallback_a_refused_byok_key_is_the_answer(st: Stack) -> None:
    st.gate.refused.add(STRICT_TEAM_KEY)
    with pytest.raises(openai.AuthenticationError):
        st.client("strict").chat.completions.create(model="sim/gpt-4o", messages=MESSAGES)
    [event] = wait_events(st, 1)
    assert st.keys_sent() == [STRICT_TEAM_KEY]
    assert (event.credential_type, event.status, event.http_status) == ("byok", "error", 401)


def test_request_keys_are_tried_in_order_before_the_team_fallback(st: Stack) -> None:
    st.gate.refused.add("sk-request-one")
    completion = st.client("strict").chat.completions.create(
        model="sim/gpt-4o",
        messages=MESSAGES,
        stream=True,
        extra_body=byok("sk-request-one", "sk-request-two"),
    )
    chunks = list(completion)
    [event] = wait_events(st, 1)
    assert st.keys_sent() == ["sk-request-one", "sk-request-two"]
    assert (event.credential_type, event.status, event.streamed) == ("byok", "success", True)
    assert chunks and all(c.usage is None for c in chunks)
    # The provider never sees the gateway's options.
    assert all("providerOptions" not in r.body for r in st.recorder.received)


def test_all_request_keys_refused_falls_back_to_system_when_the_team_allows(st: Stack) -> None:
    st.gate.refused.update({"sk-request-one", "sk-request-two"})
    st.client("plain").chat.completions.create(
        model="sim/gpt-4o", messages=MESSAGES, extra_body=byok("sk-request-one", "sk-request-two")
    )
    [event] = wait_events(st, 1)
    assert st.keys_sent() == ["sk-request-one", "sk-request-two", SYSTEM_KEY]
    assert event.credential_type == "system"


def test_order_and_fallback_models_attribute_the_request_to_what_served_it(st: Stack) -> None:
    # ``down`` is unreachable: the next provider serving gpt-4o answers.
    st.client("plain").chat.completions.create(
        model="sim/gpt-4o",
        messages=MESSAGES,
        extra_body={"providerOptions": {"gateway": {"order": ["down", "sim2"]}}},
    )
    # The primary fails with a provider error: the fallback model answers.
    st.recorder.inject["x-simulator-status"] = "503"
    with pytest.raises(openai.InternalServerError):
        st.client("plain").chat.completions.create(model="sim/gpt-4o", messages=MESSAGES)
    st.recorder.inject.clear()
    st.client("plain").chat.completions.create(
        model="down/gpt-4o",
        messages=MESSAGES,
        extra_body={"providerOptions": {"gateway": {"models": ["sim2/gpt-4o-mini"]}}},
    )
    first, failed, fallback = wait_events(st, 3)
    assert (first.provider, first.model, first.model_requested) == ("sim2", "gpt-4o", "sim/gpt-4o")
    assert (failed.provider, failed.status, failed.http_status) == ("sim", "error", 503)
    assert (fallback.provider, fallback.model) == ("sim2", "gpt-4o-mini")
    assert fallback.model_requested == "down/gpt-4o" and fallback.status == "success"


def test_every_surface_takes_request_keys_and_fallbacks(st: Stack) -> None:
    st.gate.refused.add("sk-request-refused")
    keys = byok("sk-request-refused", "sk-request-responses")
    st.client("plain").responses.create(model="sim/gpt-4o", input="hi", extra_body=keys)
    messages = anthropic.Anthropic(
        base_url=st.url, api_key=st.keys["plain"], max_retries=0, timeout=10
    )
    messages.messages.create(
        model="claude/claude-sonnet-4-6",
        max_tokens=20,
        messages=MESSAGES,
        extra_body=byok("sk-request-refused", "sk-request-messages", provider="claude"),
    )
    # Chat Completions to an Anthropic model, as the fallback of an unreachable provider.
    st.client("plain").chat.completions.create(
        model="down/gpt-4o",
        messages=MESSAGES,
        extra_body={
            "providerOptions": {
                "gateway": {
                    "models": ["claude/claude-haiku-4-5"],
                    "byok": {"claude": [{"apiKey": "sk-request-chat"}]},
                }
            }
        },
    )
    responses, anthropic_messages, chat = wait_events(st, 3)
    assert st.keys_sent() == [
        "sk-request-refused",
        "sk-request-responses",
        "sk-request-refused",
        "sk-request-messages",
        "sk-request-chat",
    ]
    assert (responses.api_surface, responses.credential_type) == ("responses", "byok")
    assert (anthropic_messages.api_surface, anthropic_messages.credential_type) == (
        "messages",
        "byok",
    )
    assert (chat.provider, chat.model, chat.credential_type, chat.model_requested) == (
        "claude",
        "claude-haiku-4-5",
        "byok",
        "down/gpt-4o",
    )


@pytest.mark.parametrize(
    ("gateway", "param"),
    [
        ({"byok": []}, "providerOptions.gateway.byok"),
        ({"byok": {"sim": []}}, "providerOptions.gateway.byok.sim"),
        (
            {"byok": {"sim": [{"key": "sk-wrong-field"}]}},
            "providerOptions.gateway.byok.sim[0].apiKey",
        ),
        ({"byok": {"sim": [{"apiKey": 42}]}}, "providerOptions.gateway.byok.sim[0].apiKey"),
        ({"byok": {"nope": [{"apiKey": "sk-unknown-provider"}]}}, "providerOptions.gateway.byok"),
        ({"order": "sim"}, "providerOptions.gateway.order"),
        ({"only": ["sim", 3]}, "providerOptions.gateway.only"),
        ({"models": ["gpt-4o"]}, "providerOptions.gateway.models"),
    ],
)
def test_bad_options_are_a_400_naming_the_parameter(
    st: Stack, gateway: dict[str, Any], param: str
) -> None:
    response = httpx.post(
        f"{st.url}/v1/chat/completions",
        json={"model": "sim/gpt-4o", "messages": MESSAGES, "providerOptions": {"gateway": gateway}},
        headers={"authorization": f"Bearer {st.keys['plain']}"},
    )
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["param"] == param and error["type"] == "invalid_request_error"
    assert "sk-" not in error["message"]  # no key is ever quoted back
    assert st.recorder.received == [] and st.publisher.events == []


LOGGERS = ("", "meterline", "httpx", "httpcore", "uvicorn", "uvicorn.error", "uvicorn.access")


def test_a_byok_key_never_reaches_a_log_line_or_an_event(
    st: Stack, caplog: pytest.LogCaptureFixture
) -> None:
    secret = "sk-byok-secret-never-logged-7f3a9c"
    # uvicorn's loggers do not propagate to the root: capture them directly too.
    for name in LOGGERS:
        caplog.set_level(logging.DEBUG, logger=name)
        if name.startswith("uvicorn"):
            logging.getLogger(name).addHandler(caplog.handler)
    try:
        st.gate.refused.add(secret)
        client = st.client("acme")
        client.chat.completions.create(
            model="sim/gpt-4o", messages=MESSAGES, extra_body=byok(secret)
        )
        st.gate.refused.clear()
        list(
            client.chat.completions.create(
                model="sim/gpt-4o", messages=MESSAGES, stream=True, extra_body=byok(secret)
            )
        )
        st.recorder.inject["x-simulator-status"] = "500"
        with pytest.raises(openai.InternalServerError):
            client.chat.completions.create(
                model="sim/gpt-4o", messages=MESSAGES, extra_body=byok(secret)
            )
        with pytest.raises(openai.BadRequestError):
            client.chat.completions.create(
                model="sim/gpt-4o",
                messages=MESSAGES,
                extra_body={
                    "providerOptions": {"gateway": {"byok": {"sim": [{"apiKey": secret}] * 9}}}
                },
            )
        events = wait_events(st, 3)
    finally:
        for name in LOGGERS:
            if name.startswith("uvicorn"):
                logging.getLogger(name).removeHandler(caplog.handler)
    assert len(caplog.records) > 0  # the capture saw the gateway's and the servers' logs
    assert secret in st.keys_sent()  # it did go to the provider...
    logged = caplog.text + "".join(repr(r.args) + repr(r.__dict__) for r in caplog.records)
    assert secret not in logged  # ...and nowhere else
    codec = UsageEventCodec()
    # Refused, then served by the system key; served by the key; a provider error with
    # the key, then with the system key.
    assert [e.credential_type for e in events] == ["system", "byok", "system"]
    for event in events:
        assert secret.encode() not in codec.encode(event)
        assert secret not in repr(event)
