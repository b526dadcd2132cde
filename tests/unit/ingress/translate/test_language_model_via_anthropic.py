"""AI SDK language-model calls to an Anthropic model: the request translation, the whole
answer, the stream translator and the errors, as the gateway provider reads them."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

from meterline.ingress.errors import BadRequest
from meterline.ingress.translate.chat_via_anthropic.translation import DEFAULT_MAX_TOKENS
from meterline.ingress.translate.language_model import usage_v3
from meterline.ingress.translate.language_model_via_anthropic.stream import (
    LanguageModelStreamFromAnthropic,
)
from meterline.ingress.translate.language_model_via_anthropic.translation import (
    generate_result,
    messages_request,
    translate_answer,
)
from meterline.ingress.usage import from_anthropic_usage

SCHEMA: Any = {"type": "object", "properties": {"meter_id": {"type": "string"}}}
EPHEMERAL: Any = {"anthropic": {"cacheControl": {"type": "ephemeral"}}}


def text(value: str, **extra: Any) -> dict[str, Any]:
    return {"type": "text", "text": value, **extra}


def test_a_conversation_with_files_tools_signed_reasoning_and_cache_breakpoints() -> None:
    options: Any = {
        "prompt": [
            {"role": "system", "content": "Be brief.", "providerOptions": EPHEMERAL},
            {
                "role": "user",
                "content": [
                    text("Read these."),
                    {"type": "file", "mediaType": "image/png", "data": "iVBORw0KGgo="},
                    {"type": "file", "mediaType": "image/png", "data": "https://example.com/m.png"},
                    {"type": "file", "mediaType": "application/pdf", "data": "JVBERi0="},
                    {
                        "type": "file",
                        "mediaType": "text/plain",
                        "data": base64.b64encode(b"Meter 7: 42 kWh").decode(),
                        "providerOptions": EPHEMERAL,
                    },
                ],
            },
            {
                "role": "assistant",
                "content": [
                    {
                        "type": "reasoning",
                        "text": "They want a reading.",
                        "providerOptions": {"anthropic": {"signature": "sig"}},
                    },
                    {
                        "type": "reasoning",
                        "text": "",
                        "providerOptions": {"anthropic": {"redactedData": "opaque"}},
                    },
                    {"type": "reasoning", "text": "unsigned, from another model"},
                    text("Reading."),
                    {
                        "type": "tool-call",
                        "toolCallId": "toolu_1",
                        "toolName": "read_meter",
                        "input": {"meter_id": "7"},
                    },
                ],
            },
            {
                "role": "tool",
                "content": [
                    {
                        "type": "tool-result",
                        "toolCallId": "toolu_1",
                        "toolName": "read_meter",
                        "output": {"type": "error-text", "value": "meter offline"},
                    },
                    {
                        "type": "tool-result",
                        "toolCallId": "toolu_2",
                        "toolName": "photo",
                        "output": {
                            "type": "content",
                            "value": [
                                text("A photo:"),
                                {"type": "image-data", "data": "iVBO", "mediaType": "image/png"},
                            ],
                        },
                    },
                ],
            },
            {"role": "user", "content": [text("Thanks.")], "providerOptions": EPHEMERAL},
        ],
        "maxOutputTokens": 300,
        "temperature": 0.2,
        "topK": 40,
        "seed": 7,
        "stopSequences": ["END"],
        "tools": [
            {
                "type": "function",
                "name": "read_meter",
                "description": "Read a meter",
                "inputSchema": SCHEMA,
                "providerOptions": EPHEMERAL,
            }
        ],
        "toolChoice": {"type": "required"},
        "providerOptions": {"anthropic": {"disableParallelToolUse": True}},
    }
    request, warnings = messages_request(options, "claude-sonnet-4-6", stream=True)
    cache = {"type": "ephemeral"}
    assert request == {
        "model": "claude-sonnet-4-6",
        "system": [{"type": "text", "text": "Be brief.", "cache_control": cache}],
        "messages": [
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "Read these."},
                    {
                        "type": "image",
                        "source": {
                            "type": "base64",
                            "media_type": "image/png",
                            "data": "iVBORw0KGgo=",
                        },
                    },
                    {
                        "type": "image",
                        "source": {"type": "url", "url": "https://example.com/m.png"},
                    },
                    {
                        "type": "document",
                        "source": {
                            "type": "base64",
                            "media_type": "application/pdf",
                            "data": "JVBERi0=",
                        },
                    },
                    {
                        "type": "document",
                        "source": {
                            "type": "text",
                            "media_type": "text/plain",
                            "data": "Meter 7: 42 kWh",
                        },
                        "cache_control": cache,
                    },
                ],
            },
            {
                "role": "assistant",
                "content": [
                    {"type": "thinking", "thinking": "They want a reading.", "signature": "sig"},
                    {"type": "redacted_thinking", "data": "opaque"},
                    {"type": "text", "text": "Reading."},
                    {
                        "type": "tool_use",
                        "id": "toolu_1",
                        "name": "read_meter",
                        "input": {"meter_id": "7"},
                    },
                ],
            },
            {
                "role": "user",
                "content": [
                    {
                        "type": "tool_result",
                        "tool_use_id": "toolu_1",
                        "content": "meter offline",
                        "is_error": True,
                    },
                    {
                        "type": "tool_result",
                        "tool_use_id": "toolu_2",
                        "content": [
                            {"type": "text", "text": "A photo:"},
                            {
                                "type": "image",
                                "source": {
                                    "type": "base64",
                                    "media_type": "image/png",
                                    "data": "iVBO",
                                },
                            },
                        ],
                    },
                    {"type": "text", "text": "Thanks.", "cache_control": cache},
                ],
            },
        ],
        "max_tokens": 300,
        "temperature": 0.2,
        "top_k": 40,
        "stop_sequences": ["END"],
        "tools": [
            {
                "name": "read_meter",
                "input_schema": SCHEMA,
                "description": "Read a meter",
                "cache_control": cache,
            }
        ],
        "tool_choice": {"type": "any", "disable_parallel_tool_use": True},
        "stream": True,
    }
    assert [w.get("feature") for w in warnings] == [None, "seed"]
    assert (
        "prompt[2].content[2]: reasoning without an Anthropic signature" in warnings[0]["message"]
    )


def test_thinking_adds_its_budget_to_max_tokens_and_drops_sampling() -> None:
    options: Any = {
        "prompt": [{"role": "user", "content": [text("x")]}],
        "temperature": 0.5,
        "topP": 0.9,
        "providerOptions": {"anthropic": {"thinking": {"type": "enabled", "budgetTokens": 2048}}},
    }
    request, warnings = messages_request(options, "claude-sonnet-4-6", stream=False)
    assert request["thinking"] == {"type": "enabled", "budget_tokens": 2048}
    assert request["max_tokens"] == DEFAULT_MAX_TOKENS + 2048
    assert "temperature" not in request and "top_p" not in request
    assert [w["feature"] for w in warnings] == ["temperature", "topP"]


def test_an_openai_reasoning_effort_asks_claude_for_a_thinking_budget() -> None:
    options: Any = {
        "prompt": [{"role": "user", "content": [text("x")]}],
        "maxOutputTokens": 100,
        "providerOptions": {"openai": {"reasoningEffort": "low"}},
    }
    request, _ = messages_request(options, "claude-sonnet-4-6", stream=False)
    assert request["thinking"] == {"type": "enabled", "budget_tokens": 1024}
    assert request["max_tokens"] == 1124


def test_json_output_is_asked_for_in_the_system_prompt() -> None:
    options: Any = {
        "prompt": [{"role": "user", "content": [text("x")]}],
        "responseFormat": {"type": "json", "schema": SCHEMA, "name": "reading"},
    }
    request, warnings = messages_request(options, "claude-sonnet-4-6", stream=False)
    [instruction] = request["system"]
    assert json.dumps(SCHEMA) in instruction["text"] and "reading" in instruction["text"]
    assert warnings[0]["type"] == "compatibility"


@pytest.mark.parametrize(
    ("options", "param"),
    [
        ({"prompt": "hi"}, "prompt"),
        ({"prompt": [{"role": "user", "content": "hi"}]}, "prompt[0].content"),
        (
            {
                "prompt": [
                    {
                        "role": "user",
                        "content": [{"type": "file", "mediaType": "audio/wav", "data": "UklG"}],
                    }
                ]
            },
            "prompt[0].content[0].mediaType",
        ),
        (
            {
                "prompt": [
                    {
                        "role": "user",
                        "content": [{"type": "file", "mediaType": "text/plain", "data": "%%%"}],
                    }
                ]
            },
            "prompt[0].content[0].data",
        ),
        (
            {
                "prompt": [{"role": "user", "content": [text("x")]}],
                "providerOptions": {"anthropic": {"thinking": {"type": "enabled"}}},
            },
            "providerOptions.anthropic.thinking",
        ),
        (
            {
                "prompt": [
                    {
                        "role": "tool",
                        "content": [
                            {"type": "tool-result", "toolCallId": "t", "output": {"type": "xml"}}
                        ],
                    }
                ]
            },
            "prompt[0].content[0].output",
        ),
    ],
)
def test_what_messages_cannot_say_is_a_400(options: Any, param: str) -> None:
    with pytest.raises(BadRequest) as refused:
        messages_request(options, "m", stream=False)
    assert refused.value.param == param


MESSAGE_USAGE: Any = {
    "input_tokens": 100,
    "cache_read_input_tokens": 50,
    "cache_creation_input_tokens": 70,
    "cache_creation": {"ephemeral_5m_input_tokens": 30, "ephemeral_1h_input_tokens": 40},
    "output_tokens": 20,
    "output_tokens_details": {"thinking_tokens": 8},
}


def test_a_message_becomes_a_generate_result_with_the_events_usage() -> None:
    message: Any = {
        "id": "msg_1",
        "type": "message",
        "model": "claude-sonnet-4-6",
        "content": [
            {"type": "thinking", "thinking": "Hm.", "signature": "sig"},
            {"type": "redacted_thinking", "data": "opaque"},
            {"type": "text", "text": "Calling."},
            {"type": "tool_use", "id": "toolu_1", "name": "read_meter", "input": {"meter_id": "7"}},
        ],
        "stop_reason": "tool_use",
        "usage": MESSAGE_USAGE,
    }
    result = generate_result(message, event_id="ev-1", warnings=[])
    assert result["content"] == [
        {
            "type": "reasoning",
            "text": "Hm.",
            "providerMetadata": {"anthropic": {"signature": "sig"}},
        },
        {
            "type": "reasoning",
            "text": "",
            "providerMetadata": {"anthropic": {"redactedData": "opaque"}},
        },
        {"type": "text", "text": "Calling."},
        {
            "type": "tool-call",
            "toolCallId": "toolu_1",
            "toolName": "read_meter",
            "input": '{"meter_id":"7"}',
        },
    ]
    assert result["finishReason"] == {"unified": "tool-calls", "raw": "tool_use"}
    assert result["usage"] == {
        "inputTokens": {"total": 220, "noCache": 100, "cacheRead": 50, "cacheWrite": 70},
        "outputTokens": {"total": 20, "text": 12, "reasoning": 8},
        "raw": MESSAGE_USAGE,
    }
    event_usage = from_anthropic_usage(MESSAGE_USAGE)
    assert event_usage is not None and result["usage"] == usage_v3(event_usage)
    assert result["providerMetadata"] == {"gateway": {"generationId": "ev-1"}}


@pytest.mark.parametrize(
    ("status", "kind"),
    [
        (429, "rate_limit_exceeded"),
        (403, "failed_dependency"),
        (404, "model_not_found"),
        (529, "internal_server_error"),
    ],
)
def test_anthropic_errors_get_the_type_of_the_sdk_error_class(status: int, kind: str) -> None:
    body = {"type": "error", "error": {"type": "some_error", "message": "said"}}
    translated = json.loads(
        translate_answer(status, json.dumps(body).encode(), event_id="e", warnings=[])
    )
    assert translated["error"] == {
        "message": "said",
        "type": kind,
        "param": None,
        "code": "some_error",
    }


def event(payload: dict[str, Any]) -> str:
    return f"event: {payload['type']}\ndata: {json.dumps(payload)}\n\n"


def block_delta(index: int, delta: dict[str, Any]) -> str:
    return event({"type": "content_block_delta", "index": index, "delta": delta})


START_USAGE = {**MESSAGE_USAGE, "output_tokens": 1}
del START_USAGE["output_tokens_details"]
ANTHROPIC_STREAM = "".join(
    [
        event(
            {
                "type": "message_start",
                "message": {
                    "id": "msg_9",
                    "model": "claude-x",
                    "content": [],
                    "usage": START_USAGE,
                },
            }
        ),
        event(
            {
                "type": "content_block_start",
                "index": 0,
                "content_block": {"type": "thinking", "thinking": ""},
            }
        ),
        block_delta(0, {"type": "thinking_delta", "thinking": "Hm"}),
        block_delta(0, {"type": "signature_delta", "signature": "sig"}),
        event({"type": "content_block_stop", "index": 0}),
        event(
            {
                "type": "content_block_start",
                "index": 1,
                "content_block": {"type": "text", "text": ""},
            }
        ),
        event({"type": "ping"}),
        block_delta(1, {"type": "text_delta", "text": "Hello"}),
        event({"type": "content_block_stop", "index": 1}),
        event(
            {
                "type": "content_block_start",
                "index": 2,
                "content_block": {
                    "type": "tool_use",
                    "id": "toolu_7",
                    "name": "read_meter",
                    "input": {},
                },
            }
        ),
        block_delta(2, {"type": "input_json_delta", "partial_json": ""}),
        block_delta(2, {"type": "input_json_delta", "partial_json": '{"meter_id":"7"}'}),
        event({"type": "content_block_stop", "index": 2}),
        event(
            {
                "type": "message_delta",
                "delta": {"stop_reason": "tool_use"},
                "usage": {"output_tokens": 20, "output_tokens_details": {"thinking_tokens": 8}},
            }
        ),
        event({"type": "message_stop"}),
    ]
).encode()


def parts(stream: bytes) -> list[dict[str, Any]]:
    return [json.loads(e[6:]) for e in stream.split(b"\n\n") if e.strip()]


@pytest.mark.parametrize("piece", [5, 1 << 20])
def test_an_anthropic_stream_becomes_stream_parts(piece: int) -> None:
    scanner = LanguageModelStreamFromAnthropic(event_id="ev-3", warnings=[])
    out = b"".join(
        scanner.feed(ANTHROPIC_STREAM[i : i + piece])
        for i in range(0, len(ANTHROPIC_STREAM), piece)
    )
    out += scanner.finish()
    found = parts(out)
    assert found == [
        {"type": "stream-start", "warnings": []},
        {"type": "response-metadata", "id": "msg_9", "modelId": "claude-x"},
        {"type": "reasoning-start", "id": "0"},
        {"type": "reasoning-delta", "id": "0", "delta": "Hm"},
        {
            "type": "reasoning-end",
            "id": "0",
            "providerMetadata": {"anthropic": {"signature": "sig"}},
        },
        {"type": "text-start", "id": "1"},
        {"type": "text-delta", "id": "1", "delta": "Hello"},
        {"type": "text-end", "id": "1"},
        {"type": "tool-input-start", "id": "toolu_7", "toolName": "read_meter"},
        {"type": "tool-input-delta", "id": "toolu_7", "delta": '{"meter_id":"7"}'},
        {"type": "tool-input-end", "id": "toolu_7"},
        {
            "type": "tool-call",
            "toolCallId": "toolu_7",
            "toolName": "read_meter",
            "input": '{"meter_id":"7"}',
        },
        {
            "type": "finish",
            "finishReason": {"unified": "tool-calls", "raw": "tool_use"},
            "usage": {
                "inputTokens": {"total": 220, "noCache": 100, "cacheRead": 50, "cacheWrite": 70},
                "outputTokens": {"total": 20, "text": 12, "reasoning": 8},
                "raw": {
                    **START_USAGE,
                    "output_tokens": 20,
                    "output_tokens_details": {"thinking_tokens": 8},
                },
            },
            "providerMetadata": {"gateway": {"generationId": "ev-3"}},
        },
    ]
    assert scanner.usage is not None and found[-1]["usage"] == usage_v3(scanner.usage)
    assert scanner.finish_reason == "tool_use"


def test_a_cut_stream_closes_its_parts_and_an_error_is_an_error_part() -> None:
    scanner = LanguageModelStreamFromAnthropic(event_id="e", warnings=[])
    failure = {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}
    out = scanner.feed(ANTHROPIC_STREAM[: ANTHROPIC_STREAM.index(b"event: ping")])
    out += scanner.feed(event(failure).encode()) + scanner.finish()
    found = parts(out)
    assert [p["type"] for p in found][-4:] == ["text-start", "error", "text-end", "finish"]
    assert found[-3]["error"]["message"] == "Overloaded"
    assert scanner.error_type == "overloaded_error"
    assert found[-1]["finishReason"] == {"unified": "error", "raw": "overloaded_error"}
    # The input side of message_start is billed even so.
    assert found[-1]["usage"]["inputTokens"]["total"] == 220
