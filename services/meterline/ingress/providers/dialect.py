"""What differs between wire formats: how a provider writes errors and usage (a
``Dialect``), and what follows a stream as it passes (a ``StreamScanner``)."""

from __future__ import annotations

from typing import Any, Protocol

from meterline.ingress.sse import Splitter, event_data, events
from meterline.ingress.usage import Usage


class Dialect(Protocol):
    """How one wire format writes errors and usage."""

    def error_body(self, status: int, message: str, code: str) -> bytes:
        """An error the gateway answers itself, in this format."""
        ...

    def stream_error(self, message: str, code: str) -> bytes:
        """An error event ending a stream that already has its 200."""
        ...

    def is_error(self, payload: dict[str, Any]) -> bool:
        """Whether a provider's error body is already in this format."""
        ...

    def answer(self, payload: dict[str, Any]) -> tuple[Usage | None, str | None]:
        """Usage and finish reason of a whole successful answer."""
        ...

    def error_type(self, payload: dict[str, Any], default: str) -> str:
        """The most specific name for the error in a provider's error body."""
        ...


class StreamScanner(Protocol):
    """Follows a stream chunk by chunk and records usage, finish reason and errors."""

    usage: Usage | None
    finish_reason: str | None
    error_type: str | None

    def feed(self, chunk: bytes) -> bytes:
        """The bytes to send on to the client now."""
        ...

    def finish(self) -> bytes:
        """The end of the stream: whatever was held back."""
        ...


class EventScanner:
    """A scanner that never changes the stream: it passes every chunk on at once and decodes
    only the complete events ``wanted`` picks (a few byte searches each), which are the few
    that carry usage, a stop reason or an error. Subclasses say what to look for."""

    def __init__(self) -> None:
        self.usage: Usage | None = None
        self.finish_reason: str | None = None
        self.error_type: str | None = None
        self._events = Splitter(hold=False)

    def wanted(self, block: bytes) -> bool:
        raise NotImplementedError

    def handle(self, payload: dict[str, Any]) -> None:
        raise NotImplementedError

    def feed(self, chunk: bytes) -> bytes:
        block = self._events.feed(chunk)
        if block:
            self._scan(block)
        return chunk

    def finish(self) -> bytes:
        rest = self._events.finish()
        if rest:
            self._scan(rest)
        return b""

    def _scan(self, block: bytes) -> None:
        if not self.wanted(block):
            return
        for event in events(block):
            if self.wanted(event):
                payload = event_data(event)
                if payload is not None:
                    self.handle(payload)
