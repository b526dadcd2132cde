"""``x-simulator-fail-after``: a stream cut short by the surface's own error event."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from starlette.testclient import TestClient

from meterline.simulator.app import create_app

HEADERS = {"authorization": "Bearer sk", "anthropic-version": "2023-06-01"}
CASES: dict[str, tuple[dict[str, Any], Callable[[dict[str, Any]], bool]]] = {
    "/v1/chat/completions": (
        {"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]},
        lambda payload: payload["error"]["type"] == "server_error",
    ),
    "/v1/responses": (
        {"model": "gpt-4o", "input": "hi"},
        lambda payload: payload["type"] == "error" and payload["code"] == "server_error",
    ),
    "/v1/messages": (
        {
            "model": "claude-sonnet-4-6",
            "max_tokens": 64,
            "messages": [{"role": "user", "content": "hi"}],
        },
        lambda payload: (
            payload["type"] == "error" and payload["error"]["type"] == "overloaded_error"
        ),
    ),
}


def payloads(text: str) -> list[dict[str, Any]]:
    """The JSON data of each event ([DONE] left out)."""
    out = []
    for event in filter(None, text.split("\n\n")):
        data = event.split("data: ", 1)[1]
        if data != "[DONE]":
            out.append(json.loads(data))
    return out


def kind(payload: dict[str, Any]) -> object:
    return payload.get("type", payload.get("object"))


@pytest.mark.parametrize("path", sorted(CASES))
@pytest.mark.parametrize("after", [0, 3])
def test_stream_ends_with_the_surface_error_event_after_n_events(path: str, after: int) -> None:
    body, is_error = CASES[path]
    with TestClient(create_app()) as client:
        whole = client.post(path, json={**body, "stream": True}, headers=HEADERS)
        cut = client.post(
            path,
            json={**body, "stream": True},
            headers={**HEADERS, "x-simulator-fail-after": str(after)},
        )
    assert whole.status_code == cut.status_code == 200
    whole_events, cut_events = payloads(whole.text), payloads(cut.text)
    assert len(whole_events) > after + 1
    assert len(cut_events) == after + 1
    # The same events as an undisturbed stream up to the failure, then the error.
    assert [kind(e) for e in cut_events[:after]] == [kind(e) for e in whole_events[:after]]
    assert is_error(cut_events[-1])
    assert not any(is_error(e) for e in cut_events[:-1] if "error" in e)


def test_an_invalid_value_is_ignored() -> None:
    body = {**CASES["/v1/messages"][0], "stream": True}
    with TestClient(create_app()) as client:
        response = client.post(
            "/v1/messages", json=body, headers={**HEADERS, "x-simulator-fail-after": "x"}
        )
    assert "message_stop" in response.text
    assert "overloaded_error" not in response.text
