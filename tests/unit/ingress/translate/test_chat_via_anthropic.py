"""Chat Completions <-> Anthropic Messages: the pure translation functions and the stream
translator, on hand-written payloads in each API's documented shape."""

from __future__ import annotations

import json
from typing import Any

import pytest

from meterline.ingress.errors import BadRequest
from meterline.ingress.translate.chat_via_anthropic.stream import ChatStreamFromAnthropic
from meterline.ingress.translate.chat_via_anthropic.translation import (
    DEFAULT_MAX_TOKENS,
    chat_completion,
    chat_usage,
    messages_request,
    translate_answer,
)

TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather for a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
    },
}


def test_a_conversation_with_system_tools_and_results() -> None:
    chat = {
        "model": "anthropic/claude-sonnet-4-6",
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "developer", "content": [{"type": "text", "text": "Use tools."}]},
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "Weather?", "cache_control": {"type": "ephemeral"}},
                    {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBOR"}},
                    {"type": "image_url", "image_url": {"url": "https://x.test/a.png"}},
                ],
            },
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": "call_1",
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": '{"city":"Oslo"}'},
                    },
                    {
                        "id": "call_2",
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": '{"city":"Rome"}'},
                    },
                ],
            },
            {"role": "tool", "tool_call_id": "call_1", "content": "rain"},
            {
                "role": "tool",
                "tool_call_id": "call_2",
                "content": [{"type": "text", "text": "sun"}],
            },
            {"role": "user", "content": "Thanks."},
        ],
        "tools": [TOOL],
        "tool_choice": "required",
        "parallel_tool_calls": False,
        "stop": "END",
        "temperature": 0.2,
        "user": "u-1",
        "stream": True,
        "stream_options": {"include_usage": True},
        "seed": 7,
    }
    request = messages_request(chat, "claude-sonnet-4-6")
    assert request == {
        "model": "claude-sonnet-4-6",
        "system": [{"type": "text", "text": "Be brief."}, {"type": "text", "text": "Use tools."}],
        "messages": [
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "Weather?", "cache_control": {"type": "ephemeral"}},
                    {
                        "type": "image",
                        "source": {"type": "base64", "media_type": "image/png", "data": "iVBOR"},
                    },
                    {"type": "image", "source": {"type": "url", "url": "https://x.test/a.png"}},
                ],
            },
            {
                "role": "assistant",
                "content": [
                    {
                        "type": "tool_use",
                        "id": "call_1",
                        "name": "get_weather",
                        "input": {"city": "Oslo"},
                    },
                    {
                        "type": "tool_use",
                        "id": "call_2",
                        "name": "get_weather",
                        "input": {"city": "Rome"},
                    },
                ],
            },
            {
                "role": "user",
                "content": [
                    {"type": "tool_result", "tool_use_id": "call_1", "content": "rain"},
                    {
                        "type": "tool_result",
                        "tool_use_id": "call_2",
                        "content": [{"type": "text", "text": "sun"}],
                    },
                    {"type": "text", "text": "Thanks."},
                ],
            },
        ],
        "max_tokens": DEFAULT_MAX_TOKENS,
        "stop_sequences": ["END"],
        "temperature": 0.2,
        "stream": True,
        "tools": [
            {
                "name": "get_weather",
                "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}},
                "description": "Weather for a city",
            }
        ],
        "tool_choice": {"type": "any", "disable_parallel_tool_use": True},
        "metadata": {"user_id": "u-1"},
    }


@pytest.mark.parametrize(
    ("choice", "expected"),
    [
        ("auto", {"type": "auto"}),
        ("none", {"type": "none"}),
        ({"type": "function", "function": {"name": "f"}}, {"type": "tool", "name": "f"}),
    ],
)
def test_tool_choice(choice: object, expected: dict[str, Any]) -> None:
    chat = {"messages": [{"role": "user", "content": "x"}], "tool_choice": choice}
    assert messages_request(chat, "m")["tool_choice"] == expected


def test_the_client_limit_wins_over_the_default() -> None:
    chat: dict[str, Any] = {"messages": [{"role": "user", "content": "x"}], "max_tokens": 10}
    assert messages_request(chat, "m")["max_tokens"] == 10
    chat["max_completion_tokens"] = 20
    assert messages_request(chat, "m")["max_tokens"] == 20


def test_reasoning_effort_becomes_a_thinking_budget() -> None:
    chat: dict[str, Any] = {
        "messages": [{"role": "user", "content": "x"}],
        "reasoning_effort": "medium",
    }
    request = messages_request(chat, "m")
    assert request["thinking"] == {"type": "enabled", "budget_tokens": 4096}
    assert request["max_tokens"] == DEFAULT_MAX_TOKENS + 4096
    chat["max_completion_tokens"] = 3000  # the budget must stay below the cap
    assert messages_request(chat, "m")["thinking"]["budget_tokens"] == 2999
    chat["reasoning_effort"] = "minimal"
    assert "thinking" not in messages_request(chat, "m")


@pytest.mark.parametrize(
    ("chat", "param"),
    [
        ({"messages": [{"role": "user", "content": "x"}], "n": 2}, "n"),
        (
            {
                "messages": [{"role": "user", "content": "x"}],
                "reasoning_effort": "high",
                "max_tokens": 500,
            },
            "reasoning_effort",
        ),
        (
            {"messages": [{"role": "user", "content": "x"}], "reasoning_effort": "max"},
            "reasoning_effort",
        ),
        ({"messages": [{"role": "function", "content": "x"}]}, "messages[0].role"),
        (
            {"messages": [{"role": "user", "content": [{"type": "input_audio"}]}]},
            "messages[0].content[0].type",
        ),
        (
            {
                "messages": [
                    {
                        "role": "assistant",
                        "tool_calls": [{"function": {"name": "f", "arguments": "{oops"}}],
                    }
                ]
            },
            "messages[0].tool_calls[0].function.arguments",
        ),
        ({"messages": [{"role": "tool", "content": "x"}]}, "messages[0].tool_call_id"),
        ({"messages": [{"role": "user", "content": "x"}], "tools": [{"type": "web"}]}, "tools[0]"),
    ],
)
def test_what_messages_cannot_say_is_a_400_naming_the_parameter(
    chat: dict[str, Any], param: str
) -> None:
    with pytest.raises(BadRequest) as caught:
        messages_request(chat, "m")
    assert caught.value.param == param


ANTHROPIC_USAGE = {
    "input_tokens": 10,
    "cache_read_input_tokens": 200,
    "cache_creation_input_tokens": 30,
    "cache_creation": {"ephemeral_5m_input_tokens": 20, "ephemeral_1h_input_tokens": 10},
    "output_tokens": 50,
    "output_tokens_details": {"thinking_tokens": 12},
}


def test_usage_follows_the_openai_convention() -> None:
    assert chat_usage(ANTHROPIC_USAGE) == {
        "prompt_tokens": 240,
        "completion_tokens": 50,
        "total_tokens": 290,
        "prompt_tokens_details": {"cached_tokens": 200, "cache_write_tokens": 30},
        "completion_tokens_details": {"reasoning_tokens": 12},
    }


def test_a_message_becomes_a_chat_completion() -> None:
    message = {
        "id": "msg_1",
        "type": "message",
        "role": "assistant",
        "model": "claude-sonnet-4-6",
        "content": [
            {"type": "thinking", "thinking": "hmm", "signature": "s"},
            {"type": "text", "text": "Checking. "},
            {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "Oslo"}},
        ],
        "stop_reason": "tool_use",
        "usage": ANTHROPIC_USAGE,
    }
    completion = chat_completion(message, created=5)
    assert completion["choices"] == [
        {
            "index": 0,
            "message": {
                "role": "assistant",
                "content": "Checking. ",
                "refusal": None,
                "tool_calls": [
                    {
                        "id": "toolu_1",
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": '{"city": "Oslo"}'},
                    }
                ],
            },
            "logprobs": None,
            "finish_reason": "tool_calls",
        }
    ]
    assert (completion["object"], completion["created"], completion["id"]) == (
        "chat.completion",
        5,
        "msg_1",
    )
    assert completion["usage"]["prompt_tokens"] == 240


@pytest.mark.parametrize(
    ("stop", "finish"),
    [
        ("end_turn", "stop"),
        ("stop_sequence", "stop"),
        ("max_tokens", "length"),
        ("refusal", "content_filter"),
    ],
)
def test_stop_reasons(stop: str, finish: str) -> None:
    message = {"type": "message", "content": [{"type": "text", "text": "x"}], "stop_reason": stop}
    assert chat_completion(message)["choices"][0]["finish_reason"] == finish


def test_errors_become_openai_errors_and_openai_errors_pass() -> None:
    anthropic = {"type": "error", "error": {"type": "rate_limit_error", "message": "slow down"}}
    translated = json.loads(translate_answer(429, json.dumps(anthropic).encode()))
    assert translated == {
        "error": {
            "message": "slow down",
            "type": "rate_limit_error",
            "param": None,
            "code": "rate_limit_error",
        }
    }
    own = b'{"error":{"message":"m","type":"upstream_error","param":null,"code":"http_502"}}'
    assert translate_answer(502, own) == own


def sse(*events: dict[str, Any]) -> bytes:
    return b"".join(f"event: {e['type']}\ndata: {json.dumps(e)}\n\n".encode() for e in events)


STREAM = sse(
    {
        "type": "message_start",
        "message": {
            "id": "msg_9",
            "type": "message",
            "role": "assistant",
            "model": "claude-sonnet-4-6",
            "content": [],
            "usage": {**ANTHROPIC_USAGE, "output_tokens": 1},
        },
    },
    {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
    {"type": "ping"},
    {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Hel"}},
    {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "lo"}},
    {"type": "content_block_stop", "index": 0},
    {
        "type": "content_block_start",
        "index": 1,
        "content_block": {"type": "tool_use", "id": "toolu_9", "name": "get_weather", "input": {}},
    },
    {
        "type": "content_block_delta",
        "index": 1,
        "delta": {"type": "input_json_delta", "partial_json": '{"city":'},
    },
    {
        "type": "content_block_delta",
        "index": 1,
        "delta": {"type": "input_json_delta", "partial_json": '"Oslo"}'},
    },
    {"type": "content_block_stop", "index": 1},
    {
        "type": "message_delta",
        "delta": {"stop_reason": "tool_use", "stop_sequence": None},
        "usage": {"output_tokens": 50},
    },
    {"type": "message_stop"},
)


def chunks_of(data: bytes) -> list[dict[str, Any] | str]:
    out: list[dict[str, Any] | str] = []
    for event in data.split(b"\n\n"):
        if event.startswith(b"data: "):
            body = event[6:].decode()
            out.append(body if body == "[DONE]" else json.loads(body))
    return out


@pytest.mark.parametrize("piece", [1, 7, 64, len(STREAM)])
def test_a_stream_is_translated_whatever_the_chunking(piece: int) -> None:
    translator = ChatStreamFromAnthropic(include_usage=True, created=1)
    out = (
        b"".join(translator.feed(STREAM[i : i + piece]) for i in range(0, len(STREAM), piece))
        + translator.finish()
    )
    chunks = chunks_of(out)
    assert chunks[-1] == "[DONE]"
    deltas = [c["choices"][0]["delta"] for c in chunks[:-2] if isinstance(c, dict)]
    assert deltas[0] == {"role": "assistant", "content": ""}
    assert "".join(d.get("content", "") for d in deltas) == "Hello"
    calls = [d["tool_calls"][0] for d in deltas if "tool_calls" in d]
    assert calls[0] == {
        "index": 0,
        "id": "toolu_9",
        "type": "function",
        "function": {"name": "get_weather", "arguments": ""},
    }
    assert "".join(c["function"]["arguments"] for c in calls) == '{"city":"Oslo"}'
    finishes = [c["choices"][0]["finish_reason"] for c in chunks[:-2] if isinstance(c, dict)]
    assert finishes[-1] == "tool_calls" and set(finishes[:-1]) == {None}
    usage_chunk = chunks[-2]
    assert isinstance(usage_chunk, dict) and usage_chunk["choices"] == []
    assert usage_chunk["usage"]["prompt_tokens"] == 240
    assert usage_chunk["usage"]["completion_tokens"] == 50
    assert all(c["id"] == "msg_9" for c in chunks if isinstance(c, dict))
    # What the event records: the provider's own usage and stop reason.
    assert translator.usage is not None
    assert (translator.usage.input_tokens, translator.usage.output_tokens) == (240, 50)
    assert translator.usage.cache_creation_1h_input_tokens == 10
    assert translator.finish_reason == "tool_use" and translator.error_type is None


def test_no_usage_chunk_unless_the_client_asked() -> None:
    translator = ChatStreamFromAnthropic(include_usage=False)
    sent = translator.feed(STREAM[:100]) + translator.feed(STREAM[100:]) + translator.finish()
    chunks = chunks_of(sent)
    assert chunks[-1] == "[DONE]"
    assert all("usage" not in c for c in chunks if isinstance(c, dict))


def test_an_error_event_becomes_an_openai_error_chunk() -> None:
    translator = ChatStreamFromAnthropic(include_usage=False)
    error = {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}
    [chunk] = chunks_of(translator.feed(sse(error)))
    assert chunk == {
        "error": {
            "message": "Overloaded",
            "type": "overloaded_error",
            "param": None,
            "code": "overloaded_error",
        }
    }
    assert translator.error_type == "overloaded_error"
