"""The relay: a provider's stream on its way to the client, and the one event it publishes
however the stream ends."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any, cast

from meterline.ingress.providers.anthropic_wire import AnthropicDialect
from meterline.ingress.providers.openai_wire import OpenAIDialect, SseScanner
from meterline.ingress.publishing.memory import MemoryPublisher
from meterline.ingress.relay import Drains, SseRelay
from meterline.ingress.sse import MAX_HELD_EVENT, event_data
from meterline.ingress.translate.chat_via_anthropic.stream import ChatStreamFromAnthropic
from meterline.ingress.transport import ProviderResponse
from tests.support.events import request_record


class StandInResponse:
    """What the relay reads of a provider's response: its status and its chunks."""

    status = 200

    def __init__(self, chunks: list[bytes]):
        self._chunks = chunks
        self.closed = False

    async def chunks(self) -> AsyncIterator[bytes]:
        for chunk in self._chunks:
            await asyncio.sleep(0)
            yield chunk

    def close(self) -> None:
        self.closed = True


def relay_all(chunks: list[bytes], scanner: Any, dialect: Any) -> tuple[bytes, MemoryPublisher]:
    publisher = MemoryPublisher()
    response = StandInResponse(chunks)
    relay = SseRelay(
        cast(ProviderResponse, response),
        request_record(streamed=True),
        publisher,
        scanner,
        dialect,
        Drains(0),
    )

    async def run() -> bytes:
        return b"".join([chunk async for chunk in relay.chunks()])

    sent = asyncio.run(run())
    assert response.closed
    return sent, publisher


def test_a_whole_stream_is_relayed_and_recorded_once() -> None:
    usage = {"prompt_tokens": 12, "completion_tokens": 3, "total_tokens": 15}
    stream = [
        b'data: {"choices":[{"index":0,"delta":{"content":"hi"},"finish_reason":null}]}\n\n',
        b'data: {"choices":[{"index":0,"delta":{},"finish_reason":"stop"}],',
        b'"usage":' + json.dumps(usage).encode() + b"}\n\ndata: [DONE]\n\n",
    ]
    sent, publisher = relay_all(stream, SseScanner(hide_usage=False), OpenAIDialect())
    assert sent == b"".join(stream)
    [event] = publisher.events
    assert (event.status, event.input_tokens, event.output_tokens) == ("success", 12, 3)
    assert event.finish_reason == "stop"


def test_an_event_too_large_to_rewrite_ends_the_stream_with_an_error() -> None:
    start = {"type": "message_start", "message": {"id": "m", "usage": {"input_tokens": 7}}}
    first = b"event: message_start\ndata: " + json.dumps(start).encode() + b"\n\n"
    endless = b"event: content_block_delta\ndata: " + b"x" * (MAX_HELD_EVENT + 1)
    translator = ChatStreamFromAnthropic(include_usage=False)
    sent, publisher = relay_all([first, endless], translator, AnthropicDialect())
    last = sent.rsplit(b"\n\n", 2)[-2]
    error = event_data(last)
    assert error is not None and error["type"] == "error", sent[-300:]
    assert str(MAX_HELD_EVENT) in error["error"]["message"]
    [event] = publisher.events
    assert (event.status, event.error_type) == ("error", "upstream_event_too_large")
    assert event.input_tokens == 7  # what was read before it is still recorded
