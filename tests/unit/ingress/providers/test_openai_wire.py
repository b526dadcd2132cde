"""The Responses stream scanner: usage, finish reason and errors read from the events as
they pass, whatever the chunking."""

from __future__ import annotations

import json
from typing import Any

import pytest

from meterline.ingress.providers.openai_wire import ResponsesScanner


def _feed_in_pieces(scanner: ResponsesScanner, stream: bytes, size: int) -> bytes:
    out = b"".join(scanner.feed(stream[i : i + size]) for i in range(0, len(stream), size))
    return out + scanner.finish()


@pytest.mark.parametrize("size", [1, 7, 4096])
def test_scanner_reads_usage_from_the_terminal_event_whatever_the_chunking(size: int) -> None:
    usage = {
        "input_tokens": 1200,
        "input_tokens_details": {"cached_tokens": 1024},
        "output_tokens": 90,
        "output_tokens_details": {"reasoning_tokens": 64},
        "total_tokens": 1290,
    }
    events: list[dict[str, Any]] = [
        {"type": "response.created", "response": {"status": "in_progress", "usage": None}},
        {"type": "response.output_text.delta", "delta": 'a "usage": {"x": 1} in the text'},
        {"type": "response.completed", "response": {"status": "completed", "usage": usage}},
    ]
    stream = b"".join(
        f"event: {e['type']}\r\ndata: {json.dumps(e)}\r\n\r\n".encode() for e in events
    )
    scanner = ResponsesScanner()
    assert _feed_in_pieces(scanner, stream, size) == stream  # passed through unchanged
    assert scanner.usage is not None
    assert (scanner.usage.input_tokens, scanner.usage.cached_input_tokens) == (1200, 1024)
    assert (scanner.usage.output_tokens, scanner.usage.reasoning_tokens) == (90, 64)
    assert (scanner.finish_reason, scanner.error_type) == ("completed", None)


def test_scanner_records_a_failed_response_and_an_error_event() -> None:
    failed = {
        "type": "response.failed",
        "response": {"status": "failed", "error": {"code": "server_error"}, "usage": None},
    }
    scanner = ResponsesScanner()
    scanner.feed(f"data: {json.dumps(failed)}\n\n".encode())
    assert (scanner.error_type, scanner.finish_reason) == ("server_error", "failed")

    scanner = ResponsesScanner()
    error = {"type": "error", "code": "rate_limit_exceeded", "message": "slow down"}
    scanner.feed(f"event: error\ndata: {json.dumps(error)}\n\n".encode())
    assert scanner.error_type == "rate_limit_exceeded"
