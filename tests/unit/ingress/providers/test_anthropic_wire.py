"""The Messages stream scanner: message_start and the cumulative message_delta merged,
errors recorded, whatever the chunking."""

from __future__ import annotations

import json
from typing import Any

import pytest

from meterline.ingress.providers.anthropic_wire import MessagesScanner


def _sse(payload: dict[str, Any]) -> bytes:
    return f"event: {payload['type']}\ndata: {json.dumps(payload)}\n\n".encode()


@pytest.mark.parametrize("size", [1, 13, 4096])
def test_scanner_merges_message_start_and_cumulative_message_delta(size: int) -> None:
    start_usage = {
        "input_tokens": 10,
        "cache_read_input_tokens": 0,
        "cache_creation_input_tokens": 2000,
        "cache_creation": {"ephemeral_5m_input_tokens": 500, "ephemeral_1h_input_tokens": 1500},
        "output_tokens": 1,
    }
    stream = b"".join(
        [
            _sse({"type": "message_start", "message": {"usage": start_usage}}),
            _sse({"type": "content_block_delta", "delta": {"text": '"usage": {"a": 1}'}}),
            _sse(
                {
                    "type": "message_delta",
                    "delta": {"stop_reason": "max_tokens"},
                    # Cumulative counts; fields left out or null keep message_start's values.
                    "usage": {
                        "output_tokens": 300,
                        "input_tokens": None,
                        "output_tokens_details": {"thinking_tokens": 120},
                    },
                }
            ),
            _sse({"type": "message_stop"}),
        ]
    )
    scanner = MessagesScanner()
    out = b"".join(scanner.feed(stream[i : i + size]) for i in range(0, len(stream), size))
    assert out + scanner.finish() == stream
    usage = scanner.usage
    assert usage is not None
    assert (usage.input_tokens, usage.cached_input_tokens) == (2010, 0)
    assert (usage.cache_creation_input_tokens, usage.cache_creation_1h_input_tokens) == (2000, 1500)
    assert (usage.output_tokens, usage.reasoning_tokens) == (300, 120)
    assert scanner.finish_reason == "max_tokens"


def test_scanner_records_an_error_event_and_keeps_the_input_usage() -> None:
    scanner = MessagesScanner()
    scanner.feed(_sse({"type": "message_start", "message": {"usage": {"input_tokens": 42}}}))
    scanner.feed(_sse({"type": "error", "error": {"type": "overloaded_error", "message": "busy"}}))
    assert scanner.error_type == "overloaded_error"
    assert scanner.usage is not None and scanner.usage.input_tokens == 42
