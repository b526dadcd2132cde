"""Huge request headers: uvicorn's httptools parser takes megabytes of them, so the services
refuse them themselves, 431 in the called surface's own error format, before a key is
checked, a provider called or anything metered."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from meterline.common.header_limit import MAX_HEADER_BYTES
from tests.security.conftest import FIRST_DAY, LAST_DAY, TwoTeams
from tests.security.ingress_harness import (
    ANTHROPIC_SURFACE,
    LANGUAGE_MODEL_BODY,
    LANGUAGE_MODEL_HEADERS,
    LANGUAGE_MODEL_SURFACE,
    Ingress,
    assert_error_format,
    ingress_app,
    running_ingress,
)
from tests.support.gateway import ServerThread

MESSAGES_LIST = [{"role": "user", "content": "hi"}]
VALID: dict[str, dict[str, Any]] = {
    "/v1/chat/completions": {"model": "sim/gpt-4o", "messages": MESSAGES_LIST},
    "/v1/responses": {"model": "sim/gpt-4o", "input": "hi"},
    ANTHROPIC_SURFACE: {
        "model": "anthropic/claude-haiku-4-5",
        "max_tokens": 16,
        "messages": MESSAGES_LIST,
    },
    LANGUAGE_MODEL_SURFACE: LANGUAGE_MODEL_BODY,
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
    base = {"authorization": f"Bearer {ingress.keys['acme']}"}
    if path == ANTHROPIC_SURFACE:
        base["anthropic-version"] = "2023-06-01"
    if path == LANGUAGE_MODEL_SURFACE:
        base |= LANGUAGE_MODEL_HEADERS
    return base | extra


# One huge header; many headers that are each small but add up; a huge tag header, which
# the gateway would otherwise parse into tags.
HUGE: list[tuple[str, dict[str, str]]] = [
    ("one header of 1 MiB", {"x-padding": "x" * (1024 * 1024)}),
    ("200 headers of 1 KiB", {f"x-pad-{n}": "y" * 1024 for n in range(200)}),
    ("tags of 128 KiB", {"ai-reporting-tags": ",".join(["t"] * (64 * 1024))}),
]


@pytest.mark.parametrize("path", list(VALID))
@pytest.mark.parametrize(("name", "extra"), HUGE, ids=[name for name, _ in HUGE])
def test_huge_headers_are_a_431_and_nothing_is_forwarded_or_metered(
    ingress: Ingress, path: str, name: str, extra: dict[str, str]
) -> None:
    response = ingress.client.post(path, json=VALID[path], headers=headers(ingress, path, **extra))
    assert response.status_code == 431, (name, response.text)
    error = assert_error_format(path, 431, response.json())
    assert str(MAX_HEADER_BYTES) in str(error["message"])
    ingress.assert_nothing_published(settle=0.3)
    assert ingress.upstream.received == []


@pytest.mark.parametrize("path", list(VALID))
def test_large_but_reasonable_headers_still_pass(ingress: Ingress, path: str) -> None:
    extra = {"x-trace-state": "z" * (MAX_HEADER_BYTES // 2)}
    response = ingress.client.post(path, json=VALID[path], headers=headers(ingress, path, **extra))
    assert response.status_code == 200, response.text
    assert len(ingress.wait_for_events(1)) == 1


def test_a_20_mib_header_through_uvicorn_and_httptools_is_refused() -> None:
    """Over a real socket, with the parser the services run on: the refusal comes from the
    service, and the server stays up for the next request."""
    path = "/v1/chat/completions"
    with ingress_app() as built, ServerThread(built.app) as server:
        key = {"authorization": f"Bearer {built.keys['acme']}"}
        with httpx.Client(base_url=server.url, timeout=60) as client:
            response = client.post(
                path, json=VALID[path], headers=key | {"x-padding": "x" * (20 * 1024 * 1024)}
            )
            assert response.status_code == 431, response.text[:500]
            assert_error_format(path, 431, response.json())
            after = client.post(path, json=VALID[path], headers=key)
            assert after.status_code == 200, after.text
        assert len(built.upstream.received) == 1


@pytest.mark.clickhouse
def test_huge_headers_to_the_query_service_are_a_431(two_teams: TwoTeams) -> None:
    response = two_teams.api.get(
        "/v1/report",
        params={"start_date": FIRST_DAY, "end_date": LAST_DAY},
        headers=two_teams.headers("acme") | {"x-padding": "x" * (1024 * 1024)},
    )
    assert response.status_code == 431, response.text
    body = response.json()
    assert set(body) == {"error"} and body["error"]["type"] == "invalid_request_error", body
    assert str(MAX_HEADER_BYTES) in body["error"]["message"]
