"""An Anthropic SDK client calling a model of an OpenAI-compatible provider through the
gateway: whole, streamed, with tools, and the provider's errors."""

from __future__ import annotations

from typing import Any

import anthropic
import pytest

from tests.support.gateway import SYSTEM_KEY, Gateway

MODEL = "sim/gpt-4o"
TOOLS: Any = [
    {
        "name": "read_meter",
        "description": "Read a meter",
        "input_schema": {"type": "object", "properties": {"meter_id": {"type": "string"}}},
    }
]


def test_the_anthropic_sdk_reaches_an_openai_model(gw: Gateway) -> None:
    sdk = gw.anthropic()
    prompt: Any = [{"role": "user", "content": "Describe a water meter."}]
    whole = sdk.messages.create(model=MODEL, max_tokens=200, system="Be terse.", messages=prompt)
    with sdk.messages.stream(
        model=MODEL, max_tokens=200, system="Be terse.", messages=prompt
    ) as stream:
        text = "".join(stream.text_stream)
        streamed = stream.get_final_message()
    assert whole.content[0].type == "text" and text == whole.content[0].text
    assert whole.stop_reason == streamed.stop_reason == "end_turn"
    first, second = gw.wait_for_events(2)
    for event, reply in ((first, whole), (second, streamed)):
        assert (event.provider, event.model, event.api_surface) == ("sim", "gpt-4o", "messages")
        usage = reply.usage
        read = usage.cache_read_input_tokens or 0
        assert event.input_tokens == usage.input_tokens + read
        assert (event.output_tokens, event.cached_input_tokens) == (usage.output_tokens, read)
    received = gw.upstream.received[0]
    assert received.path == "/v1/chat/completions"
    assert received.headers["authorization"] == f"Bearer {SYSTEM_KEY}"
    assert received.body["messages"][0] == {"role": "system", "content": "Be terse."}


def test_tool_use_through_an_openai_model(gw: Gateway) -> None:
    reply = gw.anthropic().messages.create(
        model=MODEL,
        max_tokens=200,
        tools=TOOLS,
        messages=[{"role": "user", "content": "Please call a tool for meter 7."}],
    )
    [block] = [b for b in reply.content if b.type == "tool_use"]
    assert block.name == "read_meter" and reply.stop_reason == "tool_use"
    [event] = gw.wait_for_events(1)
    assert event.finish_reason == "tool_calls"


def test_provider_errors_and_count_tokens_in_anthropic_format(gw: Gateway) -> None:
    gw.upstream.inject["x-simulator-status"] = "429"
    with pytest.raises(anthropic.RateLimitError):
        gw.anthropic().messages.create(
            model=MODEL, max_tokens=20, messages=[{"role": "user", "content": "hi"}]
        )
    [event] = gw.wait_for_events(1)
    assert (event.status, event.http_status) == ("error", 429)
    with pytest.raises(anthropic.BadRequestError) as caught:
        gw.anthropic().messages.count_tokens(
            model=MODEL, messages=[{"role": "user", "content": "hi"}]
        )
    assert "token counting" in caught.value.message
