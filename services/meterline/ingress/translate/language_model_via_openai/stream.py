"""A Chat Completions stream, rewritten as the AI SDK's language-model stream parts while it
passes.

========================================== ==============================================
Chat Completions chunk                     stream parts
========================================== ==============================================
the first chunk                            ``stream-start`` (the request's warnings),
                                           ``response-metadata`` (id, model, time)
``delta.reasoning_content`` / ``reasoning`` ``reasoning-start``, ``reasoning-delta``
``delta.content``                          ``text-start``, ``text-delta``
``delta.tool_calls[i]``                    ``tool-input-start``, ``tool-input-delta``
``finish_reason``, the usage chunk         remembered
``[DONE]`` (or the stream's end)           ``*-end`` of what is open, one ``tool-call``
                                           per call, ``finish`` (finish reason, usage)
``data: {"error": ...}``                   ``error``
========================================== ==============================================

Usage is read from the provider's usage chunk, which the gateway always asks for, and the
``finish`` part says it in the V3 shape: the event and the client get the same numbers.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from meterline.ingress.sse import Splitter, data_event, event_data, events, is_done
from meterline.ingress.translate.language_model import (
    error_part,
    finish_reason,
    gateway_metadata,
    usage_v3,
)
from meterline.ingress.translate.language_model_via_openai.translation import (
    finish,
    reasoning_text,
)
from meterline.ingress.usage import NO_USAGE, Usage, from_openai_usage


@dataclass(slots=True)
class _ToolCall:
    id: str
    name: str
    arguments: str = ""


class LanguageModelStreamFromChat:
    def __init__(self, *, event_id: str, warnings: list[dict[str, Any]]):
        self.usage: Usage | None = None
        self.finish_reason: str | None = None
        self.error_type: str | None = None
        self._event_id = event_id
        self._warnings = warnings
        self._events = Splitter(hold=True)
        self._started = False
        self._finished = False
        self._open: tuple[str, str] | None = None
        """The open text or reasoning part: (kind, id)."""
        self._parts = 0
        self._calls: dict[int, _ToolCall] = {}
        """Tool calls by their index in ``tool_calls``."""

    def feed(self, chunk: bytes) -> bytes:
        block = self._events.feed(chunk)
        return self._translate(block) if block else b""

    def finish(self) -> bytes:
        rest = self._events.finish()
        out = self._translate(rest) if rest.strip() else b""
        return out + b"".join(self._finish())

    def _translate(self, block: bytes) -> bytes:
        out: list[bytes] = []
        for event in events(block):
            out.extend(self._chunk(event))
        return b"".join(out)

    def _chunk(self, raw: bytes) -> list[bytes]:
        if is_done(raw):
            return self._finish()
        payload = event_data(raw)
        if payload is None:
            return []
        error = payload.get("error")
        if isinstance(error, dict):
            code = error.get("code") or error.get("type")
            self.error_type = code if isinstance(code, str) and code else "upstream_stream_error"
            message = error.get("message")
            text = message if isinstance(message, str) and message else "provider error"
            return [data_event(error_part(text, "internal_server_error", self.error_type))]
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
        created = payload.get("created")
        seconds = created if isinstance(created, int) else int(time.time())
        metadata = {
            "type": "response-metadata",
            "id": payload.get("id"),
            "modelId": payload.get("model"),
            "timestamp": datetime.fromtimestamp(seconds, UTC).isoformat(),
        }
        return [
            data_event({"type": "stream-start", "warnings": self._warnings}),
            data_event(metadata),
        ]

    def _delta(self, delta: dict[str, Any]) -> list[bytes]:
        out: list[bytes] = []
        reasoning = reasoning_text(delta)
        if reasoning is not None:
            out.extend(self._text("reasoning", reasoning))
        text = delta.get("content")
        if isinstance(text, str) and text:
            out.extend(self._text("text", text))
        for call in delta.get("tool_calls") or []:
            if isinstance(call, dict):
                out.extend(self._tool_delta(call))
        return out

    def _text(self, kind: str, delta: str) -> list[bytes]:
        out: list[bytes] = []
        if self._open is None or self._open[0] != kind:
            out.extend(self._close())
            self._open = (kind, f"{kind}-{self._parts}")
            self._parts += 1
            out.append(data_event({"type": f"{kind}-start", "id": self._open[1]}))
        out.append(data_event({"type": f"{kind}-delta", "id": self._open[1], "delta": delta}))
        return out

    def _close(self) -> list[bytes]:
        if self._open is None:
            return []
        kind, part_id = self._open
        self._open = None
        return [data_event({"type": f"{kind}-end", "id": part_id})]

    def _tool_delta(self, call: dict[str, Any]) -> list[bytes]:
        out: list[bytes] = []
        index = call.get("index", 0)
        found = call.get("function")
        function: dict[str, Any] = found if isinstance(found, dict) else {}
        tool = self._calls.get(index)
        if tool is None:
            out.extend(self._close())
            call_id = call.get("id")
            tool = self._calls[index] = _ToolCall(
                call_id if isinstance(call_id, str) and call_id else f"call-{index}",
                str(function.get("name") or ""),
            )
            out.append(
                data_event({"type": "tool-input-start", "id": tool.id, "toolName": tool.name})
            )
        arguments = function.get("arguments")
        if isinstance(arguments, str) and arguments:
            tool.arguments += arguments
            out.append(data_event({"type": "tool-input-delta", "id": tool.id, "delta": arguments}))
        return out

    def _finish(self) -> list[bytes]:
        if self._finished or not self._started:
            return []
        self._finished = True
        out = self._close()
        for tool in self._calls.values():
            out.append(data_event({"type": "tool-input-end", "id": tool.id}))
            out.append(
                data_event(
                    {
                        "type": "tool-call",
                        "toolCallId": tool.id,
                        "toolName": tool.name,
                        "input": tool.arguments or "{}",
                    }
                )
            )
        reason = (
            finish_reason("error", self.error_type)
            if self.error_type is not None
            else finish(self.finish_reason)
        )
        out.append(
            data_event(
                {
                    "type": "finish",
                    "finishReason": reason,
                    "usage": usage_v3(self.usage or NO_USAGE),
                    "providerMetadata": gateway_metadata(self._event_id),
                }
            )
        )
        return out
