"""``POST /v1/messages`` end to end in one process: the official Anthropic SDK as the client,
the provider simulator upstream, a MemoryPublisher for the events."""

from __future__ import annotations

import json
from typing import Any

import anthropic
import httpx
import pytest
from anthropic.types import RawMessageStartEvent

from meterline.ingress.metering import EVENT_ID_HEADER
from meterline.simulator.usage import request_digest
from tests.support.gateway import ANTHROPIC_VERSION, SYSTEM_KEY, Gateway

MODEL = "anthropic/claude-sonnet-4-6"
MESSAGES: Any = [{"role": "user", "content": "Say something about meters."}]


def assert_folded(event: Any, usage: Any) -> None:
    """The event's usage is Anthropic's, folded into the one convention."""
    read = usage.cache_read_input_tokens or 0
    written = usage.cache_creation_input_tokens or 0
    assert event.input_tokens == usage.input_tokens + read + written
    assert event.cached_input_tokens == read
    assert event.cache_creation_input_tokens == written
    one_hour = usage.cache_creation.ephemeral_1h_input_tokens if usage.cache_creation else 0
    assert event.cache_creation_1h_input_tokens == one_hour
    assert event.output_tokens == usage.output_tokens
    thinking = usage.output_tokens_details.thinking_tokens if usage.output_tokens_details else 0
    assert event.reasoning_tokens == thinking
    event.validate()


def cached_request(writes: bool) -> dict[str, Any]:
    """A request with a 5-minute and a 1-hour cache breakpoint that the simulator answers with
    a cache write (or a read). The simulator decides by the request's digest, so the first
    variant that gives the wanted kind is picked, the same one on every run."""
    for n in range(64):
        system: Any = [
            {"type": "text", "text": f"Policy {n}. " * 200, "cache_control": {"type": "ephemeral"}},
            {
                "type": "text",
                "text": "Glossary. " * 200,
                "cache_control": {"type": "ephemeral", "ttl": "1h"},
            },
        ]
        body = {"model": "claude-sonnet-4-6", "system": system, "messages": MESSAGES}
        if (request_digest(body)[5] % 2 == 0) == writes:
            return {"model": MODEL, "system": system, "messages": MESSAGES, "max_tokens": 512}
    raise AssertionError("no variant found")


def test_non_streamed_message_is_passed_through_and_metered(gw: Gateway) -> None:
    raw = gw.anthropic().messages.with_raw_response.create(
        model=MODEL,
        max_tokens=256,
        messages=MESSAGES,
        metadata={"user_id": "end-user-7"},
        extra_body={"providerOptions": {"gateway": {"tags": ["feature:messages"]}}},
        extra_headers={"anthropic-beta": "extended-cache-ttl-2025-04-11"},
    )
    message = raw.parse()
    [event] = gw.wait_for_events(1)

    assert raw.headers[EVENT_ID_HEADER] == event.event_id
    assert event.api_surface == "messages"
    assert (event.team_id, event.api_key_name) == ("acme", "acme-key")
    assert (event.model_requested, event.model, event.provider) == (
        MODEL,
        "claude-sonnet-4-6",
        "anthropic",
    )
    assert (event.status, event.http_status, event.streamed) == ("success", 200, False)
    assert event.finish_reason == message.stop_reason == "end_turn"
    assert (event.user_id, event.tags) == ("end-user-7", ["feature:messages"])
    assert_folded(event, message.usage)
    assert json.loads(event.raw_usage) == message.usage.model_dump(exclude_none=True)

    [upstream] = gw.upstream.received
    assert upstream.path == "/v1/messages"
    assert upstream.body["model"] == "claude-sonnet-4-6"
    assert upstream.body["metadata"] == {"user_id": "end-user-7"}
    assert "providerOptions" not in upstream.body
    assert upstream.headers["x-api-key"] == SYSTEM_KEY
    sent_version = raw.http_response.request.headers["anthropic-version"]
    assert upstream.headers["anthropic-version"] == sent_version
    assert upstream.headers["anthropic-beta"] == "extended-cache-ttl-2025-04-11"
    assert "authorization" not in upstream.headers


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize("writes", [False, True])
def test_cache_reads_and_writes_fold_into_the_input(
    gw: Gateway, stream: bool, writes: bool
) -> None:
    request = cached_request(writes)
    if stream:
        with gw.anthropic().messages.stream(**request) as events:
            message = events.get_final_message()
    else:
        message = gw.anthropic().messages.create(**request)
    usage = message.usage
    if writes:
        assert usage.cache_creation_input_tokens and not usage.cache_read_input_tokens
        assert usage.cache_creation is not None
        assert usage.cache_creation.ephemeral_1h_input_tokens > 0
        assert usage.cache_creation.ephemeral_5m_input_tokens > 0
    else:
        assert usage.cache_read_input_tokens and not usage.cache_creation_input_tokens
    [event] = gw.wait_for_events(1)
    assert event.streamed is stream
    assert_folded(event, usage)


@pytest.mark.parametrize("stream", [False, True])
def test_thinking_tokens_are_reasoning_tokens(gw: Gateway, stream: bool) -> None:
    request: Any = {
        "model": MODEL,
        "max_tokens": 1024,
        "messages": MESSAGES,
        "thinking": {"type": "enabled", "budget_tokens": 512},
    }
    if stream:
        with gw.anthropic().messages.stream(**request) as events:
            message = events.get_final_message()
    else:
        message = gw.anthropic().messages.create(**request)
    assert message.usage.output_tokens_details is not None
    assert message.usage.output_tokens_details.thinking_tokens > 0
    [event] = gw.wait_for_events(1)
    assert event.reasoning_tokens == message.usage.output_tokens_details.thinking_tokens
    assert_folded(event, message.usage)


def test_streamed_message_passes_through_and_is_metered(gw: Gateway) -> None:
    with gw.anthropic().messages.with_streaming_response.create(
        model=MODEL, max_tokens=256, messages=MESSAGES, stream=True
    ) as raw:
        event_id = raw.headers[EVENT_ID_HEADER]
        events = list(raw.parse())
    kinds = [e.type for e in events]
    assert (kinds[0], kinds[-1]) == ("message_start", "message_stop")
    first = events[0]
    assert isinstance(first, RawMessageStartEvent)
    start = first.message.usage
    delta = next(e for e in events if e.type == "message_delta")
    [event] = gw.wait_for_events(1)
    assert event.event_id == event_id
    assert (event.status, event.streamed, event.finish_reason) == ("success", True, "end_turn")
    assert event.input_tokens == start.input_tokens
    assert event.output_tokens == delta.usage.output_tokens
    assert event.time_to_first_token_ms is not None
    [upstream] = gw.upstream.received
    assert upstream.body["stream"] is True


def test_streamed_and_whole_answers_record_the_same_usage(gw: Gateway) -> None:
    gw.anthropic().messages.create(model=MODEL, max_tokens=256, messages=MESSAGES)
    with gw.anthropic().messages.stream(model=MODEL, max_tokens=256, messages=MESSAGES) as events:
        events.get_final_message()
    whole, streamed = gw.wait_for_events(2)
    assert (whole.input_tokens, whole.output_tokens) == (
        streamed.input_tokens,
        streamed.output_tokens,
    )


def test_bearer_gateway_key_works_too(gw: Gateway) -> None:
    response = gw.post(
        "/v1/messages",
        {"model": MODEL, "max_tokens": 64, "messages": MESSAGES},
        **{"x-api-key": "", "authorization": f"Bearer {gw.key}"},
    )
    assert response.status_code == 200, response.text
    [event] = gw.wait_for_events(1)
    assert event.team_id == "acme"


def test_tools_images_and_tool_use_stop_reason(gw: Gateway) -> None:
    tools: Any = [
        {
            "name": "read_meter",
            "description": "Read a meter.",
            "input_schema": {"type": "object", "properties": {"id": {"type": "string"}}},
        }
    ]
    content: Any = [
        {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBO"}},
        {"type": "text", "text": "Please call a tool for this meter."},
    ]
    message = gw.anthropic().messages.create(
        model=MODEL, max_tokens=256, tools=tools, messages=[{"role": "user", "content": content}]
    )
    assert message.stop_reason == "tool_use"
    [event] = gw.wait_for_events(1)
    assert event.finish_reason == "tool_use"
    assert event.input_tokens > 85  # the image was counted by the provider
    assert_folded(event, message.usage)
    [upstream] = gw.upstream.received
    assert upstream.body["tools"] == tools


def test_empty_text_content_is_forwarded_and_recorded(gw: Gateway) -> None:
    message = gw.anthropic().messages.create(
        model=MODEL, max_tokens=64, messages=[{"role": "user", "content": ""}]
    )
    [event] = gw.wait_for_events(1)
    assert_folded(event, message.usage)


def test_user_and_tags_from_headers_win(gw: Gateway) -> None:
    gw.anthropic().messages.create(
        model=MODEL,
        max_tokens=64,
        messages=MESSAGES,
        metadata={"user_id": "metadata-user"},
        extra_headers={"ai-reporting-user": "header-user", "ai-reporting-tags": "x,y"},
    )
    [event] = gw.wait_for_events(1)
    assert (event.user_id, event.tags) == ("header-user", ["x", "y"])


@pytest.mark.parametrize(
    ("status", "error_class", "kind"),
    [
        (400, anthropic.BadRequestError, "invalid_request_error"),
        (429, anthropic.RateLimitError, "rate_limit_error"),
        (529, anthropic.InternalServerError, "overloaded_error"),
    ],
)
def test_upstream_errors_pass_through_in_anthropic_format_and_are_recorded(
    gw: Gateway, status: int, error_class: type[Exception], kind: str
) -> None:
    gw.upstream.inject["x-simulator-status"] = str(status)
    with pytest.raises(anthropic.APIStatusError) as caught:
        gw.anthropic().messages.create(model=MODEL, max_tokens=64, messages=MESSAGES)
    assert isinstance(caught.value, error_class)
    assert caught.value.status_code == status
    body = caught.value.response.json()
    assert body["type"] == "error"
    assert body["error"]["type"] == kind
    [event] = gw.wait_for_events(1)
    assert caught.value.response.headers[EVENT_ID_HEADER] == event.event_id
    assert (event.status, event.http_status, event.error_type) == ("error", status, kind)
    assert (event.input_tokens, event.output_tokens) == (0, 0)
    event.validate()


def test_provider_timeout_is_a_504_in_anthropic_format_and_recorded(gw: Gateway) -> None:
    gw.upstream.inject["x-simulator-delay-ms"] = "1500"  # the provider's timeout is 1 s
    with pytest.raises(anthropic.InternalServerError) as caught:
        gw.anthropic().messages.create(model=MODEL, max_tokens=64, messages=MESSAGES)
    assert caught.value.status_code == 504
    assert caught.value.response.json()["error"]["type"] == "timeout_error"
    [event] = gw.wait_for_events(1)
    assert (event.status, event.http_status, event.error_type) == ("error", 504, "upstream_timeout")


def test_client_leaving_mid_stream_is_recorded_with_the_whole_generation(gw: Gateway) -> None:
    gw.upstream.inject.update({"x-simulator-chunks": "30", "x-simulator-chunk-delay-ms": "40"})
    body = {**cached_request(writes=True), "stream": True}
    headers = {"x-api-key": gw.key, "anthropic-version": ANTHROPIC_VERSION}
    with httpx.stream("POST", f"{gw.url}/v1/messages", json=body, headers=headers) as response:
        response.read()
    [whole] = gw.wait_for_events(1)
    gw.publisher.events.clear()

    # Gone right after message_start, which carries the input side of the usage.
    response = gw.abandon_stream("/v1/messages", body, headers, until=b"message_start")
    [event] = gw.wait_for_events(1, timeout=10)
    assert event.event_id == response.headers[EVENT_ID_HEADER]
    assert (event.status, event.streamed) == ("client_disconnected", True)
    assert event.cache_creation_input_tokens > 0
    assert event.output_tokens > 0
    assert (
        event.input_tokens,
        event.cache_creation_input_tokens,
        event.output_tokens,
    ) == (whole.input_tokens, whole.cache_creation_input_tokens, whole.output_tokens)


def test_provider_stalling_mid_stream_ends_it_with_an_anthropic_error_event(gw: Gateway) -> None:
    # Events 1.5 s apart against a 1 s read timeout: the provider stalls after message_start.
    gw.upstream.inject.update({"x-simulator-chunks": "3", "x-simulator-chunk-delay-ms": "1500"})
    with (
        pytest.raises(anthropic.APIStatusError) as caught,
        gw.anthropic().messages.stream(model=MODEL, max_tokens=64, messages=MESSAGES) as stream,
    ):
        for _ in stream:
            pass
    assert caught.value.body == {
        "type": "error",
        "error": {"type": "timeout_error", "message": "the provider stopped answering mid-stream"},
    }
    [event] = gw.wait_for_events(1)
    assert (event.status, event.error_type, event.streamed) == ("error", "upstream_timeout", True)
    assert event.input_tokens > 0  # what message_start said the provider took in


def test_provider_error_event_mid_stream_is_passed_on_and_recorded(gw: Gateway) -> None:
    # Anthropic's overloaded_error after message_start and the first block's start.
    gw.upstream.inject["x-simulator-fail-after"] = "2"
    with (
        pytest.raises(anthropic.APIStatusError) as caught,
        gw.anthropic().messages.stream(model=MODEL, max_tokens=64, messages=MESSAGES) as stream,
    ):
        for _ in stream:
            pass
    assert caught.value.body["error"]["type"] == "overloaded_error"  # type: ignore[index]
    [event] = gw.wait_for_events(1)
    assert (event.status, event.error_type) == ("error", "overloaded_error")
    assert event.input_tokens > 0  # message_start's input usage is kept


def test_a_very_long_stream_is_relayed_whole_and_metered(gw: Gateway) -> None:
    # A long answer in 5,000 events, read raw: an SDK parsing each would be the slow part.
    gw.upstream.inject["x-simulator-chunks"] = "5000"
    body = {"model": MODEL, "max_tokens": 256, "messages": MESSAGES, "stream": True}
    with httpx.stream(
        "POST",
        f"{gw.url}/v1/messages",
        json=body,
        headers={"x-api-key": gw.key, "anthropic-version": ANTHROPIC_VERSION},
    ) as response:
        received = response.read()
    assert received.count(b"event: content_block_delta\n") == 5000
    delta = received.rsplit(b"event: message_delta\ndata: ", 1)[1].split(b"\n", 1)[0]
    usage = json.loads(delta)["usage"]
    [event] = gw.wait_for_events(1)
    assert event.status == "success"
    assert event.output_tokens == usage["output_tokens"]
    assert event.input_tokens == usage["input_tokens"] + usage["cache_read_input_tokens"]


def test_request_scoped_byok_key_serves_the_request_and_is_recorded_as_byok(gw: Gateway) -> None:
    byok = {"anthropic": [{"apiKey": "sk-ant-byok-for-messages"}]}
    gw.anthropic().messages.create(
        model=MODEL,
        max_tokens=64,
        messages=MESSAGES,
        extra_body={"providerOptions": {"gateway": {"byok": byok}}},
    )
    [event] = gw.wait_for_events(1)
    assert event.credential_type == "byok"
    assert "sk-ant-byok" not in repr(event.to_record())
    [upstream] = gw.upstream.received
    assert upstream.headers["x-api-key"] == "sk-ant-byok-for-messages"
    assert "sk-ant-byok" not in json.dumps(upstream.body)


def test_missing_or_wrong_key_is_a_401_in_anthropic_format(gw: Gateway) -> None:
    with pytest.raises(anthropic.AuthenticationError) as caught:
        gw.anthropic(key="ml_not-a-key").messages.create(
            model=MODEL, max_tokens=64, messages=MESSAGES
        )
    assert caught.value.response.json()["error"]["type"] == "authentication_error"
    response = httpx.post(f"{gw.url}/v1/messages", json={"model": MODEL})
    assert response.status_code == 401
    assert response.json() == {
        "type": "error",
        "error": {"type": "authentication_error", "message": response.json()["error"]["message"]},
    }
    assert gw.upstream.received == []


@pytest.mark.parametrize(
    ("body", "headers", "status", "needle"),
    [
        (b"{not json", {}, 400, "not valid JSON"),
        (b'{"max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]}', {}, 400, "model"),
        (b'{"model": "anthropic/claude-sonnet-4-6", "max_tokens": 5}', {}, 400, "messages"),
        (
            b'{"model": "nope/gpt-4o", "messages": [{"role": "user", "content": "hi"}]}',
            {},
            400,
            "unknown provider",
        ),
        (
            b'{"model": "anthropic/x", "messages": [{"role": "user", "content": "hi"}],'
            b' "stream": 1}',
            {},
            400,
            "stream",
        ),
        (
            b'{"model": "anthropic/x", "messages": [{"role": "user", "content": "hi"}],'
            b' "metadata": {"user_id": 5}}',
            {},
            400,
            "metadata.user_id",
        ),
        (b"{}", {"anthropic-version": ""}, 400, "anthropic-version"),
        (
            b'{"model": "anthropic/x", "messages": [{"role": "user", "content": "hi"}]}',
            {"ai-reporting-tags": ",".join(f"t{n}" for n in range(11))},
            400,
            "tags",
        ),
        (b"x" * 70_000, {}, 413, "larger than"),
    ],
)
def test_bad_input_is_refused_in_anthropic_format(
    gw: Gateway, body: bytes, headers: dict[str, str], status: int, needle: str
) -> None:
    response = gw.post("/v1/messages", body, **headers)
    assert response.status_code == status, response.text
    payload = response.json()
    assert payload["type"] == "error"
    assert set(payload["error"]) == {"type", "message"}
    assert needle in payload["error"]["message"]
    assert gw.upstream.received == []


def test_wrong_method_and_unknown_subpath_answer_in_anthropic_format(gw: Gateway) -> None:
    for response in (
        httpx.get(f"{gw.url}/v1/messages"),
        httpx.post(f"{gw.url}/v1/messages/batches", json={}),
    ):
        assert response.status_code in (404, 405)
        assert response.json()["type"] == "error"


def test_count_tokens_is_forwarded_and_not_metered(gw: Gateway) -> None:
    request: Any = {"model": MODEL, "messages": MESSAGES, "system": "Be brief."}
    counted = gw.anthropic().messages.count_tokens(**request)
    message = gw.anthropic().messages.create(**request, max_tokens=64)
    # The count is the whole prompt the same request is then billed for.
    [event] = gw.wait_for_events(1)
    assert counted.input_tokens == event.input_tokens
    assert_folded(event, message.usage)
    count, create = gw.upstream.received
    assert count.path == "/v1/messages/count_tokens"
    assert count.body["model"] == "claude-sonnet-4-6"
    assert count.headers["x-api-key"] == SYSTEM_KEY
    assert create.path == "/v1/messages"


def test_count_tokens_errors_are_in_anthropic_format(gw: Gateway) -> None:
    gw.upstream.inject["x-simulator-status"] = "429"
    with pytest.raises(anthropic.RateLimitError):
        gw.anthropic().messages.count_tokens(model=MODEL, messages=MESSAGES)
    response = httpx.post(
        f"{gw.url}/v1/messages/count_tokens",
        json={"model": "sim/gpt-4o", "messages": MESSAGES},
        headers={"x-api-key": gw.key, "anthropic-version": ANTHROPIC_VERSION},
    )
    assert response.status_code == 400
    assert response.json()["error"]["type"] == "invalid_request_error"
    assert gw.publisher.events == []
