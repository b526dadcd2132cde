"""An Anthropic Messages stream, rewritten as a Chat Completions stream while it passes.

``ChatStreamFromAnthropic`` is fed the provider's bytes as they arrive and returns the
client's bytes for each piece (a ``StreamScanner``, so the relay meters and translates in
one pass).

=========================================== =============================================
Anthropic event                             Chat Completions chunk
=========================================== =============================================
``message_start``                           ``delta: {role: "assistant", content: ""}``
``content_block_start`` (tool_use)          ``delta.tool_calls[i]``: id, name, ``""``
``content_block_delta`` text_delta          ``delta.content``
``content_block_delta`` input_json_delta    ``delta.tool_calls[i].function.arguments``
``message_delta``                           ``finish_reason`` (``FINISH_REASONS``)
``message_stop``                            the usage chunk, if the client asked
                                            (``stream_options.include_usage``), ``[DONE]``
``error``                                   ``data: {"error": {...}}`` (OpenAI's format)
``ping``, thinking deltas, block stops      nothing
=========================================== =============================================

Usage is taken from the Anthropic events themselves (``message_start``, then each
``message_delta``), so a stream the client leaves early is still recorded with what the
provider bills, cache writes included.
"""

from __future__ import annotations

import time
from typing import Any

from meterline.ingress.sse import DONE, Splitter, data_event, event_data, events
from meterline.ingress.translate.chat_via_anthropic.translation import (
    chat_error,
    chat_usage,
    finish_reason,
    tool_call,
)
from meterline.ingress.usage import Usage, from_anthropic_usage, merge_anthropic_usage


class ChatStreamFromAnthropic:
    def __init__(self, *, include_usage: bool, created: int | None = None):
        self.include_usage = include_usage
        self.usage: Usage | None = None
        self.finish_reason: str | None = None
        """The provider's stop reason (what the event records)."""
        self.error_type: str | None = None
        self._created = int(time.time()) if created is None else created
        self._id: str | None = None
        self._model: str | None = None
        self._raw_usage: dict[str, Any] = {}
        self._tool_index: dict[int, int] = {}
        """Anthropic content block index -> the tool call's index in ``tool_calls``."""
        self._events = Splitter(hold=True)
        self._done = False

    def feed(self, chunk: bytes) -> bytes:
        block = self._events.feed(chunk)
        return self._translate(block) if block else b""

    def finish(self) -> bytes:
        rest = self._events.finish()
        return self._translate(rest) if rest.strip() else b""

    def _translate(self, block: bytes) -> bytes:
        out: list[bytes] = []
        for event in events(block):
            out.extend(self._event(event))
        return b"".join(out)

    def _event(self, event: bytes) -> list[bytes]:
        payload = event_data(event)
        if payload is None:
            return []
        kind = payload.get("type")
        if kind == "message_start":
            message = payload.get("message")
            message = message if isinstance(message, dict) else {}
            self._id, self._model = message.get("id"), message.get("model")
            usage = message.get("usage")
            if isinstance(usage, dict):
                self._raw_usage = usage
                self.usage = from_anthropic_usage(usage)
            return [self._chunk({"role": "assistant", "content": ""})]
        if kind == "content_block_start":
            return self._block_start(payload)
        if kind == "content_block_delta":
            return self._block_delta(payload)
        if kind == "message_delta":
            usage = payload.get("usage")
            if isinstance(usage, dict):
                self._raw_usage = merge_anthropic_usage(self._raw_usage, usage)
                self.usage = from_anthropic_usage(self._raw_usage)
            delta = payload.get("delta")
            reason = delta.get("stop_reason") if isinstance(delta, dict) else None
            if isinstance(reason, str):
                self.finish_reason = reason
                return [self._chunk({}, finish_reason(reason))]
            return []
        if kind == "message_stop":
            return self._stop()
        if kind == "error":
            error = payload.get("error")
            kind = error.get("type") if isinstance(error, dict) else None
            self.error_type = kind if isinstance(kind, str) and kind else "upstream_stream_error"
            return [data_event(chat_error(payload, 502))]
        return []

    def _block_start(self, payload: dict[str, Any]) -> list[bytes]:
        block = payload.get("content_block")
        index = payload.get("index")
        if not isinstance(block, dict) or not isinstance(index, int):
            return []
        if block.get("type") == "tool_use":
            position = self._tool_index[index] = len(self._tool_index)
            return [self._chunk({"tool_calls": [{"index": position, **tool_call(block, "")}]})]
        if block.get("type") == "text" and block.get("text"):
            return [self._chunk({"content": block["text"]})]
        return []

    def _block_delta(self, payload: dict[str, Any]) -> list[bytes]:
        delta = payload.get("delta")
        if not isinstance(delta, dict):
            return []
        if delta.get("type") == "text_delta" and isinstance(delta.get("text"), str):
            return [self._chunk({"content": delta["text"]})]
        if delta.get("type") == "input_json_delta":
            position = self._tool_index.get(payload.get("index", -1))
            partial = delta.get("partial_json")
            if position is None or not isinstance(partial, str) or not partial:
                return []
            return [
                self._chunk(
                    {"tool_calls": [{"index": position, "function": {"arguments": partial}}]}
                )
            ]
        return []

    def _stop(self) -> list[bytes]:
        if self._done:
            return []
        self._done = True
        out = []
        usage = chat_usage(self._raw_usage) if self._raw_usage else None
        if self.include_usage and usage is not None:
            out.append(data_event({**self._base(), "choices": [], "usage": usage}))
        out.append(DONE)
        return out

    def _base(self) -> dict[str, Any]:
        return {
            "id": self._id,
            "object": "chat.completion.chunk",
            "created": self._created,
            "model": self._model,
        }

    def _chunk(self, delta: dict[str, Any], reason: str | None = None) -> bytes:
        choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": reason}
        return data_event({**self._base(), "choices": [choice]})
