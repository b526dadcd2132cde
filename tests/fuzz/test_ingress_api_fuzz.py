"""Schemathesis against the gateway's API surfaces, in process, in front of the
provider simulator. The gateway publishes no OpenAPI description of its own (its routes are
plain Starlette routes, proxies of the providers' APIs), so the document below describes what
the gateway itself reads of each request: the model, the messages or input, ``stream``, the
tagging fields and headers, and the key.

Properties, for valid and invalid requests alike: never a 5xx (the simulator is up), JSON or
an event stream only, errors in the surface's own format, and a request the gateway refused
was neither forwarded nor metered."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from hypothesis import given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import status_code_conformance

from tests.fuzz.settings import FUZZ_HTTP
from tests.security.ingress_harness import (
    ANTHROPIC_SURFACE,
    GATEWAY_PROVIDER_ERROR_TYPES,
    LANGUAGE_MODEL_SURFACE,
    IngressApp,
    ingress_app,
)

TAGS = {
    "type": "array",
    "maxItems": 10,
    "items": {"type": "string", "minLength": 1, "maxLength": 64},
}
PROVIDER_OPTIONS = {
    "type": "object",
    "properties": {
        "gateway": {
            "type": "object",
            "properties": {"user": {"type": "string", "maxLength": 256}, "tags": TAGS},
        }
    },
}
MESSAGES = {
    "type": "array",
    "minItems": 1,
    "maxItems": 3,
    "items": {
        "type": "object",
        "required": ["role", "content"],
        "properties": {
            "role": {"type": "string", "enum": ["user", "assistant"]},
            "content": {"type": "string", "maxLength": 200},
        },
    },
}
PROMPT = {
    "type": "array",
    "minItems": 1,
    "maxItems": 3,
    "items": {
        "type": "object",
        "required": ["role", "content"],
        "properties": {
            "role": {"type": "string", "enum": ["user", "assistant"]},
            "content": {
                "type": "array",
                "maxItems": 2,
                "items": {
                    "type": "object",
                    "required": ["type", "text"],
                    "properties": {
                        "type": {"type": "string", "enum": ["text"]},
                        "text": {"type": "string", "maxLength": 200},
                    },
                },
            },
        },
    },
}
TAGGING_HEADERS = [
    {"name": "ai-reporting-tags", "in": "header", "schema": {"type": "string", "maxLength": 200}},
    {"name": "ai-reporting-user", "in": "header", "schema": {"type": "string", "maxLength": 256}},
]
OPENAI_ERROR = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["message", "type"],
            "properties": {"message": {"type": "string"}, "type": {"type": "string"}},
        }
    },
}


def operation(body: dict[str, Any], headers: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "post": {
            "parameters": headers,
            "requestBody": {
                "required": True,
                "content": {"application/json": {"schema": body}},
            },
            "responses": {
                "200": {
                    "description": "the provider's answer",
                    "content": {
                        "application/json": {"schema": {"type": "object"}},
                        "text/event-stream": {"schema": {"type": "string"}},
                    },
                },
                # Refusals of the gateway, and the provider's own 4xx passed through.
                "4XX": {
                    "description": "an error in the surface's format",
                    "content": {"application/json": {"schema": {"type": "object"}}},
                },
            },
        }
    }


DOCUMENT: dict[str, Any] = {
    "openapi": "3.0.3",
    "info": {"title": "Meterline gateway (what it reads of each request)", "version": "1"},
    "paths": {
        "/v1/chat/completions": operation(
            {
                "type": "object",
                "required": ["model", "messages"],
                "properties": {
                    "model": {"type": "string", "enum": ["sim/gpt-4o", "sim/o4-mini"]},
                    "messages": MESSAGES,
                    "stream": {"type": "boolean"},
                    "user": {"type": "string", "maxLength": 256},
                    "providerOptions": PROVIDER_OPTIONS,
                },
            },
            TAGGING_HEADERS,
        ),
        "/v1/responses": operation(
            {
                "type": "object",
                "required": ["model", "input"],
                "properties": {
                    "model": {"type": "string", "enum": ["sim/gpt-4o"]},
                    "input": {"type": "string", "maxLength": 200},
                    "stream": {"type": "boolean"},
                    "providerOptions": PROVIDER_OPTIONS,
                },
            },
            TAGGING_HEADERS,
        ),
        ANTHROPIC_SURFACE: operation(
            {
                "type": "object",
                "required": ["model", "max_tokens", "messages"],
                "properties": {
                    "model": {"type": "string", "enum": ["anthropic/claude-haiku-4-5"]},
                    "max_tokens": {"type": "integer", "minimum": 1, "maximum": 64},
                    "messages": MESSAGES,
                    "stream": {"type": "boolean"},
                    "metadata": {
                        "type": "object",
                        "properties": {"user_id": {"type": "string", "maxLength": 256}},
                    },
                    "providerOptions": PROVIDER_OPTIONS,
                },
            },
            [
                *TAGGING_HEADERS,
                {
                    "name": "anthropic-version",
                    "in": "header",
                    "required": True,
                    "schema": {"type": "string", "enum": ["2023-06-01"]},
                },
            ],
        ),
        LANGUAGE_MODEL_SURFACE: operation(
            {
                "type": "object",
                "required": ["prompt"],
                "properties": {
                    "prompt": PROMPT,
                    "maxOutputTokens": {"type": "integer", "minimum": 1, "maximum": 64},
                    "temperature": {"type": "number", "minimum": 0, "maximum": 1},
                    "stopSequences": {"type": "array", "items": {"type": "string"}},
                    "providerOptions": PROVIDER_OPTIONS,
                },
            },
            [
                *TAGGING_HEADERS,
                {
                    "name": "ai-language-model-id",
                    "in": "header",
                    "required": True,
                    "schema": {
                        "type": "string",
                        "enum": ["sim/gpt-4o", "anthropic/claude-haiku-4-5"],
                    },
                },
                {
                    "name": "ai-language-model-streaming",
                    "in": "header",
                    "required": True,
                    "schema": {"type": "string", "enum": ["true", "false"]},
                },
                {
                    "name": "ai-language-model-specification-version",
                    "in": "header",
                    "required": True,
                    "schema": {"type": "string", "enum": ["3"]},
                },
            ],
        ),
    },
}


@pytest.fixture(scope="module")
def gateway() -> Iterator[IngressApp]:
    with ingress_app() as built:
        yield built


def assert_surface_format(path: str, response: Any) -> None:
    status = response.status_code
    assert status < 500, response.text
    content_type = (response.headers.get("content-type") or [""])[0]
    assert content_type.split(";")[0] in ("application/json", "text/event-stream"), content_type
    if status < 400:
        return
    assert content_type == "application/json", content_type
    body = response.json()
    if path == ANTHROPIC_SURFACE:
        assert body["type"] == "error", body
    error = body["error"]
    if path == LANGUAGE_MODEL_SURFACE:
        assert error["type"] in GATEWAY_PROVIDER_ERROR_TYPES, body
    assert isinstance(error["message"], str) and error["message"], body
    assert isinstance(error["type"], str) and error["type"], body


@pytest.mark.parametrize("path", list(DOCUMENT["paths"]))
def test_surface(gateway: IngressApp, path: str) -> None:
    schema = schemathesis.openapi.from_dict(DOCUMENT)
    schema.app = gateway.app
    operation = schema[path]["POST"]
    strategy = st.one_of(
        operation.as_strategy(generation_mode=GenerationMode.POSITIVE),
        operation.as_strategy(generation_mode=GenerationMode.NEGATIVE),
    )
    statuses: set[int] = set()

    # Fewer examples than the query service's: each one is a proxied request.
    @settings(FUZZ_HTTP, max_examples=20)
    @given(case=strategy)
    def run(case: Any) -> None:
        forwarded = len(gateway.upstream.received)
        published = len(gateway.publisher.events)
        response = case.call(headers={"authorization": f"Bearer {gateway.keys['acme']}"})
        statuses.add(response.status_code)
        assert_surface_format(path, response)
        case.validate_response(response, checks=[not_a_server_error, status_code_conformance])
        if len(gateway.upstream.received) == forwarded:
            # Refused by the gateway itself: nothing may have been metered.
            assert response.status_code >= 400
            assert len(gateway.publisher.events) == published
        else:
            # Metered once the response is complete: wait for it.
            deadline = time.monotonic() + 5
            while len(gateway.publisher.events) == published and time.monotonic() < deadline:
                time.sleep(0.002)
            assert gateway.publisher.events[-1].team_id == "acme"

    run()
    # The budget reached both sides: answers from the provider and the gateway's refusals.
    assert 200 in statuses and 400 in statuses, statuses
