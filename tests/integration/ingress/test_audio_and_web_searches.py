"""Usage with prices of its own, through the gateway with the official SDKs: audio in and
out on Chat Completions (whole and streamed), and Anthropic's server-side web searches on
Messages (whole and streamed). The event carries each as its own field, as the client's
usage reports it."""

from __future__ import annotations

from typing import Any

import pytest

from tests.support.gateway import Gateway

AUDIO_MESSAGES: Any = [
    {
        "role": "user",
        "content": [
            {"type": "text", "text": "What does this recording say?"},
            {"type": "input_audio", "input_audio": {"data": "UklGRg==", "format": "wav"}},
        ],
    }
]
WEB_SEARCH: Any = [{"type": "web_search_20250305", "name": "web_search", "max_uses": 5}]


@pytest.mark.parametrize("stream", [False, True])
def test_chat_completions_audio_is_carried_as_audio(gw: Gateway, stream: bool) -> None:
    body: Any = {
        "model": "sim/gpt-audio",
        "messages": AUDIO_MESSAGES,
        "modalities": ["text", "audio"],
        "audio": {"voice": "alloy", "format": "wav"},
    }
    if stream:
        chunks = gw.openai().chat.completions.create(
            **body, stream=True, stream_options={"include_usage": True}
        )
        usage = [chunk.usage for chunk in chunks if chunk.usage is not None][-1]
    else:
        usage = gw.openai().chat.completions.create(**body).usage
    assert usage is not None
    assert usage.prompt_tokens_details is not None and usage.completion_tokens_details is not None
    [event] = gw.wait_for_events(1)
    assert event.input_tokens == usage.prompt_tokens
    assert event.input_audio_tokens == usage.prompt_tokens_details.audio_tokens > 0
    assert event.output_tokens == usage.completion_tokens
    assert event.output_audio_tokens == usage.completion_tokens_details.audio_tokens > 0
    assert event.web_search_requests == 0


def test_text_only_chat_has_no_audio(gw: Gateway) -> None:
    gw.openai().chat.completions.create(
        model="sim/gpt-audio", messages=[{"role": "user", "content": "hello"}]
    )
    [event] = gw.wait_for_events(1)
    assert (event.input_audio_tokens, event.output_audio_tokens) == (0, 0)


@pytest.mark.parametrize("stream", [False, True])
def test_messages_web_searches_are_carried(gw: Gateway, stream: bool) -> None:
    client = gw.anthropic()
    body: Any = {
        "model": "anthropic/claude-sonnet-4-6",
        "max_tokens": 256,
        "tools": WEB_SEARCH,
        "messages": [{"role": "user", "content": "What changed in the news today?"}],
    }
    if stream:
        with client.messages.stream(**body) as events:
            message = events.get_final_message()
    else:
        message = client.messages.create(**body)
    server = message.usage.server_tool_use
    assert server is not None
    [event] = gw.wait_for_events(1)
    assert event.web_search_requests == server.web_search_requests > 0
    assert event.output_tokens == message.usage.output_tokens
    assert event.input_audio_tokens == 0


def test_a_web_search_tool_caps_the_searches(gw: Gateway) -> None:
    tool: Any = [{**WEB_SEARCH[0], "max_uses": 1}]
    message = gw.anthropic().messages.create(
        model="anthropic/claude-sonnet-4-6",
        max_tokens=64,
        tools=tool,
        messages=[{"role": "user", "content": "Search once."}],
    )
    assert message.usage.server_tool_use is not None
    assert message.usage.server_tool_use.web_search_requests == 1
    [event] = gw.wait_for_events(1)
    assert event.web_search_requests == 1
