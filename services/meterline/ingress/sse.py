"""Server-sent events, the one place that reads and writes them: where events end, a byte
stream cut into whole events whatever its chunk boundaries, an event's JSON data, and an
event written out.

Every scanner and translator of a stream goes through ``Splitter``, so all of them take
the same line endings (providers write ``\\n\\n``; the SSE specification also allows
CRLFs) and keep an unfinished event within the same bounds."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any, Final

EVENT_END: Final = re.compile(rb"\r\n\r\n|\n\n")

MAX_SCAN_TAIL: Final = 1 << 20
"""Longest unfinished event kept when a stream is only read: a longer one is given up on
(passed on, not scanned) rather than held in memory."""

MAX_HELD_EVENT: Final = 16 << 20
"""Longest unfinished event kept when a stream is rewritten, which needs each event whole:
far beyond what a provider writes (the largest, a Responses stream's final event, holds the
whole response). A longer one ends the stream with an error."""

DONE: Final = b"data: [DONE]\n\n"


class EventTooLarge(Exception):
    """An event that does not end within ``MAX_HELD_EVENT`` bytes, in a rewritten stream."""


class Splitter:
    """Cuts a byte stream into blocks of whole events.

    ``hold``: the stream is rewritten, so an unfinished event is kept until it ends (up to
    ``MAX_HELD_EVENT``). Otherwise the stream is only read, and an unfinished event longer
    than ``MAX_SCAN_TAIL`` is dropped from the scan."""

    def __init__(self, *, hold: bool):
        self._hold = hold
        self._tail = b""

    def feed(self, chunk: bytes) -> bytes:
        """The whole events that ``chunk`` completes (possibly none: ``b""``)."""
        data = self._tail + chunk if self._tail else chunk
        end = last_event_end(data)
        if end == 0:
            self._keep(data)
            return b""
        self._tail = data[end:]
        return data[:end]

    def finish(self) -> bytes:
        """What is left at the end of the stream: an event without its blank line."""
        rest, self._tail = self._tail, b""
        return rest

    def _keep(self, data: bytes) -> None:
        if self._hold:
            if len(data) > MAX_HELD_EVENT:
                self._tail = b""
                raise EventTooLarge(f"an event of the provider's exceeds {MAX_HELD_EVENT} bytes")
            self._tail = data
        else:
            self._tail = data if len(data) <= MAX_SCAN_TAIL else b""


def last_event_end(data: bytes) -> int:
    """Where the last complete event in ``data`` ends (0: none is complete)."""
    end = data.rfind(b"\n\n")
    end = end + 2 if end >= 0 else 0
    if b"\r" in data:
        crlf = data.rfind(b"\r\n\r\n")
        if crlf >= 0:
            end = max(end, crlf + 4)
    return end


def events(block: bytes) -> Iterator[bytes]:
    """Each event of a block, with its blank line; the last may have none (the stream's
    end)."""
    start = 0
    for match in EVENT_END.finditer(block):
        yield block[start : match.end()]
        start = match.end()
    if start < len(block):
        yield block[start:]


def event_data(event: bytes) -> dict[str, Any] | None:
    """The JSON object in an event's ``data:`` lines, if there is one."""
    lines = [
        line[5:].removeprefix(b" ") for line in event.splitlines() if line.startswith(b"data:")
    ]
    if not lines:
        return None
    try:
        payload = json.loads(b"\n".join(lines))
    except ValueError:  # [DONE], or something only passed along
        return None
    return payload if isinstance(payload, dict) else None


def is_done(event: bytes) -> bool:
    """OpenAI's last event, ``data: [DONE]``."""
    return event.strip().endswith(b"[DONE]")


def dumps(value: Any) -> bytes:
    """Compact JSON, as providers write it."""
    return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode()


def data_event(payload: Any) -> bytes:
    """An event with only data, as OpenAI writes them."""
    return b"data: " + dumps(payload) + b"\n\n"


def typed_event(payload: dict[str, Any]) -> bytes:
    """An event named by its payload's ``type``, as Anthropic writes them."""
    return b"event: " + str(payload["type"]).encode() + b"\ndata: " + dumps(payload) + b"\n\n"
