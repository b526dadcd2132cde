"""OpenAI models that report cache writes (``cache_write_tokens``), through the gateway with
the official SDKs: the event records the writes as writes, on Chat Completions (whole and
streamed), Responses, and a Messages client's call translated to the OpenAI wire."""

from __future__ import annotations

from typing import Any

import pytest

from tests.support.gateway import Gateway

MODEL = "sim/gpt-5.6-luna"


def prompt(n: int) -> str:
    # Long enough to be cached; which half of the prompts the simulator reports as written
    # instead of read depends on the request (deterministically), so a test walks a few.
    return f"Prompt {n}: " + "Meters count every token that passes. " * 250


def first_writing(gw: Gateway, call: Any) -> tuple[Any, int]:
    """The first of a few prompts whose answer reports cache writes, and which one it was."""
    for n in range(8):
        gw.publisher.events.clear()
        answer = call(prompt(n))
        if answer is not None:
            return answer, n
    raise AssertionError("no prompt reported a cache write")


def test_chat_completions_records_the_cache_writes(gw: Gateway) -> None:
    def call(text: str) -> Any:
        completion = gw.openai().chat.completions.create(
            model=MODEL, messages=[{"role": "user", "content": text}], prompt_cache_key="k"
        )
        details = completion.usage.prompt_tokens_details if completion.usage else None
        return completion if details is not None and details.cache_write_tokens else None

    completion, n = first_writing(gw, call)
    usage = completion.usage
    assert usage is not None and usage.prompt_tokens_details is not None
    [event] = gw.wait_for_events(1)
    assert event.input_tokens == usage.prompt_tokens
    assert event.cache_creation_input_tokens == usage.prompt_tokens_details.cache_write_tokens > 0
    assert event.cached_input_tokens == usage.prompt_tokens_details.cached_tokens
    assert event.cache_creation_1h_input_tokens == 0

    # The same request streamed reports the same usage, and so does its event.
    gw.publisher.events.clear()
    stream = gw.openai().chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": prompt(n)}],
        prompt_cache_key="k",
        stream=True,
        stream_options={"include_usage": True},
    )
    streamed = [chunk.usage for chunk in stream if chunk.usage is not None][-1]
    assert streamed.prompt_tokens_details is not None
    assert streamed.prompt_tokens_details.cache_write_tokens == (
        usage.prompt_tokens_details.cache_write_tokens
    )
    [streamed_event] = gw.wait_for_events(1)
    assert streamed_event.cache_creation_input_tokens == event.cache_creation_input_tokens


def test_responses_records_the_cache_writes(gw: Gateway) -> None:
    def call(text: str) -> Any:
        response = gw.openai().responses.create(model=MODEL, input=text, prompt_cache_key="k")
        usage = response.usage
        written = usage.input_tokens_details.cache_write_tokens if usage else None
        return response if written else None

    response, _ = first_writing(gw, call)
    assert response.usage is not None
    [event] = gw.wait_for_events(1)
    written = response.usage.input_tokens_details.cache_write_tokens
    assert event.cache_creation_input_tokens == written


@pytest.mark.parametrize("stream", [False, True])
def test_a_messages_client_sees_the_writes_its_event_records(gw: Gateway, stream: bool) -> None:
    def call(text: str) -> Any:
        client = gw.anthropic()
        body: Any = {
            "model": MODEL,
            "max_tokens": 64,
            "messages": [{"role": "user", "content": text}],
            "extra_body": {"prompt_cache_key": "k"},
        }
        if stream:
            with client.messages.stream(**body) as events:
                message = events.get_final_message()
        else:
            message = client.messages.create(**body)
        return message if message.usage.cache_creation_input_tokens else None

    message, _ = first_writing(gw, call)
    [event] = gw.wait_for_events(1)
    assert event.cache_creation_input_tokens == message.usage.cache_creation_input_tokens
    assert event.cached_input_tokens == (message.usage.cache_read_input_tokens or 0)
    assert event.input_tokens == (
        message.usage.input_tokens
        + (message.usage.cache_read_input_tokens or 0)
        + (message.usage.cache_creation_input_tokens or 0)
    )
