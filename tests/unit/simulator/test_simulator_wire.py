"""The simulator, driven by the official ``openai`` and ``anthropic`` SDKs over loopback HTTP:
if the SDKs parse it, the wire format is right."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import anthropic
import httpx
import openai
import pytest
import uvicorn

from meterline.simulator.app import create_app
from meterline.simulator.usage import Prompt, plan, split_text

WEATHER_TOOL_OPENAI: Any = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}, "days": {"type": "integer"}},
            "required": ["city"],
        },
    },
}
WEATHER_TOOL_ANTHROPIC: Any = {
    "name": "get_weather",
    "description": "Weather for a city",
    "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}},
}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def base_url() -> Iterator[str]:
    port = _free_port()
    server = uvicorn.Server(
        uvicorn.Config(create_app(), host="127.0.0.1", port=port, log_level="warning")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline, "simulator did not start"
        time.sleep(0.01)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(timeout=10)


@pytest.fixture
def oai(base_url: str) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=f"{base_url}/v1", api_key="sk-test", max_retries=0) as client:
        yield client


@pytest.fixture
def claude(base_url: str) -> Iterator[anthropic.Anthropic]:
    with anthropic.Anthropic(base_url=base_url, api_key="sk-ant-test", max_retries=0) as client:
        yield client


# --- OpenAI Chat Completions ---------------------------------------------------------------


def test_chat_non_stream_usage(oai: openai.OpenAI) -> None:
    completion = oai.chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "Hello there"}]
    )
    assert completion.object == "chat.completion"
    assert completion.model == "gpt-4o-mini"
    choice = completion.choices[0]
    assert choice.finish_reason == "stop"
    assert choice.message.content
    usage = completion.usage
    assert usage is not None
    assert usage.prompt_tokens == 3 + 8  # ceil(11 / 4) + one message
    assert 5 <= usage.completion_tokens <= 200
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens
    assert len(choice.message.content.split()) == usage.completion_tokens
    assert usage.prompt_tokens_details is not None
    assert usage.prompt_tokens_details.cached_tokens == 0
    assert usage.completion_tokens_details is not None
    assert usage.completion_tokens_details.reasoning_tokens == 0


def test_chat_stream_with_usage_matches_non_stream(oai: openai.OpenAI) -> None:
    messages: Any = [{"role": "user", "content": "Tell me a story"}]
    plain = oai.chat.completions.create(model="gpt-4o", messages=messages)
    stream = oai.chat.completions.create(
        model="gpt-4o", messages=messages, stream=True, stream_options={"include_usage": True}
    )
    chunks = list(stream)
    assert all(chunk.object == "chat.completion.chunk" for chunk in chunks)
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == plain.choices[0].message.content
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices]
    assert finishes[-1] == "stop"
    assert chunks[-1].choices == []
    assert chunks[-1].usage == plain.usage
    assert all(c.usage is None for c in chunks[:-1])


def test_chat_stream_without_include_usage_has_no_usage(oai: openai.OpenAI) -> None:
    chunks = list(
        oai.chat.completions.create(
            model="gpt-4o", messages=[{"role": "user", "content": "hi"}], stream=True
        )
    )
    assert all(c.usage is None and c.choices for c in chunks)
    assert chunks[-1].choices[0].finish_reason == "stop"


def test_chat_many_chunks(oai: openai.OpenAI) -> None:
    stream = oai.chat.completions.create(
        model="gpt-4o",
        messages=[{"role": "user", "content": "long"}],
        stream=True,
        stream_options={"include_usage": True},
        extra_headers={"x-simulator-chunks": "3000"},
    )
    chunks = list(stream)
    assert len(chunks) == 1 + 3000 + 1 + 1
    assert chunks[-1].usage is not None


def test_chat_chunk_delay_paces_the_stream(oai: openai.OpenAI) -> None:
    started = time.monotonic()
    stream = oai.chat.completions.create(
        model="gpt-4o",
        messages=[{"role": "user", "content": "slowly"}],
        stream=True,
        extra_headers={"x-simulator-chunks": "4", "x-simulator-chunk-delay-ms": "50"},
    )
    arrivals = [time.monotonic() - started for _chunk in stream]
    assert len(arrivals) == 1 + 4 + 1
    assert arrivals[-1] - arrivals[0] >= 0.2  # five gaps of 50 ms between six events


def test_chat_max_tokens_gives_length(oai: openai.OpenAI) -> None:
    completion = oai.chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}], max_tokens=3
    )
    assert completion.choices[0].finish_reason == "length"
    assert completion.usage is not None
    assert completion.usage.completion_tokens == 3


def test_chat_tool_call(oai: openai.OpenAI) -> None:
    messages: Any = [{"role": "user", "content": "Please call a tool for Paris"}]
    completion = oai.chat.completions.create(
        model="gpt-4o", messages=messages, tools=[WEATHER_TOOL_OPENAI]
    )
    choice = completion.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.tool_calls
    call = choice.message.tool_calls[0]
    assert call.type == "function"
    assert call.function.name == "get_weather"
    assert json.loads(call.function.arguments) == {"city": "simulated", "days": 1}

    with oai.chat.completions.stream(
        model="gpt-4o", messages=messages, tools=[WEATHER_TOOL_OPENAI]
    ) as stream:
        final = stream.get_final_completion()
    streamed = final.choices[0]
    assert streamed.finish_reason == "tool_calls"
    assert streamed.message.tool_calls
    assert streamed.message.tool_calls[0].function.arguments == call.function.arguments


def test_chat_images_and_empty_content(oai: openai.OpenAI) -> None:
    parts: Any = [
        {"type": "text", "text": "What is this?"},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}},
    ]
    completion = oai.chat.completions.create(
        model="gpt-4o", messages=[{"role": "user", "content": parts}], n=3
    )
    assert len(completion.choices) == 1
    assert completion.usage is not None
    assert completion.usage.prompt_tokens == 4 + 8 + 85
    empty = oai.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": ""}])
    assert empty.usage is not None
    assert empty.usage.prompt_tokens == 8


def test_chat_cache_and_reasoning_when_forced(oai: openai.OpenAI) -> None:
    completion = oai.chat.completions.create(
        model="o3-mini",
        messages=[{"role": "user", "content": "x" * 400}],
        prompt_cache_key="tenant-1",
    )
    usage = completion.usage
    assert usage is not None
    assert usage.prompt_tokens == 108
    assert usage.prompt_tokens_details is not None
    assert usage.prompt_tokens_details.cached_tokens == 54
    assert usage.completion_tokens_details is not None
    reasoning = usage.completion_tokens_details.reasoning_tokens
    assert reasoning is not None and 0 < reasoning < usage.completion_tokens
    content = completion.choices[0].message.content
    assert content is not None
    assert len(content.split()) == usage.completion_tokens - reasoning


def test_chat_large_prompt_reads_cache_in_blocks(oai: openai.OpenAI) -> None:
    completion = oai.chat.completions.create(
        model="gpt-4o", messages=[{"role": "user", "content": "y" * 8000}]
    )
    assert completion.usage is not None
    assert completion.usage.prompt_tokens == 2008
    assert completion.usage.prompt_tokens_details is not None
    assert completion.usage.prompt_tokens_details.cached_tokens == 896  # 7 x 128 <= 1004


def test_chat_is_deterministic(oai: openai.OpenAI) -> None:
    def ask() -> Any:
        return oai.chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": "same question"}]
        )

    first, second = ask(), ask()
    assert first.usage == second.usage
    assert first.choices[0].message.content == second.choices[0].message.content
    assert first.id != second.id


@pytest.mark.parametrize(
    ("status", "error"),
    [
        ("429", openai.RateLimitError),
        ("500", openai.InternalServerError),
        ("503", openai.InternalServerError),
        ("400", openai.BadRequestError),
    ],
)
def test_chat_fault_headers(oai: openai.OpenAI, status: str, error: type[Exception]) -> None:
    with pytest.raises(error) as raised:
        oai.chat.completions.create(
            model="gpt-4o",
            messages=[{"role": "user", "content": "hi"}],
            extra_headers={"x-simulator-status": status},
        )
    assert isinstance(raised.value, openai.APIStatusError)
    body = raised.value.response.json()
    assert set(body["error"]) == {"message", "type", "param", "code"}
    assert raised.value.response.headers["x-simulator-request-id"]


def test_missing_credentials_are_401(base_url: str) -> None:
    chat = httpx.post(f"{base_url}/v1/chat/completions", json={"model": "m", "messages": []})
    assert chat.status_code == 401
    assert chat.json()["error"]["code"] == "invalid_api_key"
    anth = httpx.post(
        f"{base_url}/v1/messages",
        json={"model": "m", "max_tokens": 5, "messages": []},
        headers={"anthropic-version": "2023-06-01"},
    )
    assert anth.status_code == 401
    assert anth.json()["error"]["type"] == "authentication_error"


def test_delay_header(oai: openai.OpenAI) -> None:
    started = time.monotonic()
    oai.chat.completions.create(
        model="gpt-4o",
        messages=[{"role": "user", "content": "hi"}],
        extra_headers={"x-simulator-delay-ms": "200"},
    )
    assert time.monotonic() - started >= 0.2


# --- OpenAI Responses --------------------------------------------------------------------


def test_responses_non_stream(oai: openai.OpenAI) -> None:
    response = oai.responses.create(
        model="gpt-4.1-mini", input="Write a haiku", instructions="Be brief"
    )
    assert response.object == "response"
    assert response.status == "completed"
    assert response.output_text
    usage = response.usage
    assert usage is not None
    assert usage.input_tokens == 4 + 2 + 16  # ceil(13/4) + ceil(8/4) + two messages
    assert usage.input_tokens_details.cached_tokens == 0
    assert usage.output_tokens_details.reasoning_tokens == 0
    assert usage.total_tokens == usage.input_tokens + usage.output_tokens
    assert len(response.output_text.split()) == usage.output_tokens


def test_responses_stream(oai: openai.OpenAI) -> None:
    items: Any = [
        {"role": "user", "content": [{"type": "input_text", "text": "Hello"}]},
        {"role": "assistant", "content": "Hi"},
        {"role": "user", "content": "And now?"},
    ]
    plain = oai.responses.create(model="gpt-4.1-mini", input=items)
    events = list(oai.responses.create(model="gpt-4.1-mini", input=items, stream=True))
    kinds = [event.type for event in events]
    assert kinds[:4] == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
    ]
    assert kinds[-4:] == [
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.completed",
    ]
    assert [event.sequence_number for event in events] == list(range(len(events)))
    deltas = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    assert deltas == plain.output_text
    completed = events[-1]
    assert completed.type == "response.completed"
    assert completed.response.usage == plain.usage

    with oai.responses.stream(model="gpt-4.1-mini", input=items) as stream:
        final = stream.get_final_response()
    assert final.output_text == plain.output_text


def test_responses_max_output_tokens_is_incomplete(oai: openai.OpenAI) -> None:
    response = oai.responses.create(model="gpt-4o", input="hi", max_output_tokens=2)
    assert response.status == "incomplete"
    assert response.incomplete_details is not None
    assert response.incomplete_details.reason == "max_output_tokens"
    assert response.usage is not None
    assert response.usage.output_tokens == 2
    events = list(
        oai.responses.create(model="gpt-4o", input="hi", max_output_tokens=2, stream=True)
    )
    assert events[-1].type == "response.incomplete"


def test_responses_reasoning_and_cache(oai: openai.OpenAI) -> None:
    response = oai.responses.create(
        model="gpt-4o", input="z" * 100, reasoning={"effort": "low"}, prompt_cache_key="k"
    )
    usage = response.usage
    assert usage is not None
    assert usage.input_tokens_details.cached_tokens == usage.input_tokens // 2 > 0
    assert 0 < usage.output_tokens_details.reasoning_tokens < usage.output_tokens


def test_responses_fault(oai: openai.OpenAI) -> None:
    with pytest.raises(openai.RateLimitError):
        oai.responses.create(
            model="gpt-4o", input="hi", extra_headers={"x-simulator-status": "429"}
        )


# --- Anthropic Messages ------------------------------------------------------------------


def test_messages_non_stream(claude: anthropic.Anthropic) -> None:
    message = claude.messages.create(
        model="claude-sonnet-4-6",
        max_tokens=1024,
        system="You are terse.",
        messages=[{"role": "user", "content": "Hello, Claude"}],
    )
    assert message.type == "message"
    assert message.role == "assistant"
    assert message.model == "claude-sonnet-4-6"
    assert message.stop_reason == "end_turn"
    assert message.stop_sequence is None
    block = message.content[0]
    assert block.type == "text"
    usage = message.usage
    assert usage.input_tokens == 7 + 16  # ceil((13 + 14) / 4) + two messages
    assert usage.cache_read_input_tokens == 0
    assert usage.cache_creation_input_tokens == 0
    assert usage.cache_creation is not None
    assert len(block.text.split()) == usage.output_tokens


def test_messages_stream_matches_non_stream(claude: anthropic.Anthropic) -> None:
    request: Any = {
        "model": "claude-haiku-4-5",
        "max_tokens": 500,
        "messages": [{"role": "user", "content": "Stream please"}],
    }
    plain = claude.messages.create(**request)
    with claude.messages.stream(**request) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    first_block = plain.content[0]
    assert first_block.type == "text"
    assert text == first_block.text
    assert final.usage.input_tokens == plain.usage.input_tokens
    assert final.usage.output_tokens == plain.usage.output_tokens
    assert final.usage.cache_read_input_tokens == 0
    assert final.usage.cache_creation_input_tokens == 0
    assert final.stop_reason == "end_turn"


def test_messages_stream_event_order(claude: anthropic.Anthropic) -> None:
    events = list(
        claude.messages.create(
            model="claude-haiku-4-5",
            max_tokens=100,
            messages=[{"role": "user", "content": "hi"}],
            stream=True,
        )
    )
    kinds = [event.type for event in events]
    assert kinds[:3] == ["message_start", "content_block_start", "content_block_delta"]
    assert kinds[-3:] == ["content_block_stop", "message_delta", "message_stop"]
    assert kinds.count("content_block_delta") == 8
    start = events[0]
    assert start.type == "message_start"
    assert start.message.usage.output_tokens == 1


def _cached_request(ttl: str | None, salt: int) -> Any:
    control: dict[str, str] = {"type": "ephemeral"}
    if ttl:
        control["ttl"] = ttl
    return {
        "model": "claude-sonnet-4-6",
        "max_tokens": 64,
        "system": [
            {"type": "text", "text": f"Reference text {salt} " * 20, "cache_control": control}
        ],
        "messages": [{"role": "user", "content": "Summarise"}],
    }


def test_messages_cache_read_and_write(claude: anthropic.Anthropic) -> None:
    """With cache_control the share is read or written by digest parity; find one of each."""
    seen: dict[str, Any] = {}
    for salt in range(40):
        request = _cached_request("1h", salt)
        message = claude.messages.create(**request)
        usage = message.usage
        total = (
            usage.input_tokens
            + (usage.cache_read_input_tokens or 0)
            + (usage.cache_creation_input_tokens or 0)
        )
        assert (usage.cache_read_input_tokens or 0) + (
            usage.cache_creation_input_tokens or 0
        ) == total // 2
        if usage.cache_creation_input_tokens:
            assert usage.cache_creation is not None
            assert (
                usage.cache_creation.ephemeral_1h_input_tokens == usage.cache_creation_input_tokens
            )
            assert usage.cache_creation.ephemeral_5m_input_tokens == 0
            seen.setdefault("write", request)
        else:
            seen.setdefault("read", request)
        if len(seen) == 2:
            break
    assert set(seen) == {"read", "write"}

    # Deterministic per request: the same request gives the same split, streamed too.
    with claude.messages.stream(**seen["write"]) as stream:
        final = stream.get_final_message()
    assert final.usage.cache_creation_input_tokens
    assert final.usage.cache_read_input_tokens == 0
    assert final.usage.cache_creation is not None
    assert (
        final.usage.cache_creation.ephemeral_1h_input_tokens
        == final.usage.cache_creation_input_tokens
    )


def test_messages_thinking_keeps_usage_shape(claude: anthropic.Anthropic) -> None:
    message = claude.messages.create(
        model="claude-sonnet-4-6",
        max_tokens=2000,
        thinking={"type": "enabled", "budget_tokens": 1024},
        messages=[{"role": "user", "content": "Think about it"}],
    )
    block = message.content[0]
    assert block.type == "text"
    assert len(block.text.split()) < message.usage.output_tokens


def test_messages_tool_use(claude: anthropic.Anthropic) -> None:
    request: Any = {
        "model": "claude-sonnet-4-6",
        "max_tokens": 300,
        "tools": [WEATHER_TOOL_ANTHROPIC],
        "messages": [{"role": "user", "content": "Please call a tool for Rome"}],
    }
    message = claude.messages.create(**request)
    assert message.stop_reason == "tool_use"
    block = message.content[0]
    assert block.type == "tool_use"
    assert block.name == "get_weather"
    assert block.input == {"city": "simulated"}
    with claude.messages.stream(**request) as stream:
        final = stream.get_final_message()
    streamed = final.content[0]
    assert streamed.type == "tool_use"
    assert streamed.input == {"city": "simulated"}
    assert final.stop_reason == "tool_use"


def test_messages_max_tokens_and_stop_sequence(claude: anthropic.Anthropic) -> None:
    messages: Any = [{"role": "user", "content": "Go on"}]
    capped = claude.messages.create(model="claude-haiku-4-5", max_tokens=2, messages=messages)
    assert capped.stop_reason == "max_tokens"
    assert capped.usage.output_tokens == 2

    full = claude.messages.create(model="claude-haiku-4-5", max_tokens=1000, messages=messages)
    block = full.content[0]
    assert block.type == "text"
    words = block.text.split()
    stop_word = words[len(words) // 2]
    stopped = claude.messages.create(
        model="claude-haiku-4-5", max_tokens=1000, messages=messages, stop_sequences=[stop_word]
    )
    assert stopped.stop_reason == "stop_sequence"
    assert stopped.stop_sequence == stop_word
    assert stopped.usage.output_tokens <= full.usage.output_tokens


def test_messages_requires_max_tokens_and_version(base_url: str) -> None:
    headers = {"x-api-key": "k", "anthropic-version": "2023-06-01"}
    body: Any = {"model": "claude-haiku-4-5", "messages": [{"role": "user", "content": "hi"}]}
    missing = httpx.post(f"{base_url}/v1/messages", json=body, headers=headers)
    assert missing.status_code == 400
    assert missing.json()["type"] == "error"
    assert missing.json()["error"]["type"] == "invalid_request_error"
    no_version = httpx.post(
        f"{base_url}/v1/messages", json={**body, "max_tokens": 5}, headers={"x-api-key": "k"}
    )
    assert no_version.status_code == 400


@pytest.mark.parametrize(
    ("status", "error"),
    [
        ("429", anthropic.RateLimitError),
        ("500", anthropic.InternalServerError),
        ("503", anthropic.InternalServerError),
        ("400", anthropic.BadRequestError),
    ],
)
def test_messages_fault_headers(
    claude: anthropic.Anthropic, status: str, error: type[Exception]
) -> None:
    with pytest.raises(error) as raised:
        claude.messages.create(
            model="claude-haiku-4-5",
            max_tokens=10,
            messages=[{"role": "user", "content": "hi"}],
            extra_headers={"x-simulator-status": status},
        )
    assert isinstance(raised.value, anthropic.APIStatusError)
    body = raised.value.response.json()
    assert body["type"] == "error"
    assert set(body["error"]) == {"type", "message"}


# --- Usage rules --------------------------------------------------------------------------


def test_plan_is_pure_and_capped() -> None:
    body: Any = {"model": "gpt-4o", "messages": [{"role": "user", "content": "abc"}]}
    prompt = Prompt(chars=3, messages=1)
    first = plan(body, prompt, model="gpt-4o", max_tokens=None)
    assert first == plan(dict(body), prompt, model="gpt-4o", max_tokens=None)
    assert first == plan({**body, "stream": True}, prompt, model="gpt-4o", max_tokens=None)
    capped = plan({**body, "max_tokens": 4}, prompt, model="gpt-4o", max_tokens=4)
    assert capped.output_tokens == 4 and capped.truncated
    assert first.text.startswith(capped.text)


def test_split_text_keeps_every_character() -> None:
    assert split_text("abcdefg", 3) == ["ab", "cd", "efg"]
    pieces = split_text("abc", 5)
    assert "".join(pieces) == "abc" and len(pieces) == 5


# --- Misc --------------------------------------------------------------------------------


def test_models_and_health(oai: openai.OpenAI, base_url: str) -> None:
    ids = [model.id for model in oai.models.list()]
    assert "gpt-4o-mini" in ids
    assert httpx.get(f"{base_url}/healthz").json()["status"] == "ok"
