"""An Anthropic Messages stream, rewritten as the AI SDK's language-model stream parts while
it passes.

=========================================== =============================================
Anthropic event                             stream parts
=========================================== =============================================
``message_start``                           ``stream-start`` (the request's warnings),
                                            ``response-metadata`` (id, model)
``content_block_start`` text / thinking /   ``text-start`` / ``reasoning-start`` /
tool_use                                    ``tool-input-start``
``content_block_delta`` text / thinking /   ``text-delta`` / ``reasoning-delta`` /
input_json                                  ``tool-input-delta`` (a signature is kept)
``content_block_stop``                      ``text-end`` / ``reasoning-end`` (with the
                                            signature) / ``tool-input-end`` and the whole
                                            ``tool-call``
``message_delta``                           remembered: stop reason, cumulative usage
``message_stop`` (or the stream's end)      ``finish`` (finish reason, usage)
``error``                                   ``error``
``ping``                                    nothing
=========================================== =============================================

Usage is taken from the Anthropic events themselves (``message_start``, then each
``message_delta``), as the event records it, so a stream the client leaves early is still
recorded with what the provider bills.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from meterline.ingress.sse import Splitter, data_event, event_data, events
from meterline.ingress.translate.language_model import (
    error_part,
    finish_reason,
    gateway_metadata,
    usage_v3,
)
from meterline.ingress.translate.language_model_via_anthropic.translation import finish
from meterline.ingress.usage import NO_USAGE, Usage, from_anthropic_usage, merge_anthropic_usage


@dataclass(slots=True)
class _Block:
    kind: str
    """text, reasoning or tool"""
    id: str
    name: str = ""
    text: str = ""
    """A tool call's input JSON so far."""
    metadata: dict[str, Any] | None = None
    """A reasoning block's ``providerMetadata`` (its signature, or its redacted data)."""


class LanguageModelStreamFromAnthropic:
    def __init__(self, *, event_id: str, warnings: list[dict[str, Any]]):
        self.usage: Usage | None = None
        self.finish_reason: str | None = None
        self.error_type: str | None = None
        self._event_id = event_id
        self._warnings = warnings
        self._raw_usage: dict[str, Any] = {}
        self._blocks: dict[int, _Block] = {}
        """Open content blocks by their Anthropic index."""
        self._events = Splitter(hold=True)
        self._started = False
        self._finished = False

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
            out.extend(self._event(event))
        return b"".join(out)

    def _event(self, event: bytes) -> list[bytes]:
        payload = event_data(event)
        if payload is None:
            return []
        kind = payload.get("type")
        if kind == "message_start":
            return self._start(payload)
        if kind == "content_block_start":
            return self._block_start(payload)
        if kind == "content_block_delta":
            return self._block_delta(payload)
        if kind == "content_block_stop":
            return self._block_stop(payload)
        if kind == "message_delta":
            usage = payload.get("usage")
            if isinstance(usage, dict):
                self._raw_usage = merge_anthropic_usage(self._raw_usage, usage)
                self.usage = from_anthropic_usage(self._raw_usage)
            delta = payload.get("delta")
            reason = delta.get("stop_reason") if isinstance(delta, dict) else None
            if isinstance(reason, str):
                self.finish_reason = reason
            return []
        if kind == "message_stop":
            return self._finish()
        if kind == "error":
            error = payload.get("error")
            error = error if isinstance(error, dict) else {}
            found = error.get("type")
            self.error_type = found if isinstance(found, str) and found else "upstream_stream_error"
            message = error.get("message")
            text = message if isinstance(message, str) and message else "provider error"
            return [data_event(error_part(text, "internal_server_error", self.error_type))]
        return []

    def _start(self, payload: dict[str, Any]) -> list[bytes]:
        message = payload.get("message")
        message = message if isinstance(message, dict) else {}
        usage = message.get("usage")
        if isinstance(usage, dict):
            self._raw_usage = usage
            self.usage = from_anthropic_usage(usage)
        if self._started:
            return []
        self._started = True
        metadata = {"type": "response-metadata", "id": message.get("id")}
        if isinstance(message.get("model"), str):
            metadata["modelId"] = message["model"]
        return [
            data_event({"type": "stream-start", "warnings": self._warnings}),
            data_event(metadata),
        ]

    def _block_start(self, payload: dict[str, Any]) -> list[bytes]:
        content = payload.get("content_block")
        index = payload.get("index")
        if not isinstance(content, dict) or not isinstance(index, int):
            return []
        kind = content.get("type")
        part_id = str(index)
        if kind == "text":
            self._blocks[index] = _Block("text", part_id)
            out = [data_event({"type": "text-start", "id": part_id})]
            if content.get("text"):
                out.append(self._delta("text", part_id, str(content["text"])))
            return out
        if kind in ("thinking", "redacted_thinking"):
            metadata = (
                {"anthropic": {"redactedData": content.get("data")}}
                if kind == "redacted_thinking"
                else None
            )
            self._blocks[index] = _Block("reasoning", part_id, metadata=metadata)
            start: dict[str, Any] = {"type": "reasoning-start", "id": part_id}
            if metadata is not None:
                start["providerMetadata"] = metadata
            return [data_event(start)]
        if kind == "tool_use":
            block_id = content.get("id")
            block = _Block(
                "tool",
                block_id if isinstance(block_id, str) and block_id else part_id,
                name=str(content.get("name") or ""),
            )
            self._blocks[index] = block
            return [
                data_event({"type": "tool-input-start", "id": block.id, "toolName": block.name})
            ]
        return []

    def _block_delta(self, payload: dict[str, Any]) -> list[bytes]:
        delta = payload.get("delta")
        block = self._blocks.get(payload.get("index", -1))
        if not isinstance(delta, dict) or block is None:
            return []
        kind = delta.get("type")
        if kind == "text_delta" and isinstance(delta.get("text"), str):
            return [self._delta("text", block.id, delta["text"])]
        if kind == "thinking_delta" and isinstance(delta.get("thinking"), str):
            return [self._delta("reasoning", block.id, delta["thinking"])]
        if kind == "signature_delta" and isinstance(delta.get("signature"), str):
            block.metadata = {"anthropic": {"signature": delta["signature"]}}
            return []
        if kind == "input_json_delta":
            partial = delta.get("partial_json")
            if not isinstance(partial, str) or not partial:
                return []
            block.text += partial
            return [data_event({"type": "tool-input-delta", "id": block.id, "delta": partial})]
        return []

    @staticmethod
    def _delta(kind: str, part_id: str, text: str) -> bytes:
        return data_event({"type": f"{kind}-delta", "id": part_id, "delta": text})

    def _block_stop(self, payload: dict[str, Any]) -> list[bytes]:
        block = self._blocks.pop(payload.get("index", -1), None)
        return [] if block is None else self._end(block)

    def _end(self, block: _Block) -> list[bytes]:
        if block.kind == "tool":
            call = {
                "type": "tool-call",
                "toolCallId": block.id,
                "toolName": block.name,
                "input": block.text or "{}",
            }
            return [data_event({"type": "tool-input-end", "id": block.id}), data_event(call)]
        end: dict[str, Any] = {"type": f"{block.kind}-end", "id": block.id}
        if block.metadata is not None:
            end["providerMetadata"] = block.metadata
        return [data_event(end)]

    def _finish(self) -> list[bytes]:
        if self._finished or not self._started:
            return []
        self._finished = True
        out = [part for block in self._blocks.values() for part in self._end(block)]
        self._blocks.clear()
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
