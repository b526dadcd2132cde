"""A Chat Completions stream rewritten as an Anthropic Messages stream while it passes."""

from __future__ import annotations

from typing import Any

from meterline.ingress.sse import Splitter, event_data, events, is_done, typed_event
from meterline.ingress.translate.messages_via_openai.translation import anthropic_usage, stop_reason
from meterline.ingress.usage import Usage, from_openai_usage


class MessagesStreamFromChat:
    """A Chat Completions stream (with its usage chunk) rewritten as a Messages stream while
    it passes: ``message_start``, one content block per text run or tool call
    (``content_block_start`` / ``_delta`` / ``_stop``), then ``message_delta`` with the stop
    reason and the usage, and ``message_stop``. A ``StreamScanner``: usage and finish reason
    are read from the provider's chunks."""

    def __init__(self) -> None:
        self.usage: Usage | None = None
        self.finish_reason: str | None = None
        self.error_type: str | None = None
        self._events = Splitter(hold=True)
        self._started = False
        self._stopped = False
        self._block: tuple[str, int] | None = None
        """The open content block: ("text", -1) or ("tool", the call's index)."""
        self._index = -1

    def feed(self, chunk: bytes) -> bytes:
        block = self._events.feed(chunk)
        return self._translate(block) if block else b""

    def finish(self) -> bytes:
        rest = self._events.finish()
        out = self._translate(rest) if rest.strip() else b""
        return out + b"".join(self._stop())

    def _translate(self, block: bytes) -> bytes:
        out: list[bytes] = []
        for event in events(block):
            out.extend(self._chunk(event))
        return b"".join(out)

    def _chunk(self, raw: bytes) -> list[bytes]:
        if is_done(raw):
            return self._stop()
        payload = event_data(raw)
        if payload is None:
            return []
        error = payload.get("error")
        if isinstance(error, dict):
            code = error.get("code") or error.get("type")
            self.error_type = code if isinstance(code, str) and code else "upstream_stream_error"
            text = error.get("message")
            return [
                typed_event(
                    {
                        "type": "error",
                        "error": {
                            "type": "api_error",
                            "message": text if isinstance(text, str) else "provider error",
                        },
                    }
                )
            ]
        out = self._start(payload)
        usage = from_openai_usage(payload.get("usage"))
        if usage is not None:
            self.usage = usage
        for choice in payload.get("choices") or []:
            if not isinstance(choice, dict):
                continue
            delta = choice.get("delta")
            if isinstance(delta, dict):
                out.extend(self._delta(delta))
            if isinstance(choice.get("finish_reason"), str):
                self.finish_reason = choice["finish_reason"]
        return out

    def _start(self, payload: dict[str, Any]) -> list[bytes]:
        if self._started:
            return []
        self._started = True
        message: dict[str, Any] = {
            "id": payload.get("id"),
            "type": "message",
            "role": "assistant",
            "model": payload.get("model"),
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            # Chat Completions reports usage at the end; message_delta carries it.
            "usage": {"input_tokens": 0, "output_tokens": 0},
        }
        return [typed_event({"type": "message_start", "message": message})]

    def _delta(self, delta: dict[str, Any]) -> list[bytes]:
        out: list[bytes] = []
        text = delta.get("content")
        if isinstance(text, str) and text:
            if self._block != ("text", -1):
                out.extend(self._open(("text", -1), {"type": "text", "text": ""}))
            out.append(self._block_delta({"type": "text_delta", "text": text}))
        for call in delta.get("tool_calls") or []:
            if not isinstance(call, dict):
                continue
            position = call.get("index", 0)
            found = call.get("function")
            function: dict[str, Any] = found if isinstance(found, dict) else {}
            if self._block != ("tool", position):
                block: dict[str, Any] = {
                    "type": "tool_use",
                    "id": call.get("id"),
                    "name": function.get("name"),
                    "input": {},
                }
                out.extend(self._open(("tool", position), block))
            arguments = function.get("arguments")
            if isinstance(arguments, str) and arguments:
                out.append(
                    self._block_delta({"type": "input_json_delta", "partial_json": arguments})
                )
        return out

    def _open(self, block: tuple[str, int], content_block: dict[str, Any]) -> list[bytes]:
        out = self._close()
        self._index += 1
        self._block = block
        out.append(
            typed_event(
                {
                    "type": "content_block_start",
                    "index": self._index,
                    "content_block": content_block,
                }
            )
        )
        return out

    def _close(self) -> list[bytes]:
        if self._block is None:
            return []
        self._block = None
        return [typed_event({"type": "content_block_stop", "index": self._index})]

    def _block_delta(self, delta: dict[str, Any]) -> bytes:
        return typed_event({"type": "content_block_delta", "index": self._index, "delta": delta})

    def _stop(self) -> list[bytes]:
        if self._stopped or not self._started:
            return []
        self._stopped = True
        out = self._close()
        usage = anthropic_usage(self.usage or Usage())
        out.append(
            typed_event(
                {
                    "type": "message_delta",
                    "delta": {
                        "stop_reason": stop_reason(self.finish_reason),
                        "stop_sequence": None,
                    },
                    "usage": usage,
                }
            )
        )
        out.append(typed_event({"type": "message_stop"}))
        return out
