"""Chat Completions to an Anthropic model, end to end through the gateway: the official
``openai`` SDK as the client, the simulator's Anthropic Messages endpoint as the provider.
What the client receives and what the event records agree, streamed and not."""

from __future__ import annotations

import json
from typing import Any

import openai
import pytest

from meterline.common.events import UsageEvent
from tests.support.gateway import SYSTEM_KEY, Gateway

MODEL = "anthropic/claude-sonnet-4-6"
MESSAGES: Any = [
    {"role": "system", "content": "You are terse."},
    {"role": "user", "content": "Describe a gas meter."},
]
TOOLS: Any = [
    {
        "type": "function",
        "function": {
            "name": "read_meter",
            "description": "Read a meter",
            "parameters": {"type": "object", "properties": {"meter_id": {"type": "string"}}},
        },
    }
]


def assert_usage_matches(event: UsageEvent, usage: Any) -> None:
    assert usage is not None
    details = usage.prompt_tokens_details
    assert (event.input_tokens, event.output_tokens) == (
        usage.prompt_tokens,
        usage.completion_tokens,
    )
    assert event.cached_input_tokens == details.cached_tokens
    assert event.cache_creation_input_tokens == details.cache_write_tokens
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens


def test_a_whole_answer(gw: Gateway) -> None:
    completion = gw.openai().chat.completions.create(
        model=MODEL, messages=MESSAGES, extra_body={"providerOptions": {"gateway": {"user": "u"}}}
    )
    choice = completion.choices[0]
    assert choice.message.content and choice.finish_reason == "stop"
    assert choice.message.tool_calls is None
    [event] = gw.wait_for_events(1)
    assert (event.provider, event.model, event.api_surface) == (
        "anthropic",
        "claude-sonnet-4-6",
        "chat_completions",
    )
    assert (event.status, event.finish_reason, event.user_id) == ("success", "end_turn", "u")
    assert_usage_matches(event, completion.usage)
    [received] = gw.upstream.received
    assert received.path == "/v1/messages"
    assert received.headers["x-api-key"] == SYSTEM_KEY
    assert received.headers["anthropic-version"]
    assert received.body["system"] == [{"type": "text", "text": "You are terse."}]
    assert received.body["messages"] == [
        {"role": "user", "content": [{"type": "text", "text": "Describe a gas meter."}]}
    ]
    assert "providerOptions" not in received.body


@pytest.mark.parametrize("include_usage", [True, False])
def test_a_stream_says_what_the_whole_answer_says(gw: Gateway, include_usage: bool) -> None:
    sdk = gw.openai()
    whole = sdk.chat.completions.create(model=MODEL, messages=MESSAGES)
    options: Any = {"include_usage": True} if include_usage else openai.NOT_GIVEN
    chunks = list(
        sdk.chat.completions.create(
            model=MODEL, messages=MESSAGES, stream=True, stream_options=options
        )
    )
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == whole.choices[0].message.content
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices]
    assert finishes[-1] == "stop"
    _, event = gw.wait_for_events(2)
    assert event.streamed and event.status == "success"
    usage_chunks = [c for c in chunks if c.usage is not None]
    if include_usage:
        [last] = usage_chunks
        assert last is chunks[-1] and last.choices == []
        assert_usage_matches(event, last.usage)
    else:
        assert usage_chunks == []
    assert_usage_matches(event, whole.usage)  # the same tokens, streamed or not


@pytest.mark.parametrize("stream", [False, True])
def test_tool_calls_and_their_results(gw: Gateway, stream: bool) -> None:
    sdk = gw.openai()
    ask: Any = [{"role": "user", "content": "Please call a tool for meter 7."}]
    if stream:
        chunks = list(
            sdk.chat.completions.create(model=MODEL, messages=ask, tools=TOOLS, stream=True)
        )
        deltas = [c.choices[0].delta for c in chunks if c.choices]
        calls = [call for d in deltas for call in d.tool_calls or []]
        call_id, name = calls[0].id, calls[0].function and calls[0].function.name
        arguments = "".join((c.function and c.function.arguments) or "" for c in calls)
        finish = [c.choices[0].finish_reason for c in chunks if c.choices][-1]
    else:
        completion = sdk.chat.completions.create(model=MODEL, messages=ask, tools=TOOLS)
        [call] = completion.choices[0].message.tool_calls or []
        assert call.type == "function"
        call_id, name, arguments = call.id, call.function.name, call.function.arguments
        finish = completion.choices[0].finish_reason
    assert (name, finish) == ("read_meter", "tool_calls")
    assert json.loads(arguments) == {"meter_id": "simulated"}
    follow_up: Any = [
        *ask,
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": call_id,
                    "type": "function",
                    "function": {"name": name, "arguments": arguments},
                }
            ],
        },
        {"role": "tool", "tool_call_id": call_id, "content": "42 cubic meters"},
    ]
    answer = sdk.chat.completions.create(model=MODEL, messages=follow_up, tools=TOOLS)
    assert answer.choices[0].finish_reason == "stop"
    sent = gw.upstream.received[-1].body["messages"]
    assert sent[1]["content"][0]["type"] == "tool_use"
    assert sent[2]["content"][0] == {
        "type": "tool_result",
        "tool_use_id": call_id,
        "content": "42 cubic meters",
    }
    first, second = gw.wait_for_events(2)
    assert (first.finish_reason, second.finish_reason) == ("tool_use", "end_turn")


def test_the_token_cap_is_a_length_finish(gw: Gateway) -> None:
    completion = gw.openai().chat.completions.create(
        model=MODEL, messages=MESSAGES, max_completion_tokens=3
    )
    assert completion.choices[0].finish_reason == "length"
    assert gw.upstream.received[0].body["max_tokens"] == 3
    [event] = gw.wait_for_events(1)
    assert event.output_tokens == 3 and event.finish_reason == "max_tokens"


def test_cache_control_reads_or_writes_the_cache(gw: Gateway) -> None:
    long_text = "The meter reading history of building " + "A12 " * 600
    for n in range(4):
        messages: Any = [
            {
                "role": "user",
                "content": [
                    {
                        "type": "text",
                        "text": f"{long_text} {n}",
                        "cache_control": {"type": "ephemeral"},
                    },
                    {"type": "text", "text": "Summarise."},
                ],
            }
        ]
        completion = gw.openai().chat.completions.create(model=MODEL, messages=messages)
        [event] = gw.wait_for_events(n + 1)[n:]
        assert_usage_matches(event, completion.usage)
    events = gw.publisher.events
    # The simulator reads or writes the cached half by the request's digest: over a few
    # requests both happen, and each lands in its own column.
    assert any(e.cached_input_tokens > 0 for e in events)
    assert all(e.cached_input_tokens + e.cache_creation_input_tokens > 0 for e in events)


@pytest.mark.parametrize("stream", [False, True])
def test_reasoning_tokens_are_counted_as_reasoning(gw: Gateway, stream: bool) -> None:
    sdk = gw.openai()
    if stream:
        chunks = list(
            sdk.chat.completions.create(
                model=MODEL,
                messages=MESSAGES,
                reasoning_effort="low",
                stream=True,
                stream_options={"include_usage": True},
            )
        )
        usage = chunks[-1].usage
    else:
        usage = sdk.chat.completions.create(
            model=MODEL, messages=MESSAGES, reasoning_effort="low"
        ).usage
    assert gw.upstream.received[0].body["thinking"] == {"type": "enabled", "budget_tokens": 1024}
    [event] = gw.wait_for_events(1)
    assert usage is not None and usage.completion_tokens_details is not None
    assert event.reasoning_tokens > 0
    assert event.reasoning_tokens == usage.completion_tokens_details.reasoning_tokens
    assert_usage_matches(event, usage)


def test_a_provider_error_is_an_openai_error(gw: Gateway) -> None:
    gw.upstream.inject["x-simulator-status"] = "429"
    with pytest.raises(openai.RateLimitError) as caught:
        gw.openai().chat.completions.create(model=MODEL, messages=MESSAGES)
    assert caught.value.code == "rate_limit_error"
    [event] = gw.wait_for_events(1)
    assert (event.status, event.http_status, event.error_type) == ("error", 429, "rate_limit_error")


def test_what_messages_cannot_say_is_a_400_before_anything_is_sent(gw: Gateway) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        gw.openai().chat.completions.create(model=MODEL, messages=MESSAGES, n=2)
    assert caught.value.param == "n"
    assert gw.upstream.received == [] and gw.publisher.events == []
