"""The ingress end to end in one process: the official OpenAI SDK as the client, the provider
simulator as the upstream, a MemoryPublisher for the events."""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

import httpx
import openai
import pytest

from meterline.ingress.metering import EVENT_ID_HEADER
from tests.support.gateway import MAX_BODY, SYSTEM_KEY, Gateway, serve_gateway

MESSAGES: Any = [{"role": "user", "content": "Say something about meters."}]


def test_healthz(gw: Gateway) -> None:
    assert httpx.get(f"{gw.url}/healthz").json() == {"status": "ok"}


def test_non_streamed_completion_is_passed_through_and_metered(gw: Gateway) -> None:
    raw = gw.openai().chat.completions.with_raw_response.create(
        model="sim/gpt-4o", messages=MESSAGES, user="end-user-7"
    )
    completion = raw.parse()
    assert completion.usage is not None
    [event] = gw.wait_for_events(1)

    assert raw.headers[EVENT_ID_HEADER] == event.event_id
    uuid.UUID(event.event_id)
    assert (event.team_id, event.api_key_name) == ("acme", "acme-key")
    assert event.api_surface == "chat_completions"
    assert (event.model_requested, event.model, event.provider) == ("sim/gpt-4o", "gpt-4o", "sim")
    assert event.credential_type == "system"
    assert (event.status, event.http_status, event.streamed) == ("success", 200, False)
    assert event.finish_reason == completion.choices[0].finish_reason
    assert event.user_id == "end-user-7"
    assert event.input_tokens == completion.usage.prompt_tokens
    assert event.output_tokens == completion.usage.completion_tokens
    assert json.loads(event.raw_usage) == completion.usage.model_dump(exclude_none=True)
    assert event.time_to_first_token_ms is None
    assert event.started_at.tzinfo is not None
    event.validate()

    [upstream] = gw.upstream.received
    assert upstream.body["model"] == "gpt-4o"
    assert upstream.body["user"] == "end-user-7"
    assert upstream.headers["authorization"] == f"Bearer {SYSTEM_KEY}"


def test_cached_and_reasoning_tokens_reach_the_event(gw: Gateway) -> None:
    completion = gw.openai().chat.completions.create(
        model="sim/o4-mini", messages=MESSAGES, extra_body={"prompt_cache_key": "k"}
    )
    [event] = gw.wait_for_events(1)
    usage = completion.usage
    assert usage is not None and usage.prompt_tokens_details and usage.completion_tokens_details
    assert usage.prompt_tokens_details.cached_tokens
    assert usage.completion_tokens_details.reasoning_tokens
    assert event.cached_input_tokens == usage.prompt_tokens_details.cached_tokens
    assert event.reasoning_tokens == usage.completion_tokens_details.reasoning_tokens


def test_stream_without_include_usage_hides_the_usage_chunk(gw: Gateway) -> None:
    with gw.openai().chat.completions.with_streaming_response.create(
        model="sim/gpt-4o", messages=MESSAGES, stream=True
    ) as response:
        event_id = response.headers[EVENT_ID_HEADER]
        lines = [line for line in response.iter_lines() if line]
    chunks = [json.loads(line[6:]) for line in lines if line != "data: [DONE]"]
    assert lines[-1] == "data: [DONE]"
    assert chunks and all(chunk["choices"] for chunk in chunks)
    # Not even the "usage": null OpenAI adds to every chunk once usage is asked for.
    assert all("usage" not in chunk for chunk in chunks)
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks)
    assert text

    [event] = gw.wait_for_events(1)
    assert event.event_id == event_id
    assert (event.status, event.streamed, event.finish_reason) == ("success", True, "stop")
    assert event.input_tokens > 0 and event.output_tokens > 0
    assert event.time_to_first_token_ms is not None
    assert 0 <= event.time_to_first_token_ms <= event.duration_ms
    # The gateway asked the provider for usage on the client's behalf.
    [upstream] = gw.upstream.received
    assert upstream.body["stream_options"] == {"include_usage": True}


def test_stream_with_include_usage_passes_the_usage_chunk_through(gw: Gateway) -> None:
    stream = gw.openai().chat.completions.create(
        model="sim/gpt-4o-mini",
        messages=MESSAGES,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    usage = chunks[-1].usage
    assert usage is not None and chunks[-1].choices == []
    [event] = gw.wait_for_events(1)
    assert event.input_tokens == usage.prompt_tokens
    assert event.output_tokens == usage.completion_tokens
    assert json.loads(event.raw_usage) == usage.model_dump(exclude_none=True)
    assert event.streamed and event.status == "success"


def test_streamed_and_whole_answers_record_the_same_usage(gw: Gateway) -> None:
    sdk = gw.openai()
    sdk.chat.completions.create(model="sim/gpt-4o", messages=MESSAGES)
    list(sdk.chat.completions.create(model="sim/gpt-4o", messages=MESSAGES, stream=True))
    whole, streamed = gw.wait_for_events(2)
    assert (whole.input_tokens, whole.output_tokens) == (
        streamed.input_tokens,
        streamed.output_tokens,
    )


def test_tags_and_user_from_extra_body(gw: Gateway) -> None:
    gw.openai().chat.completions.create(
        model="sim/gpt-4o",
        messages=MESSAGES,
        user="standard-user",
        extra_body={"providerOptions": {"gateway": {"user": "acct_1", "tags": ["b", "a", "b"]}}},
    )
    [event] = gw.wait_for_events(1)
    assert event.user_id == "acct_1"
    assert event.tags == ["a", "b"]
    [upstream] = gw.upstream.received
    assert "providerOptions" not in upstream.body
    assert upstream.body["user"] == "standard-user"


def test_tags_and_user_from_headers_merge_with_the_body(gw: Gateway) -> None:
    list(
        gw.openai().chat.completions.create(
            model="sim/gpt-4o",
            messages=MESSAGES,
            stream=True,
            extra_body={"providerOptions": {"gateway": {"user": "body-user", "tags": ["x"]}}},
            extra_headers={"ai-reporting-tags": "y, x,z", "ai-reporting-user": "header-user"},
        )
    )
    [event] = gw.wait_for_events(1)
    assert event.user_id == "header-user"
    assert event.tags == ["x", "y", "z"]
    assert "providerOptions" not in gw.upstream.received[0].body


def test_too_many_tags_is_a_400_naming_the_limit(gw: Gateway) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        gw.openai().chat.completions.create(
            model="sim/gpt-4o",
            messages=MESSAGES,
            extra_body={"providerOptions": {"gateway": {"tags": [f"t{n}" for n in range(8)]}}},
            extra_headers={"ai-reporting-tags": "h1,h2,h3"},
        )
    assert "11 distinct tags" in caught.value.message
    assert "limit is 10" in caught.value.message
    assert gw.upstream.received == [] and gw.publisher.events == []


@pytest.mark.parametrize("status", [429, 500])
def test_upstream_errors_pass_through_and_are_recorded(gw: Gateway, status: int) -> None:
    gw.upstream.inject["x-simulator-status"] = str(status)
    error_class = openai.RateLimitError if status == 429 else openai.InternalServerError
    with pytest.raises(error_class) as caught:
        gw.openai().chat.completions.create(model="sim/gpt-4o", messages=MESSAGES)
    assert caught.value.status_code == status
    assert "Simulated" in caught.value.message  # the provider's own message
    [event] = gw.wait_for_events(1)
    assert caught.value.response.headers[EVENT_ID_HEADER] == event.event_id
    assert (event.status, event.http_status) == ("error", status)
    assert event.error_type
    assert (event.input_tokens, event.output_tokens) == (0, 0)
    event.validate()


def test_upstream_error_on_a_stream_request_is_a_plain_error(gw: Gateway) -> None:
    gw.upstream.inject["x-simulator-status"] = "429"
    with pytest.raises(openai.RateLimitError):
        list(
            gw.openai().chat.completions.create(model="sim/gpt-4o", messages=MESSAGES, stream=True)
        )
    [event] = gw.wait_for_events(1)
    assert (event.status, event.http_status, event.streamed) == ("error", 429, True)


TOKEN_FIELDS = (
    "input_tokens",
    "output_tokens",
    "cached_input_tokens",
    "cache_creation_input_tokens",
    "cache_creation_1h_input_tokens",
    "reasoning_tokens",
)


def tokens(event: Any) -> tuple[int, ...]:
    return tuple(getattr(event, name) for name in TOKEN_FIELDS)


def test_client_leaving_mid_stream_is_recorded_with_the_whole_generation(gw: Gateway) -> None:
    # The OpenAI wire reports usage only in the last chunk: the gateway reads the stream
    # to its end after the client left, so the provider's usage is still recorded.
    gw.upstream.inject.update({"x-simulator-chunks": "30", "x-simulator-chunk-delay-ms": "40"})
    body = {"model": "sim/o4-mini", "messages": MESSAGES, "stream": True}
    headers = {"authorization": f"Bearer {gw.key}"}
    with httpx.stream(
        "POST", f"{gw.url}/v1/chat/completions", json=body, headers=headers
    ) as response:
        response.read()
    [whole] = gw.wait_for_events(1)
    gw.publisher.events.clear()

    response = gw.abandon_stream("/v1/chat/completions", body, headers)
    [event] = gw.wait_for_events(1, timeout=10)
    assert event.event_id == response.headers[EVENT_ID_HEADER]
    assert (event.status, event.streamed) == ("client_disconnected", True)
    assert event.time_to_first_token_ms is not None
    assert whole.status == "success"
    assert event.output_tokens > 0 and event.reasoning_tokens > 0
    assert tokens(event) == tokens(whole)


def test_with_draining_off_a_client_leaving_is_recorded_at_once() -> None:
    with serve_gateway(upstream_drain_after_disconnect_seconds=0) as gw:
        gw.upstream.inject.update({"x-simulator-chunks": "50", "x-simulator-chunk-delay-ms": "50"})
        body = {"model": "sim/gpt-4o", "messages": MESSAGES, "stream": True}
        gw.abandon_stream("/v1/chat/completions", body, {"authorization": f"Bearer {gw.key}"})
        [event] = gw.wait_for_events(1)
    assert event.status == "client_disconnected"
    assert event.duration_ms < 2000  # well before the stream would have ended
    assert event.output_tokens == 0  # the usage chunk never came


def test_a_stopping_gateway_records_streams_still_draining() -> None:
    with serve_gateway() as gw:
        # 20 s of stream: longer than a stopping gateway waits for it.
        gw.upstream.inject.update(
            {"x-simulator-chunks": "100", "x-simulator-chunk-delay-ms": "200"}
        )
        body = {"model": "sim/gpt-4o", "messages": MESSAGES, "stream": True}
        gw.abandon_stream("/v1/chat/completions", body, {"authorization": f"Bearer {gw.key}"})
        time.sleep(0.5)
        assert gw.publisher.events == []  # still draining
    [event] = gw.publisher.events
    assert event.status == "client_disconnected"


def test_missing_or_wrong_key_is_a_401(gw: Gateway) -> None:
    with pytest.raises(openai.AuthenticationError) as caught:
        gw.openai(key="ml_not-a-key").chat.completions.create(model="sim/gpt-4o", messages=MESSAGES)
    assert caught.value.code == "invalid_api_key"
    response = httpx.post(f"{gw.url}/v1/chat/completions", json={"model": "sim/gpt-4o"})
    assert response.status_code == 401
    assert set(response.json()["error"]) == {"message", "type", "param", "code"}
    assert gw.upstream.received == []


def test_each_team_is_recorded_as_itself(gw: Gateway) -> None:
    gw.openai(key=gw.other_team_key).chat.completions.create(model="sim/gpt-4o", messages=MESSAGES)
    [event] = gw.wait_for_events(1)
    assert (event.team_id, event.api_key_name) == ("globex", "globex-key")


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        (b"{not json", "not valid JSON"),
        (b"[1, 2]", "must be a JSON object"),
        (b'{"messages": [{"role": "user", "content": "hi"}]}', "model is required"),
        (b'{"model": 4, "messages": [{"role": "user", "content": "hi"}]}', "model is required"),
        (b'{"model": "sim/gpt-4o"}', "messages is required"),
        (b'{"model": "sim/gpt-4o", "messages": "hi"}', "messages is required"),
        (b'{"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]}', "sim"),
        (b'{"model": "nope/gpt-4o", "messages": [{"role": "user", "content": "hi"}]}', "nope"),
    ],
)
def test_bad_input_is_a_400_in_openai_format(gw: Gateway, body: bytes, needle: str) -> None:
    response = gw.post("/v1/chat/completions", body)
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert needle in error["message"]
    assert error["type"] == "invalid_request_error"
    assert gw.upstream.received == []


def test_oversized_body_is_a_413(gw: Gateway) -> None:
    big = {"model": "sim/gpt-4o", "messages": [{"role": "user", "content": "x" * MAX_BODY}]}
    response = gw.post("/v1/chat/completions", big)
    assert response.status_code == 413
    assert "larger than" in response.json()["error"]["message"]
    # Without a Content-Length the limit holds too.
    chunked = httpx.post(
        f"{gw.url}/v1/chat/completions",
        content=iter([json.dumps(big).encode()]),
        headers={"authorization": f"Bearer {gw.key}"},
    )
    assert chunked.status_code == 413
    assert gw.upstream.received == []


def test_unreachable_provider_is_a_502_without_an_event(gw: Gateway) -> None:
    with pytest.raises(openai.InternalServerError) as caught:
        gw.openai().chat.completions.create(model="down/gpt-4o", messages=MESSAGES)
    assert caught.value.status_code == 502
    assert caught.value.code == "upstream_unreachable"
    assert gw.publisher.events == []


def test_provider_timeout_is_a_504_and_recorded(gw: Gateway) -> None:
    gw.upstream.inject["x-simulator-delay-ms"] = "1500"  # the provider's timeout is 1 s
    with pytest.raises(openai.InternalServerError) as caught:
        gw.openai().chat.completions.create(model="sim/gpt-4o", messages=MESSAGES)
    assert caught.value.status_code == 504
    [event] = gw.wait_for_events(1)
    assert (event.status, event.http_status, event.error_type) == (
        "error",
        504,
        "upstream_timeout",
    )


def test_unknown_path_answers_in_openai_format(gw: Gateway) -> None:
    response = httpx.get(f"{gw.url}/v1/nothing-here")
    assert response.status_code == 404
    assert "message" in response.json()["error"]
