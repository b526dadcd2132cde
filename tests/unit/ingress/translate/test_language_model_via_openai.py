"""AI SDK language-model calls to an OpenAI-compatible model: the request translation, the
whole answer, the stream translator and the errors, as the gateway provider reads them."""

from __future__ import annotations

import json
from typing import Any

import pytest

from meterline.ingress.errors import BadRequest
from meterline.ingress.translate.language_model import usage_v3
from meterline.ingress.translate.language_model_via_openai.stream import (
    LanguageModelStreamFromChat,
)
from meterline.ingress.translate.language_model_via_openai.translation import (
    chat_request,
    generate_result,
    translate_answer,
)
from meterline.ingress.usage import Usage, from_openai_usage

SCHEMA: Any = {"type": "object", "properties": {"meter_id": {"type": "string"}}}
TOOLS: Any = [
    {"type": "function", "name": "read_meter", "description": "Read a meter", "inputSchema": SCHEMA}
]


def user(*parts: Any) -> dict[str, Any]:
    return {"role": "user", "content": list(parts)}


def text(value: str) -> dict[str, Any]:
    return {"type": "text", "text": value}


def test_a_conversation_with_files_tools_and_every_option() -> None:
    options: Any = {
        "prompt": [
            {"role": "system", "content": "Be brief."},
            user(
                text("Read these."),
                {"type": "file", "mediaType": "image/png", "data": "iVBORw0KGgo="},
                {"type": "file", "mediaType": "image/*", "data": "data:image/jpeg;base64,/9j/"},
                {"type": "file", "mediaType": "image/png", "data": "https://example.com/m.png"},
                {
                    "type": "file",
                    "mediaType": "application/pdf",
                    "data": "JVBERi0=",
                    "filename": "a.pdf",
                },
                {"type": "file", "mediaType": "audio/wav", "data": "UklGRg=="},
            ),
            {
                "role": "assistant",
                "content": [
                    {"type": "reasoning", "text": "They want a reading."},
                    text("Reading."),
                    {
                        "type": "tool-call",
                        "toolCallId": "call_1",
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
                        "toolCallId": "call_1",
                        "toolName": "read_meter",
                        "output": {"type": "json", "value": {"kwh": 42}},
                    }
                ],
            },
            user(text("Thanks.")),
        ],
        "maxOutputTokens": 300,
        "temperature": 0.2,
        "topP": 0.9,
        "topK": 40,
        "seed": 7,
        "presencePenalty": 0.1,
        "frequencyPenalty": 0.3,
        "stopSequences": ["END"],
        "responseFormat": {"type": "json", "schema": SCHEMA, "name": "reading"},
        "tools": TOOLS,
        "toolChoice": {"type": "tool", "toolName": "read_meter"},
        "providerOptions": {
            "gateway": {"user": "u-1"},
            "openai": {"reasoningEffort": "low", "promptCacheKey": "k", "parallelToolCalls": False},
        },
        "headers": {"x-extra": "1"},
    }
    request, warnings = chat_request(options, "gpt-4o", stream=True)
    assert request == {
        "model": "gpt-4o",
        "messages": [
            {"role": "system", "content": "Be brief."},
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "Read these."},
                    {
                        "type": "image_url",
                        "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="},
                    },
                    {"type": "image_url", "image_url": {"url": "data:image/jpeg;base64,/9j/"}},
                    {"type": "image_url", "image_url": {"url": "https://example.com/m.png"}},
                    {
                        "type": "file",
                        "file": {
                            "filename": "a.pdf",
                            "file_data": "data:application/pdf;base64,JVBERi0=",
                        },
                    },
                    {"type": "input_audio", "input_audio": {"data": "UklGRg==", "format": "wav"}},
                ],
            },
            {
                "role": "assistant",
                "content": "Reading.",
                "tool_calls": [
                    {
                        "id": "call_1",
                        "type": "function",
                        "function": {"name": "read_meter", "arguments": '{"meter_id":"7"}'},
                    }
                ],
            },
            {"role": "tool", "tool_call_id": "call_1", "content": '{"kwh":42}'},
            {"role": "user", "content": "Thanks."},
        ],
        "max_completion_tokens": 300,
        "temperature": 0.2,
        "top_p": 0.9,
        "seed": 7,
        "presence_penalty": 0.1,
        "frequency_penalty": 0.3,
        "stop": ["END"],
        "response_format": {
            "type": "json_schema",
            "json_schema": {"name": "reading", "schema": SCHEMA},
        },
        "tools": [
            {
                "type": "function",
                "function": {
                    "name": "read_meter",
                    "parameters": SCHEMA,
                    "description": "Read a meter",
                },
            }
        ],
        "tool_choice": {"type": "function", "function": {"name": "read_meter"}},
        "reasoning_effort": "low",
        "prompt_cache_key": "k",
        "parallel_tool_calls": False,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    assert [w["feature"] for w in warnings] == ["topK"]


@pytest.mark.parametrize(
    ("choice", "sent"),
    [({"type": "auto"}, "auto"), ({"type": "none"}, "none"), ({"type": "required"}, "required")],
)
def test_tool_choices_and_json_without_a_schema(choice: Any, sent: str) -> None:
    options: Any = {
        "prompt": [user(text("x"))],
        "tools": TOOLS,
        "toolChoice": choice,
        "responseFormat": {"type": "json"},
    }
    request, warnings = chat_request(options, "m", stream=False)
    assert request["tool_choice"] == sent
    assert request["response_format"] == {"type": "json_object"}
    assert "stream" not in request and warnings == []


@pytest.mark.parametrize(
    ("thinking", "effort"),
    [
        ({"type": "enabled", "budgetTokens": 1000}, "low"),
        ({"type": "enabled", "budgetTokens": 4096}, "medium"),
        ({"type": "enabled", "budgetTokens": 30000}, "high"),
        ({"type": "adaptive"}, "medium"),
        ({"type": "disabled"}, None),
    ],
)
def test_anthropic_thinking_asks_an_openai_model_for_the_effort_it_covers(
    thinking: Any, effort: str | None
) -> None:
    options: Any = {
        "prompt": [user(text("x"))],
        "providerOptions": {"anthropic": {"thinking": thinking}},
    }
    request, _ = chat_request(options, "o4-mini", stream=False)
    assert request.get("reasoning_effort") == effort


@pytest.mark.parametrize(
    ("options", "param"),
    [
        ({"prompt": []}, "prompt"),
        ({"prompt": [{"role": "developer", "content": []}]}, "prompt[0].role"),
        ({"prompt": [{"role": "system", "content": [text("x")]}]}, "prompt[0].content"),
        (
            {"prompt": [user({"type": "file", "mediaType": "video/mp4", "data": "AAAA"})]},
            "prompt[0].content[0].mediaType",
        ),
        (
            {
                "prompt": [
                    user(
                        {"type": "file", "mediaType": "application/pdf", "data": "https://x/a.pdf"}
                    )
                ]
            },
            "prompt[0].content[0].mediaType",
        ),
        (
            {
                "prompt": [
                    user({"type": "file", "mediaType": "image/png", "data": "data:image/png,raw"})
                ]
            },
            "prompt[0].content[0].data",
        ),
        (
            {
                "prompt": [
                    {
                        "role": "assistant",
                        "content": [{"type": "file", "mediaType": "image/png", "data": "AA"}],
                    }
                ]
            },
            "prompt[0].content[0].type",
        ),
        (
            {
                "prompt": [user(text("x"))],
                "tools": [
                    {"type": "provider", "id": "gateway.perplexity_search", "name": "s", "args": {}}
                ],
            },
            "tools[0]",
        ),
        ({"prompt": [user(text("x"))], "toolChoice": {"type": "tool"}}, "toolChoice"),
        ({"prompt": [user(text("x"))], "responseFormat": {"type": "xml"}}, "responseFormat"),
    ],
)
def test_what_chat_completions_cannot_say_is_a_400(options: Any, param: str) -> None:
    with pytest.raises(BadRequest) as refused:
        chat_request(options, "m", stream=False)
    assert refused.value.param == param


COMPLETION_USAGE: Any = {
    "prompt_tokens": 2100,
    "completion_tokens": 300,
    "total_tokens": 2400,
    "prompt_tokens_details": {"cached_tokens": 128, "cache_write_tokens": 1920},
    "completion_tokens_details": {"reasoning_tokens": 256},
}


def test_a_completion_becomes_a_generate_result_with_the_events_usage() -> None:
    completion: Any = {
        "id": "chatcmpl-1",
        "model": "gpt-5.6-luna",
        "choices": [
            {
                "index": 0,
                "message": {
                    "role": "assistant",
                    "content": "Calling.",
                    "reasoning_content": "Need the meter.",
                    "tool_calls": [
                        {
                            "id": "call_1",
                            "type": "function",
                            "function": {"name": "read_meter", "arguments": '{"meter_id":"7"}'},
                        }
                    ],
                },
                "finish_reason": "tool_calls",
            }
        ],
        "usage": COMPLETION_USAGE,
    }
    warning = {"type": "unsupported", "feature": "topK", "details": "d"}
    result = generate_result(completion, event_id="ev-1", warnings=[warning])
    assert result == {
        "content": [
            {"type": "reasoning", "text": "Need the meter."},
            {"type": "text", "text": "Calling."},
            {
                "type": "tool-call",
                "toolCallId": "call_1",
                "toolName": "read_meter",
                "input": '{"meter_id":"7"}',
            },
        ],
        "finishReason": {"unified": "tool-calls", "raw": "tool_calls"},
        "usage": {
            "inputTokens": {"total": 2100, "noCache": 52, "cacheRead": 128, "cacheWrite": 1920},
            "outputTokens": {"total": 300, "text": 44, "reasoning": 256},
            "raw": COMPLETION_USAGE,
        },
        "providerMetadata": {"gateway": {"generationId": "ev-1"}},
        "warnings": [warning],
    }
    # The event reads the same usage object: the same numbers.
    event_usage = from_openai_usage(COMPLETION_USAGE)
    assert event_usage is not None and result["usage"] == usage_v3(event_usage)


def test_output_audio_is_neither_text_nor_reasoning() -> None:
    usage = Usage(input_tokens=10, output_tokens=100, reasoning_tokens=20, output_audio_tokens=50)
    assert usage_v3(usage)["outputTokens"] == {"total": 100, "text": 30, "reasoning": 20}


@pytest.mark.parametrize(
    ("status", "body", "kind"),
    [
        (
            429,
            {"error": {"message": "slow down", "type": "requests", "code": "rate_limit_exceeded"}},
            "rate_limit_exceeded",
        ),
        (
            401,
            {"error": {"message": "bad key", "type": "invalid_request_error"}},
            "failed_dependency",
        ),
        (
            400,
            {"error": {"message": "bad", "type": "invalid_request_error"}},
            "invalid_request_error",
        ),
        (404, {"error": {"message": "no model", "code": "model_not_found"}}, "model_not_found"),
        (503, {"error": {"message": "busy", "type": "server_error"}}, "internal_server_error"),
    ],
)
def test_provider_errors_get_the_type_of_the_sdk_error_class(
    status: int, body: Any, kind: str
) -> None:
    translated = json.loads(
        translate_answer(status, json.dumps(body).encode(), event_id="e", warnings=[])
    )
    assert translated["error"]["type"] == kind
    assert translated["error"]["message"] == body["error"]["message"]


def parts(stream: bytes) -> list[dict[str, Any]]:
    found = []
    for event in stream.split(b"\n\n"):
        if event.strip():
            assert event.startswith(b"data: ")
            found.append(json.loads(event[6:]))
    return found


def chunk(delta: dict[str, Any], finish: str | None = None) -> str:
    choice = {"index": 0, "delta": delta, "finish_reason": finish}
    payload = {"id": "chatcmpl-9", "created": 1_700_000_000, "model": "gpt-x", "choices": [choice]}
    return f"data: {json.dumps(payload)}\n\n"


CHAT_STREAM = "".join(
    [
        chunk({"role": "assistant", "content": ""}),
        chunk({"reasoning_content": "Think"}),
        chunk({"reasoning_content": "ing."}),
        chunk({"content": "Hello"}),
        chunk({"content": " there"}),
        chunk(
            {
                "tool_calls": [
                    {
                        "index": 0,
                        "id": "call_7",
                        "function": {"name": "read_meter", "arguments": ""},
                    }
                ]
            }
        ),
        chunk({"tool_calls": [{"index": 0, "function": {"arguments": '{"meter_id"'}}]}),
        chunk({"tool_calls": [{"index": 0, "function": {"arguments": ':"7"}'}}]}),
        chunk({}, "tool_calls"),
        "data: "
        + json.dumps({"id": "chatcmpl-9", "choices": [], "usage": COMPLETION_USAGE})
        + "\n\n",
        "data: [DONE]\n\n",
    ]
).encode()


@pytest.mark.parametrize("piece", [7, 1 << 20])
def test_a_chat_stream_becomes_stream_parts(piece: int) -> None:
    scanner = LanguageModelStreamFromChat(event_id="ev-2", warnings=[])
    out = b"".join(
        scanner.feed(CHAT_STREAM[i : i + piece]) for i in range(0, len(CHAT_STREAM), piece)
    )
    out += scanner.finish()
    found = parts(out)
    assert [p["type"] for p in found] == [
        "stream-start",
        "response-metadata",
        "reasoning-start",
        "reasoning-delta",
        "reasoning-delta",
        "reasoning-end",
        "text-start",
        "text-delta",
        "text-delta",
        "text-end",
        "tool-input-start",
        "tool-input-delta",
        "tool-input-delta",
        "tool-input-end",
        "tool-call",
        "finish",
    ]
    assert found[1] == {
        "type": "response-metadata",
        "id": "chatcmpl-9",
        "modelId": "gpt-x",
        "timestamp": "2023-11-14T22:13:20+00:00",
    }
    assert "".join(p["delta"] for p in found if p["type"] == "text-delta") == "Hello there"
    assert found[-2] == {
        "type": "tool-call",
        "toolCallId": "call_7",
        "toolName": "read_meter",
        "input": '{"meter_id":"7"}',
    }
    assert scanner.usage is not None and scanner.finish_reason == "tool_calls"
    assert found[-1] == {
        "type": "finish",
        "finishReason": {"unified": "tool-calls", "raw": "tool_calls"},
        "usage": usage_v3(scanner.usage),
        "providerMetadata": {"gateway": {"generationId": "ev-2"}},
    }
    assert found[-1]["usage"]["inputTokens"]["cacheWrite"] == 1920


def test_a_stream_without_done_still_finishes_and_an_error_is_an_error_part() -> None:
    scanner = LanguageModelStreamFromChat(
        event_id="e", warnings=[{"type": "other", "message": "m"}]
    )
    error = {"error": {"message": "overloaded", "type": "server_error", "code": None}}
    out = scanner.feed((chunk({"content": "Hi"}) + f"data: {json.dumps(error)}\n\n").encode())
    out += scanner.finish()
    found = parts(out)
    assert found[0] == {"type": "stream-start", "warnings": [{"type": "other", "message": "m"}]}
    assert [p["type"] for p in found] == [
        "stream-start",
        "response-metadata",
        "text-start",
        "text-delta",
        "error",
        "text-end",
        "finish",
    ]
    [failure] = [p for p in found if p["type"] == "error"]
    assert failure["error"]["message"] == "overloaded"
    assert scanner.error_type == "server_error"
    assert found[-1]["type"] == "finish"
    assert found[-1]["finishReason"] == {"unified": "error", "raw": "server_error"}
