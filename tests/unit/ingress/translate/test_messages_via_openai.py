"""Anthropic Messages to an OpenAI-compatible model: the pure translations, the stream
translator, and end to end through the gateway with the official ``anthropic`` SDK as the
client and the simulator's Chat Completions endpoint as the provider."""

from __future__ import annotations

import json
from typing import Any

import pytest

from meterline.ingress.errors import BadRequest
from meterline.ingress.translate.messages_via_openai.stream import MessagesStreamFromChat
from meterline.ingress.translate.messages_via_openai.translation import (
    chat_request,
    message,
    translate_answer,
)

MODEL = "sim/gpt-4o"
TOOLS: Any = [
    {
        "name": "read_meter",
        "description": "Read a meter",
        "input_schema": {"type": "object", "properties": {"meter_id": {"type": "string"}}},
    }
]


def test_a_conversation_with_tools_and_images() -> None:
    body = {
        "model": MODEL,
        "system": [{"type": "text", "text": "Be brief."}],
        "max_tokens": 100,
        "stop_sequences": ["END"],
        "metadata": {"user_id": "u-1"},
        "tools": TOOLS,
        "tool_choice": {"type": "any", "disable_parallel_tool_use": True},
        "stream": True,
        "messages": [
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "Read it."},
                    {
                        "type": "image",
                        "source": {"type": "base64", "media_type": "image/png", "data": "iVB"},
                    },
                ],
            },
            {
                "role": "assistant",
                "content": [
                    {"type": "thinking", "thinking": "hm", "signature": "s"},
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
                    {"type": "tool_result", "tool_use_id": "toolu_1", "content": "42"},
                    {"type": "text", "text": "And?"},
                ],
            },
        ],
    }
    assert chat_request(body, "gpt-4o") == {
        "model": "gpt-4o",
        "messages": [
            {"role": "system", "content": "Be brief."},
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "Read it."},
                    {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVB"}},
                ],
            },
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": "toolu_1",
                        "type": "function",
                        "function": {"name": "read_meter", "arguments": '{"meter_id": "7"}'},
                    }
                ],
            },
            {"role": "tool", "tool_call_id": "toolu_1", "content": "42"},
            {"role": "user", "content": [{"type": "text", "text": "And?"}]},
        ],
        "max_tokens": 100,
        "stop": ["END"],
        "stream": True,
        "stream_options": {"include_usage": True},
        "tools": [
            {
                "type": "function",
                "function": {
                    "name": "read_meter",
                    "parameters": TOOLS[0]["input_schema"],
                    "description": "Read a meter",
                },
            }
        ],
        "tool_choice": "required",
        "parallel_tool_calls": False,
        "user": "u-1",
    }


def test_what_chat_completions_cannot_say_is_a_400() -> None:
    body = {"messages": [{"role": "user", "content": [{"type": "document", "source": {}}]}]}
    with pytest.raises(BadRequest) as caught:
        chat_request(body, "m")
    assert caught.value.param == "messages.0.content.0.type"


def test_cache_writes_and_reasoning_reach_the_messages_client() -> None:
    """What the provider bills for, in the fields Messages has for it: cache writes beside
    the input, reasoning as thinking tokens (inside ``output_tokens``)."""
    completion = {
        "id": "chatcmpl-2",
        "model": "o4-mini",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "42"}}],
        "usage": {
            "prompt_tokens": 2100,
            "completion_tokens": 300,
            "prompt_tokens_details": {"cached_tokens": 128, "cache_write_tokens": 1920},
            "completion_tokens_details": {"reasoning_tokens": 256},
        },
    }
    assert message(completion)["usage"] == {
        "input_tokens": 52,
        "cache_creation_input_tokens": 1920,
        "cache_read_input_tokens": 128,
        "output_tokens": 300,
        "output_tokens_details": {"thinking_tokens": 256},
    }


def test_a_completion_becomes_a_message_with_anthropic_usage() -> None:
    completion = {
        "id": "chatcmpl-1",
        "model": "gpt-4o",
        "choices": [
            {
                "index": 0,
                "message": {
                    "role": "assistant",
                    "content": "Reading.",
                    "tool_calls": [
                        {
                            "id": "call_1",
                            "type": "function",
                            "function": {"name": "f", "arguments": '{"a":1}'},
                        }
                    ],
                },
                "finish_reason": "tool_calls",
            }
        ],
        "usage": {
            "prompt_tokens": 300,
            "completion_tokens": 20,
            "prompt_tokens_details": {"cached_tokens": 256},
        },
    }
    assert message(completion) == {
        "id": "chatcmpl-1",
        "type": "message",
        "role": "assistant",
        "model": "gpt-4o",
        "content": [
            {"type": "text", "text": "Reading."},
            {"type": "tool_use", "id": "call_1", "name": "f", "input": {"a": 1}},
        ],
        "stop_reason": "tool_use",
        "stop_sequence": None,
        "usage": {
            "input_tokens": 44,
            "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": 256,
            "output_tokens": 20,
        },
    }
    error = b'{"error":{"message":"slow down","type":"rate_limit","code":"rate_limit_exceeded"}}'
    assert json.loads(translate_answer(429, error)) == {
        "type": "error",
        "error": {"type": "rate_limit_error", "message": "slow down"},
    }


def chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
    return {
        "id": "c1",
        "model": "gpt-4o",
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    }


STREAM = (
    b"".join(
        b"data: " + json.dumps(c).encode() + b"\n\n"
        for c in [
            chunk({"role": "assistant", "content": ""}),
            chunk({"content": "Hel"}),
            chunk({"content": "lo"}),
            chunk(
                {
                    "tool_calls": [
                        {
                            "index": 0,
                            "id": "call_1",
                            "type": "function",
                            "function": {"name": "f", "arguments": ""},
                        }
                    ]
                }
            ),
            chunk({"tool_calls": [{"index": 0, "function": {"arguments": '{"a":'}}]}),
            chunk({"tool_calls": [{"index": 0, "function": {"arguments": "1}"}}]}),
            chunk({}, "tool_calls"),
            {
                "id": "c1",
                "model": "gpt-4o",
                "choices": [],
                "usage": {"prompt_tokens": 30, "completion_tokens": 9},
            },
        ]
    )
    + b"data: [DONE]\n\n"
)


@pytest.mark.parametrize("piece", [1, 13, len(STREAM)])
def test_a_stream_is_translated_whatever_the_chunking(piece: int) -> None:
    translator = MessagesStreamFromChat()
    out = b"".join(translator.feed(STREAM[i : i + piece]) for i in range(0, len(STREAM), piece))
    out += translator.finish()
    events = [json.loads(line[6:]) for line in out.split(b"\n") if line.startswith(b"data: ")]
    assert [e["type"] for e in events] == [
        "message_start",
        "content_block_start",
        "content_block_delta",
        "content_block_delta",
        "content_block_stop",
        "content_block_start",
        "content_block_delta",
        "content_block_delta",
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]
    assert events[5]["content_block"] == {
        "type": "tool_use",
        "id": "call_1",
        "name": "f",
        "input": {},
    }
    assert "".join(e["delta"].get("partial_json", "") for e in events[6:8]) == '{"a":1}'
    assert events[9]["delta"]["stop_reason"] == "tool_use"
    assert events[9]["usage"]["input_tokens"] == 30 and events[9]["usage"]["output_tokens"] == 9
    assert translator.usage is not None and translator.usage.input_tokens == 30
    assert translator.finish_reason == "tool_calls"
