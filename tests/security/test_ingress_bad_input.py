"""Bad input to the gateway, on every API surface: a 4xx in that surface's own error
format, and nothing forwarded to the provider, nothing metered."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from tests.security.ingress_harness import (
    ANTHROPIC_SURFACE,
    LANGUAGE_MODEL_BODY,
    LANGUAGE_MODEL_HEADERS,
    LANGUAGE_MODEL_SURFACE,
    MAX_BODY,
    Ingress,
    assert_error_format,
    running_ingress,
)

CHAT = "/v1/chat/completions"
RESPONSES = "/v1/responses"
MESSAGES = ANTHROPIC_SURFACE
LANGUAGE_MODEL = LANGUAGE_MODEL_SURFACE
MESSAGES_LIST = [{"role": "user", "content": "hi"}]
VALID: dict[str, dict[str, Any]] = {
    CHAT: {"model": "sim/gpt-4o", "messages": MESSAGES_LIST},
    RESPONSES: {"model": "sim/gpt-4o", "input": "hi"},
    MESSAGES: {"model": "anthropic/claude-haiku-4-5", "max_tokens": 16, "messages": MESSAGES_LIST},
    LANGUAGE_MODEL: LANGUAGE_MODEL_BODY,
}


@pytest.fixture(scope="module")
def module_ingress() -> Iterator[Ingress]:
    with running_ingress() as ingress:
        yield ingress


@pytest.fixture
def ingress(module_ingress: Ingress) -> Ingress:
    module_ingress.reset()
    return module_ingress


def headers(ingress: Ingress, path: str, **extra: str) -> dict[str, str]:
    base = {"authorization": f"Bearer {ingress.keys['acme']}", "content-type": "application/json"}
    if path == MESSAGES:
        base["anthropic-version"] = "2023-06-01"
    if path == LANGUAGE_MODEL:
        base.update(LANGUAGE_MODEL_HEADERS)
    base.update(extra)
    return {k: v for k, v in base.items() if v != ""}


def with_options(path: str, **gateway: Any) -> dict[str, Any]:
    return {**VALID[path], "providerOptions": {"gateway": gateway}}


def body_case(path: str, body: bytes | dict[str, Any] | list[Any]) -> bytes:
    return body if isinstance(body, bytes) else json.dumps(body).encode()


# (name, body, extra headers, status, param for the OpenAI format)
Case = tuple[str, bytes | dict[str, Any] | list[Any], dict[str, str], int, str | None]


def cases(path: str) -> list[Case]:
    valid = VALID[path]
    common: list[Case] = [
        ("malformed JSON", b'{"model": ', {}, 400, None),
        ("empty body", b"", {}, 400, None),
        ("JSON array", b"[1, 2]", {}, 400, None),
        ("JSON string", b'"hello"', {}, 400, None),
        ("not UTF-8", b"\xff\xfe\xfa{}", {}, 400, None),
        ("nesting too deep", b"[" * 50_000, {}, 400, None),
        ("providerOptions a string", {**valid, "providerOptions": "x"}, {}, 400, None),
        ("gateway a list", {**valid, "providerOptions": {"gateway": []}}, {}, 400, None),
        ("tags a string", with_options(path, tags="a,b"), {}, 400, None),
        ("tags with a number", with_options(path, tags=["a", 1]), {}, 400, None),
        ("eleven tags", with_options(path, tags=[f"t{n}" for n in range(11)]), {}, 400, "tags"),
        ("a tag too long", with_options(path, tags=["t" * 65]), {}, 400, "tags"),
        ("an empty tag", with_options(path, tags=[""]), {}, 400, "tags"),
        ("user a number", with_options(path, user=5), {}, 400, None),
        ("user too long", with_options(path, user="u" * 257), {}, 400, "user"),
        (
            "tags over the limit once merged with the header",
            with_options(path, tags=[f"b{n}" for n in range(6)]),
            {"ai-reporting-tags": "h1,h2,h3,h4,h5"},
            400,
            "tags",
        ),
        ("header tag too long", valid, {"ai-reporting-tags": "ok," + "t" * 65}, 400, "tags"),
        ("header user too long", valid, {"ai-reporting-user": "u" * 257}, 400, "user"),
        ("no key", valid, {"authorization": ""}, 401, None),
        ("basic auth", valid, {"authorization": "Basic dXNlcjpwYXNz"}, 401, None),
        ("bearer without key", valid, {"authorization": "Bearer "}, 401, None),
        ("wrong key", valid, {"authorization": "Bearer ml_wrong"}, 401, None),
        ("key that is SQL", valid, {"authorization": "Bearer ' OR 1=1 --"}, 401, None),
    ]
    if path != LANGUAGE_MODEL:
        common += [
            ("model missing", {k: v for k, v in valid.items() if k != "model"}, {}, 400, "model"),
            ("model a number", {**valid, "model": 7}, {}, 400, "model"),
            ("model without provider", {**valid, "model": "gpt-4o"}, {}, 400, "model"),
            ("unknown provider", {**valid, "model": "nope/gpt-4o"}, {}, 400, "model"),
            ("stream a string", {**valid, "stream": "yes"}, {}, 400, "stream"),
        ]
    if path == LANGUAGE_MODEL:
        model = "ai-language-model-id"
        version = "ai-language-model-specification-version"
        streaming = "ai-language-model-streaming"
        common += [
            ("model header missing", valid, {model: ""}, 400, model),
            ("model without provider", valid, {model: "gpt-4o"}, 404, None),
            ("unknown provider", valid, {model: "nope/gpt-4o"}, 404, None),
            ("specification version missing", valid, {version: ""}, 400, version),
            ("specification version 2", valid, {version: "2"}, 400, version),
            ("streaming a string", valid, {streaming: "yes"}, 400, streaming),
            ("prompt missing", {}, {}, 400, "prompt"),
            ("prompt a string", {"prompt": "hi"}, {}, 400, "prompt"),
            (
                "a message without content",
                {"prompt": [{"role": "user"}]},
                {},
                400,
                "prompt[0].content",
            ),
            (
                "a provider tool",
                {**valid, "tools": [{"type": "provider", "id": "a.b"}]},
                {},
                400,
                "tools[0]",
            ),
        ]
    if path == CHAT:
        common += [
            ("messages missing", {"model": "sim/gpt-4o"}, {}, 400, "messages"),
            ("messages empty", {**valid, "messages": []}, {}, 400, "messages"),
            ("messages an object", {**valid, "messages": {}}, {}, 400, "messages"),
            ("standard user too long", {**valid, "user": "u" * 257}, {}, 400, "user"),
        ]
    if path == RESPONSES:
        common += [("input a number", {**valid, "input": 5}, {}, 400, "input")]
    if path == MESSAGES:
        common += [
            ("anthropic-version missing", valid, {"anthropic-version": ""}, 400, None),
            ("messages missing", {"model": valid["model"]}, {}, 400, None),
            ("metadata.user_id a number", {**valid, "metadata": {"user_id": 5}}, {}, 400, None),
            ("wrong x-api-key", valid, {"x-api-key": "ml_wrong", "authorization": ""}, 401, None),
        ]
    return common


ALL = [(path, case) for path in VALID for case in cases(path)]


@pytest.mark.parametrize(("path", "case"), ALL, ids=[f"{path} {case[0]}" for path, case in ALL])
def test_bad_input_is_refused_in_the_surfaces_format_and_changes_nothing(
    ingress: Ingress, path: str, case: Case
) -> None:
    _, body, extra, status, param = case
    response = ingress.client.post(
        path, content=body_case(path, body), headers=headers(ingress, path, **extra)
    )
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    error = assert_error_format(path, status, response.json())
    if param is not None and path != MESSAGES:
        assert error["param"] == param, error
    if status == 401:
        assert response.headers["www-authenticate"] == "Bearer"
    assert ingress.upstream.received == []
    ingress.assert_nothing_published(settle=0.05)


@pytest.mark.parametrize("path", list(VALID))
def test_a_valid_request_is_forwarded_and_metered(ingress: Ingress, path: str) -> None:
    """The control for the test above: the same harness does see forwarding and events."""
    body = with_options(path, tags=["ok"], user="u1")
    response = ingress.client.post(path, json=body, headers=headers(ingress, path))
    assert response.status_code == 200, response.text
    [event] = ingress.wait_for_events(1)
    assert (event.team_id, event.tags, event.user_id) == ("acme", ["ok"], "u1")
    [upstream] = ingress.upstream.received
    assert "providerOptions" not in upstream.body


@pytest.mark.parametrize("path", list(VALID))
def test_oversized_bodies_are_a_413_declared_or_not(ingress: Ingress, path: str) -> None:
    padding = "x" * (MAX_BODY + 1)
    big = json.dumps({**VALID[path], "padding": padding}).encode()

    def chunks() -> Iterator[bytes]:
        # No Content-Length: the gateway must stop reading at the limit by itself.
        for start in range(0, len(big), 8192):
            yield big[start : start + 8192]

    for content in (big, chunks()):
        response = ingress.client.post(path, content=content, headers=headers(ingress, path))
        assert response.status_code == 413, response.text
        assert_error_format(path, 413, response.json())
    assert ingress.upstream.received == []
    assert ingress.publisher.events == []


@pytest.mark.parametrize("path", list(VALID))
def test_wrong_methods_and_paths_answer_in_the_surfaces_format(ingress: Ingress, path: str) -> None:
    response = ingress.client.get(path, headers=headers(ingress, path))
    assert response.status_code == 405
    assert_error_format(path, 405, response.json())
    response = ingress.client.post(path + "/nothing", json={}, headers=headers(ingress, path))
    assert response.status_code == 404
    assert_error_format(path, 404, response.json())


@pytest.mark.parametrize("path", list(VALID))
def test_an_absurd_content_length_is_a_413_not_a_crash(ingress: Ingress, path: str) -> None:
    response = ingress.client.post(
        path,
        content=json.dumps(VALID[path]).encode(),
        headers={**headers(ingress, path), "content-length": "9" * 5000},
    )
    assert response.status_code == 413, response.text
    assert_error_format(path, 413, response.json())
    assert ingress.upstream.received == []
