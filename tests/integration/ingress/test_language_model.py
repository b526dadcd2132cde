"""``POST /v3/ai/language-model`` end to end through the gateway: requests as the AI SDK's
gateway provider sends them (its headers, its call options as the body), the simulator as
the provider on both wires. What the client receives and what the event records agree,
streamed and not; errors come in the protocol's format with the status the SDK maps to its
error classes."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from meterline.common.events import UsageEvent
from meterline.ingress.translate.language_model_via_anthropic.translation import (
    messages_request,
)
from meterline.ingress.translate.language_model_via_openai.translation import chat_request
from meterline.simulator.usage import request_digest
from tests.support.gateway import SYSTEM_KEY, Gateway

OPENAI = "sim/gpt-4o"
ANTHROPIC = "anthropic/claude-sonnet-4-6"
WIRES = [OPENAI, ANTHROPIC]
PROMPT: Any = [
    {"role": "system", "content": "You are terse."},
    {"role": "user", "content": [{"type": "text", "text": "Describe a gas meter."}]},
]
TOOLS: Any = [
    {
        "type": "function",
        "name": "read_meter",
        "description": "Read a meter",
        "inputSchema": {"type": "object", "properties": {"meter_id": {"type": "string"}}},
    }
]
ASK_FOR_TOOL: Any = [
    {"role": "user", "content": [{"type": "text", "text": "Please call a tool for meter 7."}]}
]


def headers(gw: Gateway, model: str, stream: bool, **extra: str) -> dict[str, str]:
    """What ``@ai-sdk/gateway`` sends."""
    return {
        "authorization": f"Bearer {gw.key}",
        "ai-gateway-protocol-version": "0.0.1",
        "ai-gateway-auth-method": "api-key",
        "ai-language-model-specification-version": "3",
        "ai-language-model-id": model,
        "ai-language-model-streaming": "true" if stream else "false",
        "content-type": "application/json",
        **extra,
    }


def call(
    gw: Gateway,
    model: str,
    body: dict[str, Any],
    stream: bool = False,
    extra: dict[str, str] | None = None,
) -> httpx.Response:
    return httpx.post(
        f"{gw.url}/v3/ai/language-model",
        content=json.dumps(body).encode(),
        headers=headers(gw, model, stream, **(extra or {})),
        timeout=10,
    )


def stream_parts(response: httpx.Response) -> list[dict[str, Any]]:
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/event-stream")
    found = []
    for event in response.text.split("\n\n"):
        if event.strip():
            assert event.startswith("data: "), event
            found.append(json.loads(event[6:]))
    return found


def streamed_text(found: list[dict[str, Any]]) -> str:
    return "".join(p["delta"] for p in found if p["type"] == "text-delta")


def assert_event_usage(event: UsageEvent, usage: dict[str, Any]) -> None:
    """The V3 usage the client got is the event's, field by field."""
    assert usage["inputTokens"] == {
        "total": event.input_tokens,
        "noCache": event.input_tokens
        - event.cached_input_tokens
        - event.cache_creation_input_tokens,
        "cacheRead": event.cached_input_tokens,
        "cacheWrite": event.cache_creation_input_tokens,
    }
    assert usage["outputTokens"] == {
        "total": event.output_tokens,
        "text": event.output_tokens - event.reasoning_tokens - event.output_audio_tokens,
        "reasoning": event.reasoning_tokens,
    }
    assert usage["raw"] == json.loads(event.raw_usage)


@pytest.mark.parametrize("model", WIRES)
def test_a_whole_answer(gw: Gateway, model: str) -> None:
    tagging = {"gateway": {"user": "cust-1", "tags": ["pro", "code-review"]}}
    answer = call(gw, model, {"prompt": PROMPT, "providerOptions": tagging})
    assert answer.status_code == 200, answer.text
    result = answer.json()
    [part] = result["content"]
    assert part["type"] == "text" and part["text"]
    assert result["finishReason"]["unified"] == "stop"
    assert result["warnings"] == []
    [event] = gw.wait_for_events(1)
    assert result["providerMetadata"] == {"gateway": {"generationId": event.event_id}}
    assert answer.headers["x-meterline-event-id"] == event.event_id
    provider, name = model.split("/")
    assert (event.api_surface, event.provider, event.model, event.model_requested) == (
        "language_model",
        provider,
        name,
        model,
    )
    assert (event.status, event.http_status, event.streamed) == ("success", 200, False)
    assert (event.user_id, event.tags) == ("cust-1", ["code-review", "pro"])
    assert_event_usage(event, result["usage"])
    [received] = gw.upstream.received
    if provider == "sim":
        assert received.path == "/v1/chat/completions"
        assert received.headers["authorization"] == f"Bearer {SYSTEM_KEY}"
        assert received.body["messages"][0] == {"role": "system", "content": "You are terse."}
    else:
        assert received.path == "/v1/messages"
        assert received.headers["x-api-key"] == SYSTEM_KEY
        assert received.body["system"] == [{"type": "text", "text": "You are terse."}]
    assert "providerOptions" not in received.body and "prompt" not in received.body


@pytest.mark.parametrize("model", WIRES)
def test_a_stream_says_what_the_whole_answer_says(gw: Gateway, model: str) -> None:
    body = {"prompt": PROMPT, "maxOutputTokens": 500}
    whole = call(gw, model, body).json()
    streamed = call(gw, model, body, stream=True)
    found = stream_parts(streamed)
    assert found[0] == {"type": "stream-start", "warnings": []}
    assert found[1]["type"] == "response-metadata"
    assert streamed_text(found) == whole["content"][0]["text"]
    finish = found[-1]
    assert finish["type"] == "finish"
    assert finish["finishReason"] == whole["finishReason"]
    _, event = gw.wait_for_events(2)
    assert event.streamed and event.status == "success"
    assert streamed.headers["x-meterline-event-id"] == event.event_id
    assert finish["providerMetadata"] == {"gateway": {"generationId": event.event_id}}
    assert_event_usage(event, finish["usage"])
    assert finish["usage"]["inputTokens"] == whole["usage"]["inputTokens"]
    assert finish["usage"]["outputTokens"] == whole["usage"]["outputTokens"]
    assert event.time_to_first_token_ms is not None


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize("model", WIRES)
def test_a_tool_call_round_trip(gw: Gateway, model: str, stream: bool) -> None:
    first = call(gw, model, {"prompt": ASK_FOR_TOOL, "tools": TOOLS}, stream=stream)
    if stream:
        found = stream_parts(first)
        [tool_call] = [p for p in found if p["type"] == "tool-call"]
        [opened] = [p for p in found if p["type"] == "tool-input-start"]
        assert opened == {
            "type": "tool-input-start",
            "id": tool_call["toolCallId"],
            "toolName": "read_meter",
        }
        deltas = "".join(p["delta"] for p in found if p["type"] == "tool-input-delta")
        assert deltas == tool_call["input"]
        reason = found[-1]["finishReason"]
    else:
        result = first.json()
        [tool_call] = result["content"]
        reason = result["finishReason"]
    assert reason["unified"] == "tool-calls"
    assert tool_call["type"] == "tool-call" and tool_call["toolName"] == "read_meter"
    arguments = json.loads(tool_call["input"])
    assert arguments == {"meter_id": "simulated"}

    follow_up = [
        *ASK_FOR_TOOL,
        {
            "role": "assistant",
            "content": [
                {
                    "type": "tool-call",
                    "toolCallId": tool_call["toolCallId"],
                    "toolName": "read_meter",
                    "input": arguments,
                }
            ],
        },
        {
            "role": "tool",
            "content": [
                {
                    "type": "tool-result",
                    "toolCallId": tool_call["toolCallId"],
                    "toolName": "read_meter",
                    "output": {"type": "json", "value": {"kwh": 42}},
                }
            ],
        },
    ]
    second = call(gw, model, {"prompt": follow_up, "tools": TOOLS}, stream=stream)
    assert second.status_code == 200, second.text
    sent = gw.upstream.received[-1].body
    if model == OPENAI:
        assert sent["messages"][1]["tool_calls"][0]["id"] == tool_call["toolCallId"]
        assert sent["messages"][2] == {
            "role": "tool",
            "tool_call_id": tool_call["toolCallId"],
            "content": '{"kwh":42}',
        }
    else:
        assert sent["messages"][1]["content"][0]["type"] == "tool_use"
        assert sent["messages"][2]["content"] == [
            {"type": "tool_result", "tool_use_id": tool_call["toolCallId"], "content": '{"kwh":42}'}
        ]
        # The simulated model answers the tool result in words.
        answered = stream_parts(second)[-1] if stream else second.json()
        assert answered["finishReason"]["unified"] == "stop"
    events = gw.wait_for_events(2)
    assert events[0].finish_reason in ("tool_calls", "tool_use")
    assert all(e.status == "success" and e.api_surface == "language_model" for e in events)


REASONING: Any = [
    ("sim/o4-mini", {"openai": {"reasoningEffort": "medium"}}, ("reasoning_effort", "medium")),
    (
        "anthropic/claude-haiku-4-5",
        {"anthropic": {"thinking": {"type": "enabled", "budgetTokens": 1024}}},
        ("thinking", {"type": "enabled", "budget_tokens": 1024}),
    ),
]


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize(("model", "options", "sent"), REASONING)
def test_reasoning_is_asked_for_and_counted(
    gw: Gateway, model: str, options: Any, sent: tuple[str, Any], stream: bool
) -> None:
    answer = call(gw, model, {"prompt": PROMPT, "providerOptions": options}, stream=stream)
    usage = stream_parts(answer)[-1]["usage"] if stream else answer.json()["usage"]
    [event] = gw.wait_for_events(1)
    assert event.reasoning_tokens > 0
    assert usage["outputTokens"]["reasoning"] == event.reasoning_tokens
    assert_event_usage(event, usage)
    field, value = sent
    assert gw.upstream.received[-1].body[field] == value


def long_prompt(n: int, cache_control: bool) -> Any:
    """A system prompt over 1024 tokens (the simulator caches such prompts), variant ``n``."""
    system: dict[str, Any] = {"role": "system", "content": f"Handbook {n}. " * 400}
    if cache_control:
        system["providerOptions"] = {"anthropic": {"cacheControl": {"type": "ephemeral"}}}
    return [system, PROMPT[1]]


def cache_variant(model: str, writes: bool) -> dict[str, Any]:
    """Call options whose upstream request the simulator answers with cache writes (or
    reads): it decides by the request's digest, so the first variant of the wanted kind is
    taken, the same on every run."""
    provider, name = model.split("/")
    for n in range(64):
        options = {"prompt": long_prompt(n, cache_control=provider == "anthropic")}
        if provider == "anthropic":
            upstream, _ = messages_request(options, name, stream=False)
        else:
            upstream, _ = chat_request(options, name, stream=False)
        if (request_digest(upstream)[5] % 2 == 0) == writes:
            return options
    raise AssertionError("no variant found")


CACHES = [
    ("sim/gpt-4o", False, "cacheRead"),
    ("sim/gpt-5.6-luna", True, "cacheWrite"),
    ("anthropic/claude-sonnet-4-6", False, "cacheRead"),
    ("anthropic/claude-sonnet-4-6", True, "cacheWrite"),
]


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize(("model", "writes", "field"), CACHES)
def test_cache_reads_and_writes_reach_the_client_and_the_event(
    gw: Gateway, model: str, writes: bool, field: str, stream: bool
) -> None:
    answer = call(gw, model, cache_variant(model, writes), stream=stream)
    usage = stream_parts(answer)[-1]["usage"] if stream else answer.json()["usage"]
    [event] = gw.wait_for_events(1)
    assert usage["inputTokens"][field] > 0
    assert usage["inputTokens"]["cacheRead" if writes else "cacheWrite"] == 0
    assert_event_usage(event, usage)
    if model.startswith("anthropic/"):
        [system] = gw.upstream.received[-1].body["system"]
        assert system["cache_control"] == {"type": "ephemeral"}


def test_routing_options_byok_and_the_tag_headers_work_as_on_every_surface(gw: Gateway) -> None:
    options = {
        "gateway": {
            "user": "body-user",
            "tags": ["plan:pro"],
            "models": ["anthropic/claude-haiku-4-5"],
            "byok": {"anthropic": [{"apiKey": "sk-ant-request"}]},
        }
    }
    answer = call(
        gw,
        "down/gpt-4o",
        {"prompt": PROMPT, "providerOptions": options},
        extra={"ai-reporting-tags": "feature:review", "ai-reporting-user": "header-user"},
    )
    assert answer.status_code == 200, answer.text
    [event] = gw.wait_for_events(1)
    # "down" is unreachable: the fallback model answered, with the request's own key.
    assert (event.provider, event.model, event.credential_type) == (
        "anthropic",
        "claude-haiku-4-5",
        "byok",
    )
    assert (event.user_id, event.tags) == ("header-user", ["feature:review", "plan:pro"])
    [received] = gw.upstream.received
    assert received.headers["x-api-key"] == "sk-ant-request"
    assert_event_usage(event, answer.json()["usage"])

    refused = call(
        gw, OPENAI, {"prompt": PROMPT, "providerOptions": {"gateway": {"zeroDataRetention": True}}}
    )
    assert refused.status_code == 400
    assert refused.json()["error"]["param"] == "providerOptions.gateway.zeroDataRetention"
    only = call(gw, OPENAI, {"prompt": PROMPT, "providerOptions": {"gateway": {"only": ["x"]}}})
    assert only.status_code == 400
    assert only.json()["error"]["type"] == "invalid_request_error"


def error_of(response: httpx.Response) -> dict[str, Any]:
    body = response.json()
    assert set(body) == {"error"}, body
    error: dict[str, Any] = body["error"]
    assert set(error) == {"message", "type", "param", "code"} and error["message"]
    return error


def test_a_bad_or_missing_key_is_an_authentication_error(gw: Gateway) -> None:
    body = json.dumps({"prompt": PROMPT}).encode()
    url = f"{gw.url}/v3/ai/language-model"
    for authorization in ("Bearer ml_wrong", None):
        sent = headers(gw, OPENAI, False)
        if authorization is None:
            del sent["authorization"]
        else:
            sent["authorization"] = authorization
        answer = httpx.post(url, content=body, headers=sent, timeout=10)
        assert answer.status_code == 401
        assert answer.headers["www-authenticate"] == "Bearer"
        assert error_of(answer)["type"] == "authentication_error"
    assert gw.upstream.received == [] and gw.publisher.events == []


def test_an_unknown_model_is_model_not_found(gw: Gateway) -> None:
    for model in ("nowhere/gpt-4o", "gpt-4o"):
        answer = call(gw, model, {"prompt": PROMPT})
        assert answer.status_code == 404
        error = error_of(answer)
        assert (error["type"], error["param"]) == ("model_not_found", {"modelId": model})


@pytest.mark.parametrize(
    ("body", "extra", "param"),
    [
        (b"not json", {}, None),
        (b"[]", {}, None),
        (json.dumps({"prompt": []}).encode(), {}, "prompt"),
        (json.dumps({"messages": PROMPT}).encode(), {}, "prompt"),
        (
            json.dumps(
                {"prompt": [{"role": "user", "content": [{"type": "video", "data": "x"}]}]}
            ).encode(),
            {},
            "prompt[0].content[0].type",
        ),
        (
            json.dumps({"prompt": PROMPT}).encode(),
            {"ai-language-model-id": ""},
            "ai-language-model-id",
        ),
        (
            json.dumps({"prompt": PROMPT}).encode(),
            {"ai-language-model-specification-version": "2"},
            "ai-language-model-specification-version",
        ),
        (
            json.dumps({"prompt": PROMPT}).encode(),
            {"ai-language-model-streaming": "yes"},
            "ai-language-model-streaming",
        ),
        (
            json.dumps(
                {"prompt": PROMPT, "providerOptions": {"gateway": {"sort": "cheapest"}}}
            ).encode(),
            {},
            "providerOptions.gateway.sort",
        ),
    ],
)
def test_a_bad_request_is_an_invalid_request(
    gw: Gateway, body: bytes, extra: dict[str, str], param: str | None
) -> None:
    answer = httpx.post(
        f"{gw.url}/v3/ai/language-model",
        content=body,
        headers={**headers(gw, OPENAI, False), **extra},
        timeout=10,
    )
    assert answer.status_code == 400
    error = error_of(answer)
    assert error["type"] == "invalid_request_error"
    assert error["param"] == param
    assert gw.upstream.received == [] and gw.publisher.events == []


PROVIDER_ERRORS = [
    (429, "rate_limit_exceeded"),
    (500, "internal_server_error"),
    (503, "internal_server_error"),
    (401, "failed_dependency"),
    (400, "invalid_request_error"),
]


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize(("status", "kind"), PROVIDER_ERRORS)
@pytest.mark.parametrize("model", WIRES)
def test_a_provider_error_keeps_its_status_and_gets_the_sdks_type(
    gw: Gateway, model: str, status: int, kind: str, stream: bool
) -> None:
    gw.upstream.inject["x-simulator-status"] = str(status)
    answer = call(gw, model, {"prompt": PROMPT}, stream=stream)
    assert answer.status_code == status
    assert error_of(answer)["type"] == kind
    [event] = gw.wait_for_events(1)
    assert (event.status, event.http_status) == ("error", status)
    assert answer.headers["x-meterline-event-id"] == event.event_id


@pytest.mark.parametrize("model", WIRES)
def test_a_stream_that_fails_midway_ends_with_an_error_part(gw: Gateway, model: str) -> None:
    gw.upstream.inject["x-simulator-fail-after"] = "3"
    found = stream_parts(call(gw, model, {"prompt": PROMPT}, stream=True))
    [failure] = [p for p in found if p["type"] == "error"]
    assert failure["error"]["message"].startswith("Simulated failure mid-stream")
    assert found[-1]["type"] == "finish"
    assert found[-1]["finishReason"]["unified"] == "error"
    [event] = gw.wait_for_events(1)
    assert event.status == "error" and event.error_type


def test_an_unreachable_provider_is_an_internal_error_without_an_event(gw: Gateway) -> None:
    answer = call(gw, "down/gpt-4o", {"prompt": PROMPT})
    assert answer.status_code == 502
    assert error_of(answer)["type"] == "internal_server_error"
    assert gw.publisher.events == []


@pytest.mark.parametrize(
    "kind",
    ["embedding", "image", "video", "reranking", "speech", "transcription"],
)
def test_other_model_kinds_are_not_supported(gw: Gateway, kind: str) -> None:
    answer = httpx.post(
        f"{gw.url}/v3/ai/{kind}-model",
        json={"values": ["x"]},
        headers={"authorization": f"Bearer {gw.key}", "ai-model-id": "sim/x"},
        timeout=10,
    )
    assert answer.status_code == 400
    error = error_of(answer)
    assert (error["type"], error["code"]) == ("invalid_request_error", "unsupported_model_type")
    assert error["message"].startswith(f"{kind} models are not supported")
    unknown = httpx.post(f"{gw.url}/v3/ai/nothing", headers={"authorization": f"Bearer {gw.key}"})
    assert unknown.status_code == 404
    assert error_of(unknown)["type"] == "invalid_request_error"


def test_warnings_say_what_the_provider_could_not_take(gw: Gateway) -> None:
    body = {"prompt": PROMPT, "topK": 5, "seed": 1}
    openai = call(gw, OPENAI, body).json()
    assert [w["feature"] for w in openai["warnings"]] == ["topK"]
    anthropic = stream_parts(call(gw, ANTHROPIC, body, stream=True))
    assert [w["feature"] for w in anthropic[0]["warnings"]] == ["seed"]
    assert gw.upstream.received[-1].body["top_k"] == 5
