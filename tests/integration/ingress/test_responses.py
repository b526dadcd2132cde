"""``POST /v1/responses`` end to end in one process: the official OpenAI SDK as the client,
the provider simulator upstream, a MemoryPublisher for the events."""

from __future__ import annotations

import json
from typing import Any

import httpx
import openai
import pytest
from openai.types.responses import ResponseCompletedEvent, ResponseTextDeltaEvent

from meterline.ingress.metering import EVENT_ID_HEADER
from tests.support.gateway import SYSTEM_KEY, Gateway

PROMPT = "Say something about meters."


def final_response(stream: Any) -> Any:
    """The ``response`` of the terminal event of a Responses stream."""
    final = None
    for event in stream:
        if event.type in ("response.completed", "response.incomplete", "response.failed"):
            final = event.response
    assert final is not None, "the stream had no terminal event"
    return final


def test_non_streamed_response_is_passed_through_and_metered(gw: Gateway) -> None:
    raw = gw.openai().responses.with_raw_response.create(
        model="sim/gpt-4o",
        input=PROMPT,
        user="end-user-7",
        extra_body={"providerOptions": {"gateway": {"tags": ["feature:responses"]}}},
    )
    response = raw.parse()
    assert response.usage is not None
    assert response.output_text
    [event] = gw.wait_for_events(1)

    assert raw.headers[EVENT_ID_HEADER] == event.event_id
    assert event.api_surface == "responses"
    assert (event.team_id, event.api_key_name) == ("acme", "acme-key")
    assert (event.model_requested, event.model, event.provider) == ("sim/gpt-4o", "gpt-4o", "sim")
    assert (event.status, event.http_status, event.streamed) == ("success", 200, False)
    assert event.finish_reason == "completed"
    assert (event.user_id, event.tags) == ("end-user-7", ["feature:responses"])
    assert event.input_tokens == response.usage.input_tokens
    assert event.output_tokens == response.usage.output_tokens
    assert json.loads(event.raw_usage) == response.usage.model_dump(exclude_none=True)
    event.validate()

    [upstream] = gw.upstream.received
    assert upstream.path == "/v1/responses"
    assert upstream.body["model"] == "gpt-4o"
    assert upstream.body["user"] == "end-user-7"
    assert "providerOptions" not in upstream.body
    assert upstream.headers["authorization"] == f"Bearer {SYSTEM_KEY}"


@pytest.mark.parametrize("stream", [False, True])
def test_cached_and_reasoning_tokens_reach_the_event(gw: Gateway, stream: bool) -> None:
    request: Any = {"model": "sim/o4-mini", "input": PROMPT, "prompt_cache_key": "k"}
    if stream:
        response = final_response(gw.openai().responses.create(**request, stream=True))
    else:
        response = gw.openai().responses.create(**request)
    [event] = gw.wait_for_events(1)
    usage = response.usage
    assert usage.input_tokens_details.cached_tokens > 0
    assert usage.output_tokens_details.reasoning_tokens > 0
    assert event.input_tokens == usage.input_tokens
    assert event.cached_input_tokens == usage.input_tokens_details.cached_tokens
    assert event.output_tokens == usage.output_tokens
    assert event.reasoning_tokens == usage.output_tokens_details.reasoning_tokens
    assert event.cache_creation_input_tokens == 0
    assert event.streamed is stream
    event.validate()


def test_streamed_response_passes_through_and_is_metered(gw: Gateway) -> None:
    with gw.openai().responses.with_streaming_response.create(
        model="sim/gpt-4o", input=PROMPT, stream=True
    ) as raw:
        event_id = raw.headers[EVENT_ID_HEADER]
        events = list(raw.parse())
    kinds = [e.type for e in events]
    assert kinds[0] == "response.created"
    assert kinds[-1] == "response.completed"
    text = "".join(e.delta for e in events if isinstance(e, ResponseTextDeltaEvent))
    completed = events[-1]
    assert isinstance(completed, ResponseCompletedEvent)
    final = completed.response
    assert text == final.output_text
    assert final.usage is not None
    [event] = gw.wait_for_events(1)
    assert event.event_id == event_id
    assert (event.status, event.streamed, event.finish_reason) == ("success", True, "completed")
    assert (event.input_tokens, event.output_tokens) == (
        final.usage.input_tokens,
        final.usage.output_tokens,
    )
    assert event.time_to_first_token_ms is not None
    # The stream reached the provider as a stream, unchanged apart from the model name.
    [upstream] = gw.upstream.received
    assert upstream.body == {"model": "gpt-4o", "input": PROMPT, "stream": True}


def test_streamed_and_whole_answers_record_the_same_usage(gw: Gateway) -> None:
    request: Any = {"model": "sim/gpt-4o", "input": [{"role": "user", "content": PROMPT}]}
    gw.openai().responses.create(**request)
    final_response(gw.openai().responses.create(**request, stream=True))
    whole, streamed = gw.wait_for_events(2)
    assert (whole.input_tokens, whole.output_tokens) == (
        streamed.input_tokens,
        streamed.output_tokens,
    )
    assert (whole.streamed, streamed.streamed) == (False, True)


@pytest.mark.parametrize("stream", [False, True])
def test_a_reply_cut_by_max_output_tokens_is_recorded_as_incomplete(
    gw: Gateway, stream: bool
) -> None:
    request: Any = {"model": "sim/gpt-4o", "input": PROMPT, "max_output_tokens": 5}
    if stream:
        response = final_response(gw.openai().responses.create(**request, stream=True))
    else:
        response = gw.openai().responses.create(**request)
    assert response.status == "incomplete"
    [event] = gw.wait_for_events(1)
    assert (event.status, event.finish_reason) == ("success", "max_output_tokens")
    assert event.output_tokens == response.usage.output_tokens == 5


def test_tools_and_images_are_forwarded_and_counted(gw: Gateway) -> None:
    tools: Any = [
        {
            "type": "function",
            "name": "lookup",
            "description": "Look a meter up.",
            "parameters": {"type": "object", "properties": {"id": {"type": "string"}}},
        }
    ]
    content: Any = [
        {"type": "input_text", "text": "What does this meter read?"},
        {"type": "input_image", "image_url": "data:image/png;base64,iVBORw0KGgo="},
    ]
    response = gw.openai().responses.create(
        model="sim/gpt-4o", input=[{"role": "user", "content": content}], tools=tools
    )
    [event] = gw.wait_for_events(1)
    assert response.usage is not None
    assert event.input_tokens == response.usage.input_tokens
    # The simulator counts 85 tokens per image: the image reached the provider.
    assert event.input_tokens > 85
    [upstream] = gw.upstream.received
    assert upstream.body["tools"] == tools
    assert upstream.body["input"][0]["content"] == content


def test_empty_input_is_forwarded_and_recorded(gw: Gateway) -> None:
    response = gw.openai().responses.create(model="sim/gpt-4o", input="")
    [event] = gw.wait_for_events(1)
    assert response.usage is not None
    assert event.input_tokens == response.usage.input_tokens
    assert event.status == "success"


def test_tags_and_user_from_headers_merge_with_the_body(gw: Gateway) -> None:
    gw.openai().responses.create(
        model="sim/gpt-4o",
        input=PROMPT,
        user="body-user",
        extra_body={"providerOptions": {"gateway": {"tags": ["a"]}}},
        extra_headers={"ai-reporting-tags": "b, c", "ai-reporting-user": "header-user"},
    )
    [event] = gw.wait_for_events(1)
    assert (event.user_id, event.tags) == ("header-user", ["a", "b", "c"])


@pytest.mark.parametrize("status", [400, 429, 500])
def test_upstream_errors_pass_through_and_are_recorded(gw: Gateway, status: int) -> None:
    gw.upstream.inject["x-simulator-status"] = str(status)
    with pytest.raises(openai.APIStatusError) as caught:
        gw.openai().responses.create(model="sim/gpt-4o", input=PROMPT)
    assert caught.value.status_code == status
    assert "Simulated" in caught.value.message
    [event] = gw.wait_for_events(1)
    assert caught.value.response.headers[EVENT_ID_HEADER] == event.event_id
    assert (event.status, event.http_status) == ("error", status)
    assert event.error_type
    assert (event.input_tokens, event.output_tokens) == (0, 0)
    event.validate()


def test_upstream_error_on_a_stream_request_is_a_plain_error(gw: Gateway) -> None:
    gw.upstream.inject["x-simulator-status"] = "503"
    with pytest.raises(openai.InternalServerError) as caught:
        list(gw.openai().responses.create(model="sim/gpt-4o", input=PROMPT, stream=True))
    assert caught.value.status_code == 503
    [event] = gw.wait_for_events(1)
    assert (event.status, event.http_status, event.streamed) == ("error", 503, True)


def test_provider_timeout_is_a_504_and_recorded(gw: Gateway) -> None:
    gw.upstream.inject["x-simulator-delay-ms"] = "1500"  # the provider's timeout is 1 s
    with pytest.raises(openai.InternalServerError) as caught:
        gw.openai().responses.create(model="sim/gpt-4o", input=PROMPT)
    assert caught.value.status_code == 504
    [event] = gw.wait_for_events(1)
    assert (event.status, event.http_status, event.error_type) == ("error", 504, "upstream_timeout")


def test_client_leaving_mid_stream_is_recorded_with_the_whole_generation(gw: Gateway) -> None:
    gw.upstream.inject.update({"x-simulator-chunks": "30", "x-simulator-chunk-delay-ms": "40"})
    body = {"model": "sim/o4-mini", "input": PROMPT, "stream": True}
    headers = {"authorization": f"Bearer {gw.key}"}
    with httpx.stream("POST", f"{gw.url}/v1/responses", json=body, headers=headers) as response:
        response.read()
    [whole] = gw.wait_for_events(1)
    gw.publisher.events.clear()

    response = gw.abandon_stream("/v1/responses", body, headers)
    [event] = gw.wait_for_events(1, timeout=10)
    assert event.event_id == response.headers[EVENT_ID_HEADER]
    assert (event.status, event.streamed, event.api_surface) == (
        "client_disconnected",
        True,
        "responses",
    )
    assert event.output_tokens > 0 and event.reasoning_tokens > 0
    assert (event.input_tokens, event.output_tokens, event.reasoning_tokens) == (
        whole.input_tokens,
        whole.output_tokens,
        whole.reasoning_tokens,
    )


def test_provider_stalling_mid_stream_ends_it_with_an_openai_error_event(gw: Gateway) -> None:
    gw.upstream.inject.update({"x-simulator-chunks": "3", "x-simulator-chunk-delay-ms": "1500"})
    with pytest.raises(openai.APIError) as caught:
        list(gw.openai().responses.create(model="sim/gpt-4o", input=PROMPT, stream=True))
    assert "stopped answering" in caught.value.message
    [event] = gw.wait_for_events(1)
    assert (event.status, event.error_type, event.streamed) == ("error", "upstream_timeout", True)


def test_provider_error_event_mid_stream_is_passed_on_and_recorded(gw: Gateway) -> None:
    gw.upstream.inject["x-simulator-fail-after"] = "4"
    events = list(gw.openai().responses.create(model="sim/gpt-4o", input=PROMPT, stream=True))
    # The SDK hands a Responses error event to the caller as the stream's last item.
    assert events[-1].type == "error"
    assert "x-simulator-fail-after" in events[-1].message  # the provider's own message
    [event] = gw.wait_for_events(1)
    assert (event.status, event.error_type, event.streamed) == ("error", "server_error", True)
    assert (event.input_tokens, event.output_tokens) == (0, 0)  # no usage before the end


def test_a_very_long_stream_is_relayed_whole_and_metered(gw: Gateway) -> None:
    # A long answer in 5,000 events, read raw: an SDK parsing each would be the slow part.
    gw.upstream.inject["x-simulator-chunks"] = "5000"
    body = {"model": "sim/gpt-4o", "input": PROMPT, "stream": True}
    with httpx.stream(
        "POST", f"{gw.url}/v1/responses", json=body, headers={"authorization": f"Bearer {gw.key}"}
    ) as response:
        received = response.read()
    assert received.count(b"event: response.output_text.delta\n") == 5000
    completed = received.rsplit(b"event: response.completed\ndata: ", 1)[1]
    usage = json.loads(completed)["response"]["usage"]
    [event] = gw.wait_for_events(1)
    assert (event.status, event.input_tokens, event.output_tokens) == (
        "success",
        usage["input_tokens"],
        usage["output_tokens"],
    )


def test_request_scoped_byok_key_serves_the_request_and_is_recorded_as_byok(gw: Gateway) -> None:
    byok = {"sim": [{"apiKey": "sk-byok-for-responses"}]}
    gw.openai().responses.create(
        model="sim/gpt-4o",
        input=PROMPT,
        extra_body={"providerOptions": {"gateway": {"byok": byok}}},
    )
    [event] = gw.wait_for_events(1)
    assert event.credential_type == "byok"
    assert "sk-byok" not in repr(event.to_record())
    [upstream] = gw.upstream.received
    assert upstream.headers["authorization"] == "Bearer sk-byok-for-responses"
    assert "sk-byok" not in json.dumps(upstream.body)


def test_missing_or_wrong_key_is_a_401_in_openai_format(gw: Gateway) -> None:
    with pytest.raises(openai.AuthenticationError) as caught:
        gw.openai(key="ml_not-a-key").responses.create(model="sim/gpt-4o", input=PROMPT)
    assert caught.value.code == "invalid_api_key"
    assert gw.upstream.received == []


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        (b"{not json", "not valid JSON"),
        (b'{"input": "hi"}', "model is required"),
        (b'{"model": "sim/gpt-4o", "input": 5}', "input must be"),
        (b'{"model": "sim/gpt-4o", "input": "hi", "stream": "yes"}', "stream must be"),
        (b'{"model": "anthropic/claude-sonnet-4-6", "input": "hi"}', "anthropic wire"),
        (b'{"model": "sim/gpt-4o", "input": "hi", "providerOptions": []}', "providerOptions"),
    ],
)
def test_bad_input_is_a_400_in_openai_format(gw: Gateway, body: bytes, needle: str) -> None:
    response = gw.post("/v1/responses", body)
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert needle in error["message"]
    assert error["type"] == "invalid_request_error"
    assert gw.upstream.received == []
