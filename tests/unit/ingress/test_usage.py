"""Usage from OpenAI Chat Completions payloads (whole and streamed) into the event's
convention, and the SSE scanner that reads it from a passing stream."""

from __future__ import annotations

import json
from typing import Any

import pytest

from meterline.ingress.providers.openai_wire import OpenAIDialect, SseScanner
from meterline.ingress.usage import Usage, from_openai_usage

# Shaped like api.openai.com's answers (gpt-4o with a cache hit, o4-mini reasoning).
COMPLETION: dict[str, Any] = {
    "id": "chatcmpl-B9MHDbslfkBeAs8l4bebGdFOJ6PeG",
    "object": "chat.completion",
    "created": 1741570283,
    "model": "gpt-4o-2024-08-06",
    "choices": [
        {
            "index": 0,
            "message": {"role": "assistant", "content": "Hi.", "refusal": None},
            "logprobs": None,
            "finish_reason": "stop",
        }
    ],
    "usage": {
        "prompt_tokens": 1117,
        "completion_tokens": 46,
        "total_tokens": 1163,
        "prompt_tokens_details": {"cached_tokens": 1024, "audio_tokens": 0},
        "completion_tokens_details": {
            "reasoning_tokens": 0,
            "audio_tokens": 0,
            "accepted_prediction_tokens": 0,
            "rejected_prediction_tokens": 0,
        },
    },
    "service_tier": "default",
    "system_fingerprint": "fp_fc9f1d7035",
}

REASONING_USAGE = {
    "prompt_tokens": 75,
    "completion_tokens": 1186,
    "total_tokens": 1261,
    "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
    "completion_tokens_details": {"reasoning_tokens": 1024, "audio_tokens": 0},
}


def test_whole_completion() -> None:
    usage, finish_reason = OpenAIDialect().answer(COMPLETION)
    assert usage is not None
    assert (usage.input_tokens, usage.cached_input_tokens) == (1117, 1024)
    assert (usage.output_tokens, usage.reasoning_tokens) == (46, 0)
    assert usage.cache_creation_input_tokens == 0
    assert json.loads(usage.raw) == COMPLETION["usage"]
    assert finish_reason == "stop"


def test_reasoning_tokens_stay_inside_output_tokens() -> None:
    usage = from_openai_usage(REASONING_USAGE)
    assert usage is not None
    assert (usage.output_tokens, usage.reasoning_tokens) == (1186, 1024)


def test_minimal_usage_from_an_openai_compatible_server() -> None:
    # vLLM, llama.cpp and friends often send only the three totals, or nulls.
    usage = from_openai_usage(
        {
            "prompt_tokens": 12,
            "completion_tokens": 3,
            "total_tokens": 15,
            "prompt_tokens_details": None,
        }
    )
    assert usage == Usage(
        input_tokens=12,
        output_tokens=3,
        raw='{"prompt_tokens":12,"completion_tokens":3,"total_tokens":15,'
        '"prompt_tokens_details":null}',
    )


def test_cache_writes_are_read_from_the_prompt_details() -> None:
    """As OpenAI's newer models report them (``PromptTokensDetails.cache_write_tokens``):
    a part of the prompt, priced at its own rate."""
    raw = {
        "prompt_tokens": 2100,
        "completion_tokens": 12,
        "prompt_tokens_details": {"cached_tokens": 128, "cache_write_tokens": 1920},
    }
    usage = from_openai_usage(raw)
    assert usage is not None
    assert (usage.input_tokens, usage.cached_input_tokens) == (2100, 128)
    assert (usage.cache_creation_input_tokens, usage.cache_creation_1h_input_tokens) == (1920, 0)
    # Reads and writes together never exceed the prompt, whatever a server reports.
    capped = from_openai_usage(
        {
            "prompt_tokens": 100,
            "prompt_tokens_details": {"cached_tokens": 60, "cache_write_tokens": 70},
        }
    )
    assert capped is not None
    assert (capped.cached_input_tokens, capped.cache_creation_input_tokens) == (60, 40)


def test_parts_larger_than_their_whole_are_capped_but_kept_raw() -> None:
    raw = {
        "prompt_tokens": 10,
        "completion_tokens": 5,
        "prompt_tokens_details": {"cached_tokens": 50},
        "completion_tokens_details": {"reasoning_tokens": 9},
    }
    usage = from_openai_usage(raw)
    assert usage is not None
    assert (usage.cached_input_tokens, usage.reasoning_tokens) == (10, 5)
    assert json.loads(usage.raw) == raw


@pytest.mark.parametrize(
    "value", [None, "x", 3, [], {"prompt_tokens": "7", "completion_tokens": True}]
)
def test_nonsense_counts_nothing(value: object) -> None:
    usage = from_openai_usage(value)
    assert usage is None or (usage.input_tokens, usage.output_tokens) == (0, 0)


def test_no_usage_and_no_choices() -> None:
    assert OpenAIDialect().answer({"id": "x"}) == (None, None)
    assert OpenAIDialect().answer({}) == (None, None)


def sse(*payloads: dict[str, Any] | str, separator: str = "\n\n") -> bytes:
    events = [p if isinstance(p, str) else json.dumps(p, separators=(",", ":")) for p in payloads]
    return b"".join(f"data: {e}{separator}".encode() for e in events)


def chunk(
    content: str | None, finish: str | None = None, with_usage_null: bool = True
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "id": "chatcmpl-1",
        "object": "chat.completion.chunk",
        "created": 1,
        "model": "gpt-4o",
        "choices": [
            {
                "index": 0,
                "delta": {"content": content} if content is not None else {},
                "logprobs": None,
                "finish_reason": finish,
            }
        ],
    }
    if with_usage_null:
        body["usage"] = None
    return body


def usage_chunk() -> dict[str, Any]:
    return {
        "id": "chatcmpl-1",
        "object": "chat.completion.chunk",
        "created": 1,
        "model": "gpt-4o",
        "choices": [],
        "usage": REASONING_USAGE,
    }


# What the provider sends once the gateway asked for usage, and what the client would have
# got without asking for it.
WITH_USAGE = sse(chunk("Hel"), chunk("lo"), chunk(None, "stop"), usage_chunk(), "[DONE]")
WITHOUT_USAGE = sse(
    chunk("Hel", with_usage_null=False),
    chunk("lo", with_usage_null=False),
    chunk(None, "stop", with_usage_null=False),
    "[DONE]",
)


def run(scanner: SseScanner, pieces: list[bytes]) -> bytes:
    out = b"".join(scanner.feed(piece) for piece in pieces)
    return out + scanner.finish()


def splits(data: bytes) -> list[list[bytes]]:
    """The stream whole, byte by byte, and cut in two at every position."""
    cuts = [[data], [data[i : i + 1] for i in range(len(data))]]
    cuts += [[data[:i], data[i:]] for i in range(1, len(data))]
    return cuts


def test_hidden_usage_leaves_exactly_what_the_client_would_have_seen() -> None:
    for pieces in splits(WITH_USAGE):
        scanner = SseScanner(hide_usage=True)
        assert run(scanner, pieces) == WITHOUT_USAGE
        assert scanner.usage is not None and scanner.usage.output_tokens == 1186
        assert scanner.finish_reason == "stop"


def test_passthrough_changes_nothing_and_still_reads_the_usage() -> None:
    for pieces in splits(WITH_USAGE):
        scanner = SseScanner(hide_usage=False)
        assert run(scanner, pieces) == WITH_USAGE
        assert scanner.usage is not None and scanner.usage.input_tokens == 75
        assert scanner.finish_reason == "stop"


def test_spaced_json_and_crlf_events() -> None:
    def spaced(payload: dict[str, Any]) -> str:
        return json.dumps(payload)  # ", " and ": " separators

    stream = sse(
        spaced(chunk("a")),
        spaced(chunk(None, "length")),
        spaced(usage_chunk()),
        "[DONE]",
        separator="\r\n\r\n",
    )
    scanner = SseScanner(hide_usage=True)
    out = run(scanner, [stream[:17], stream[17:]])
    assert b"usage" not in out
    assert out.endswith(b"data: [DONE]\r\n\r\n")
    assert scanner.usage is not None and scanner.finish_reason == "length"
    for line in out.split(b"\r\n\r\n"):
        if line.startswith(b"data: {"):
            json.loads(line[6:])  # still JSON


def test_usage_on_a_content_chunk_keeps_the_content() -> None:
    last = chunk("!", "stop")
    last["usage"] = REASONING_USAGE
    scanner = SseScanner(hide_usage=True)
    out = run(scanner, [sse(chunk("Hi"), last, "[DONE]")])
    events = [json.loads(e[6:]) for e in out.split(b"\n\n") if e.startswith(b"data: {")]
    assert [e["choices"][0]["delta"].get("content") for e in events] == ["Hi", "!"]
    assert all("usage" not in e for e in events)
    assert scanner.usage is not None


def test_an_error_event_in_the_stream_is_noticed() -> None:
    scanner = SseScanner(hide_usage=False)
    error = {"error": {"message": "overloaded", "type": "server_error", "code": None}}
    run(scanner, [sse(chunk("a"), error)])
    assert scanner.error_type == "server_error"


def test_a_cut_stream_has_no_usage() -> None:
    scanner = SseScanner(hide_usage=True)
    out = run(scanner, [WITH_USAGE[:60]])
    assert out == WITH_USAGE[:60]  # the unfinished event is passed on as it came
    assert scanner.usage is None
