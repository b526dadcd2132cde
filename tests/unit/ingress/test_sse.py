"""Server-sent events: whole events out of any chunking, both line endings, the bounds on an
unfinished event, and events written as the providers write them."""

from __future__ import annotations

import json

import pytest

from meterline.ingress.sse import (
    MAX_HELD_EVENT,
    MAX_SCAN_TAIL,
    EventTooLarge,
    Splitter,
    data_event,
    event_data,
    events,
    is_done,
    last_event_end,
    typed_event,
)

STREAM = (
    b'data: {"n":1}\n\n'
    b": keep-alive comment\n\n"
    b'event: message_delta\r\ndata: {"n":2}\r\n\r\n'
    b'data: {"n":3,\n'
    b'data: "more":true}\n\n'
    b"data: [DONE]\n\n"
)


def payloads(block: bytes) -> list[dict[str, object] | None]:
    return [event_data(event) for event in events(block)]


@pytest.mark.parametrize("size", [1, 2, 3, 7, 16, len(STREAM)])
@pytest.mark.parametrize("hold", [True, False])
def test_any_chunking_gives_the_same_whole_events(size: int, hold: bool) -> None:
    splitter = Splitter(hold=hold)
    blocks = [splitter.feed(STREAM[i : i + size]) for i in range(0, len(STREAM), size)]
    blocks.append(splitter.finish())
    assert b"".join(blocks) == STREAM
    for block in blocks:
        assert block == b"" or last_event_end(block) == len(block)
    assert payloads(b"".join(blocks)) == [
        {"n": 1},
        None,  # a comment carries no data
        {"n": 2},
        {"n": 3, "more": True},  # data over two lines joins with a newline
        None,  # [DONE] is no JSON
    ]


def test_where_the_last_event_ends_with_either_line_ending() -> None:
    assert last_event_end(b"data: 1") == 0
    assert last_event_end(b"data: 1\n\ndata: 2") == 9
    assert last_event_end(b"data: 1\r\n\r\ndata: 2") == 11
    assert last_event_end(b"data: 1\n\ndata: 2\r\n\r\n") == len(b"data: 1\n\ndata: 2\r\n\r\n")


def test_the_rest_of_a_stream_without_its_blank_line_comes_at_the_end() -> None:
    splitter = Splitter(hold=True)
    assert splitter.feed(b'data: {"a":1}\n\ndata: {"b"') == b'data: {"a":1}\n\n'
    assert splitter.feed(b":2}") == b""
    assert splitter.finish() == b'data: {"b":2}'
    assert splitter.finish() == b""


def test_a_stream_only_read_gives_up_an_oversized_event() -> None:
    splitter = Splitter(hold=False)
    assert splitter.feed(b"data: " + b"x" * MAX_SCAN_TAIL) == b""
    # Given up: what follows is scanned from the next event on, not held with it.
    assert splitter.feed(b"x\n\ndata: {}\n\n") == b"x\n\ndata: {}\n\n"
    assert splitter.finish() == b""


def test_a_rewritten_stream_refuses_an_event_past_its_bound() -> None:
    splitter = Splitter(hold=True)
    big = b"data: " + b"x" * (MAX_SCAN_TAIL + 10)
    assert splitter.feed(big) == b""  # held: past the scan bound, within the held one
    assert splitter.finish() == big
    with pytest.raises(EventTooLarge, match=str(MAX_HELD_EVENT)):
        splitter.feed(b"data: " + b"x" * MAX_HELD_EVENT)


def test_events_are_written_as_the_providers_write_them() -> None:
    assert data_event({"é": [1, 2]}) == 'data: {"é":[1,2]}\n\n'.encode()
    typed = typed_event({"type": "message_stop"})
    assert typed == b'event: message_stop\ndata: {"type":"message_stop"}\n\n'
    assert event_data(typed) == {"type": "message_stop"}
    assert json.loads(data_event([1])[6:]) == [1]
    assert event_data(data_event([1])) is None  # data that is not an object
    assert is_done(b"data: [DONE]\n\n") and is_done(b"data: [DONE]")
    assert not is_done(b'data: {"done":"[DONE]x"}\n\n')
