"""The ingress in process (Starlette's TestClient, lifespan included) in front of the
provider simulator on a loopback port, with a MemoryPublisher collecting the events and a
recorder keeping what reached the provider: so a test can tell that a refused request was
neither forwarded nor metered."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from meterline.common.config import new_key
from meterline.common.events import UsageEvent
from meterline.ingress.app import create_app
from meterline.ingress.publishing.memory import MemoryPublisher
from meterline.ingress.settings import IngressSettings
from meterline.simulator.app import create_app as create_simulator
from tests.support.gateway import (
    SYSTEM_KEY,
    SYSTEM_KEY_ENV,
    Recorder,
    ServerThread,
    gateway_config,
    wait_for_events,
)

MAX_BODY = 64 * 1024
ANTHROPIC_SURFACE = "/v1/messages"
LANGUAGE_MODEL_SURFACE = "/v3/ai/language-model"
LANGUAGE_MODEL_HEADERS = {
    "ai-language-model-specification-version": "3",
    "ai-language-model-id": "sim/gpt-4o",
    "ai-language-model-streaming": "false",
}
"""What ``@ai-sdk/gateway`` sends besides the key: the model and streaming are headers."""
LANGUAGE_MODEL_BODY = {"prompt": [{"role": "user", "content": [{"type": "text", "text": "hi"}]}]}
GATEWAY_PROVIDER_ERROR_TYPES = frozenset(
    {
        "authentication_error",
        "invalid_request_error",
        "rate_limit_exceeded",
        "model_not_found",
        "internal_server_error",
        "failed_dependency",
        "forbidden",
    }
)
"""The error types ``@ai-sdk/gateway`` turns into its error classes."""


@dataclass
class Ingress:
    client: TestClient
    keys: dict[str, str]
    publisher: MemoryPublisher
    upstream: Recorder

    def reset(self) -> None:
        self.publisher.events.clear()
        self.upstream.received.clear()

    def wait_for_events(self, count: int, timeout: float = 5.0) -> list[UsageEvent]:
        return wait_for_events(self.publisher, count, timeout)

    def assert_nothing_published(self, settle: float) -> None:
        """No event, even ``settle`` seconds after the answer: one that was coming would
        have been published by then."""
        time.sleep(settle)
        assert self.publisher.events == []


@dataclass
class IngressApp:
    app: FastAPI
    keys: dict[str, str]
    publisher: MemoryPublisher
    upstream: Recorder


@contextmanager
def ingress_app() -> Iterator[IngressApp]:
    """The app, not yet started: its lifespan runs in whichever client serves it."""
    keys = {"acme": new_key(), "globex": new_key()}
    recorder = Recorder(create_simulator())
    publisher = MemoryPublisher()
    with pytest.MonkeyPatch.context() as patch, ServerThread(recorder) as simulator:
        patch.setenv(SYSTEM_KEY_ENV, SYSTEM_KEY)
        app = create_app(
            IngressSettings(max_request_body_bytes=MAX_BODY),
            gateway_config(simulator.url, keys),
            publisher,
        )
        yield IngressApp(app, keys, publisher, recorder)


@contextmanager
def running_ingress() -> Iterator[Ingress]:
    # raise_server_exceptions=False: a 500 is an answer to assert on, not a crash.
    with (
        ingress_app() as built,
        TestClient(built.app, raise_server_exceptions=False) as client,
    ):
        yield Ingress(client, built.keys, built.publisher, built.upstream)


def assert_error_format(path: str, status: int, body: object) -> dict[str, object]:
    """The error body of the surface at ``path``; returns its ``error`` object."""
    assert isinstance(body, dict), body
    if path.startswith(ANTHROPIC_SURFACE):
        assert set(body) == {"type", "error"} and body["type"] == "error", body
        error = body["error"]
        assert isinstance(error, dict) and set(error) == {"type", "message"}, body
    else:
        assert set(body) == {"error"}, body
        error = body["error"]
        assert isinstance(error, dict) and set(error) == {"message", "type", "param", "code"}
        if path.startswith("/v3/ai/"):
            assert error["type"] in GATEWAY_PROVIDER_ERROR_TYPES, body
    assert isinstance(error["message"], str) and error["message"], body
    assert isinstance(error["type"], str) and error["type"], body
    return error
