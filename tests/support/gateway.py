"""The ingress under test, served by uvicorn on a loopback port, in front of the provider
simulator (also on a loopback port), with a MemoryPublisher collecting the events: for the
tests of the gateway's HTTP behaviour, and the security, fuzz and credential tests.

The simulator is wrapped in a recorder that keeps what the provider received (so tests can
assert that ``providerOptions`` never reaches it) and can add ``x-simulator-*`` fault
headers to the requests the gateway forwards (the gateway never forwards client headers)."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import anthropic
import httpx
import openai
import pytest
import uvicorn
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from meterline.common.config import GatewayConfig, hash_key, new_key
from meterline.common.events import UsageEvent
from meterline.ingress.app import create_app
from meterline.ingress.publishing.memory import MemoryPublisher
from meterline.ingress.settings import IngressSettings
from meterline.processes import free_port
from meterline.simulator.app import create_app as create_simulator

SYSTEM_KEY = "sk-system-test-key"
SYSTEM_KEY_ENV = "METERLINE_TEST_SIMULATOR_KEY"
MAX_BODY = 64 * 1024
ANTHROPIC_VERSION = "2023-06-01"


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: Any


@dataclass
class Recorder:
    """ASGI wrapper: records each request, then hands it to the wrapped app."""

    app: ASGIApp
    received: list[Received] = field(default_factory=list)
    inject: dict[str, str] = field(default_factory=dict)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        headers = {k.decode(): v.decode() for k, v in scope["headers"]}
        self.received.append(Received(scope["path"], headers, json.loads(body) if body else None))
        if self.inject:
            extra = [(k.encode(), v.encode()) for k, v in self.inject.items()]
            scope = {**scope, "headers": [*scope["headers"], *extra]}
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)


class ServerThread:
    """An ASGI app served by uvicorn in a thread, lifespan included."""

    def __init__(self, app: ASGIApp):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(
            app, host="127.0.0.1", port=self.port, log_level="warning", lifespan="on"
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, daemon=True)

    def __enter__(self) -> ServerThread:
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError("server did not start")
            time.sleep(0.01)
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.should_exit = True
        self._thread.join(10)


@dataclass
class Gateway:
    url: str
    key: str
    other_team_key: str
    publisher: MemoryPublisher
    upstream: Recorder

    def openai(self, key: str | None = None) -> openai.OpenAI:
        """An OpenAI SDK client of the gateway (the team's key unless another is given)."""
        return openai.OpenAI(
            base_url=f"{self.url}/v1", api_key=key or self.key, max_retries=0, timeout=10
        )

    def anthropic(self, key: str | None = None) -> anthropic.Anthropic:
        """An Anthropic SDK client of the gateway."""
        return anthropic.Anthropic(
            base_url=self.url, api_key=key or self.key, max_retries=0, timeout=10
        )

    def post(self, path: str, body: bytes | dict[str, Any], **headers: str) -> httpx.Response:
        """A raw POST with the team's key, as the surface's SDK sends it (``x-api-key`` and
        ``anthropic-version`` on the Messages surface, a bearer token elsewhere)."""
        content = body if isinstance(body, bytes) else json.dumps(body).encode()
        if path.startswith("/v1/messages"):
            sent = {"x-api-key": self.key, "anthropic-version": ANTHROPIC_VERSION}
        else:
            sent = {"authorization": f"Bearer {self.key}"}
        return httpx.post(
            f"{self.url}{path}",
            content=content,
            headers={**sent, "content-type": "application/json", **headers},
            timeout=10,
        )

    def abandon_stream(
        self, path: str, body: dict[str, Any], headers: dict[str, str], until: bytes = b"\n\n"
    ) -> httpx.Response:
        """POST a streamed request and hang up once the answer holds ``until``."""
        with httpx.stream("POST", f"{self.url}{path}", json=body, headers=headers) as response:
            assert response.status_code == 200
            received = b""
            for chunk in response.iter_raw():
                received += chunk
                if until in received:
                    break
        return response

    def wait_for_events(self, count: int, timeout: float = 5.0) -> list[UsageEvent]:
        return wait_for_events(self.publisher, count, timeout)


def wait_for_events(
    publisher: MemoryPublisher, count: int, timeout: float = 5.0
) -> list[UsageEvent]:
    """At least ``count`` events, once published. Events are published as the answer ends,
    so a client can see its answer a moment before the event exists."""
    deadline = time.monotonic() + timeout
    while len(publisher.events) < count and time.monotonic() < deadline:
        time.sleep(0.005)
    assert len(publisher.events) >= count, publisher.events
    return list(publisher.events)


def gateway_config(simulator_url: str, keys: dict[str, str]) -> GatewayConfig:
    return GatewayConfig.model_validate(
        {
            "providers": [
                {
                    "slug": "sim",
                    "base_url": f"{simulator_url}/v1",
                    "api_key_env": SYSTEM_KEY_ENV,
                    "timeout_seconds": 1,
                    "models": ["gpt-4o", "o4-mini"],
                },
                {
                    "slug": "anthropic",
                    "wire": "anthropic",
                    "base_url": simulator_url,
                    "api_key_env": SYSTEM_KEY_ENV,
                    "timeout_seconds": 1,
                    "models": ["claude-sonnet-4-6", "claude-haiku-4-5"],
                },
                # Nothing listens on port 9 of the loopback interface.
                {"slug": "down", "base_url": "http://127.0.0.1:9/v1"},
            ],
            "teams": [
                {"id": team, "keys": [{"name": f"{team}-key", "sha256": hash_key(key)}]}
                for team, key in keys.items()
            ],
        }
    )


@contextmanager
def serve_gateway(**settings: Any) -> Iterator[Gateway]:
    """The ingress (with these settings) in front of its own simulator."""
    keys = {"acme": new_key(), "globex": new_key()}
    recorder = Recorder(create_simulator())
    publisher = MemoryPublisher()
    with pytest.MonkeyPatch.context() as patch, ServerThread(recorder) as simulator:
        patch.setenv(SYSTEM_KEY_ENV, SYSTEM_KEY)
        config = gateway_config(simulator.url, keys)
        ingress_settings = IngressSettings(max_request_body_bytes=MAX_BODY, **settings)
        with ServerThread(create_app(ingress_settings, config, publisher)) as ingress:
            yield Gateway(ingress.url, keys["acme"], keys["globex"], publisher, recorder)
    assert publisher.started and publisher.stopped
