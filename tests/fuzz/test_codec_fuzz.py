"""The usage-event codec under arbitrary input: bytes that are not an event fail with the
codec's own DecodeError and nothing else (the consumer dead-letters exactly that), and any
valid event survives encode and decode unchanged."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from meterline.common.bus import BusMessage
from meterline.common.codec import HEADER_LENGTH, MARKER, DecodeError, UsageEventCodec
from meterline.common.events import (
    API_SURFACES,
    CREDENTIAL_TYPES,
    MAX_TAG_LENGTH,
    MAX_TAGS,
    MAX_UINT32,
    MAX_USER_LENGTH,
    STATUSES,
    EventValidationError,
    UsageEvent,
)
from meterline.consumer.decode import Decoder, Rejected
from meterline.consumer.decode import decode as consumer_decode
from tests.fuzz.settings import FUZZ

CODEC = UsageEventCodec()
FAST = Decoder(CODEC)
"""The consumer's fast path for the newest schema: it must answer exactly as the codec."""
LONG = st.integers(min_value=0, max_value=2**63 - 1)
UINT32 = st.integers(min_value=0, max_value=MAX_UINT32)
# Avro strings are UTF-8: lone surrogates cannot be encoded by anyone, so they are not data.
TEXT = st.text(st.characters(exclude_categories=["Cs"]), max_size=40)
NAME = st.text(st.characters(exclude_categories=["Cs"]), min_size=1, max_size=40)


def header() -> bytes:
    event = UsageEvent(
        event_id=UsageEvent.new_id(),
        team_id="t",
        api_key_name="k",
        api_surface="chat_completions",
        started_at=datetime(2026, 1, 1, tzinfo=UTC),
        duration_ms=1,
        model_requested="p/m",
        model="m",
        provider="p",
        credential_type="system",
        streamed=False,
        status="success",
        http_status=200,
        input_tokens=1,
        output_tokens=1,
    )
    return CODEC.encode(event)[:HEADER_LENGTH]


KNOWN_HEADER = header()


def decode_or_decode_error(data: bytes) -> UsageEvent | None:
    try:
        return CODEC.decode(data)
    except DecodeError:
        return None


@FUZZ
@given(st.binary(max_size=300))
def test_arbitrary_bytes_fail_only_with_decode_error(data: bytes) -> None:
    decode_or_decode_error(data)


@FUZZ
@given(st.binary(max_size=300))
def test_a_known_header_with_a_random_body_fails_only_with_decode_error(body: bytes) -> None:
    assert KNOWN_HEADER.startswith(MARKER)
    decode_or_decode_error(KNOWN_HEADER + body)


@FUZZ
@given(st.binary(min_size=8, max_size=8), st.binary(max_size=100))
def test_an_unknown_fingerprint_is_named(fingerprint: bytes, body: bytes) -> None:
    if fingerprint == KNOWN_HEADER[2:]:
        return
    try:
        CODEC.decode(MARKER + fingerprint + body)
    except DecodeError as error:
        assert fingerprint.hex() in str(error)
    else:
        raise AssertionError("an unknown fingerprint decoded")


@st.composite
def events(draw: st.DrawFn, tokens: st.SearchStrategy[int] = LONG) -> UsageEvent:
    """Valid events, each field anywhere in what the event and the raw table allow."""
    input_tokens = draw(tokens)
    cached = draw(st.integers(0, input_tokens))
    creation = draw(st.integers(0, input_tokens - cached))
    output_tokens = draw(tokens)
    moment = draw(
        st.datetimes(
            min_value=datetime(1970, 1, 2), max_value=datetime(2200, 1, 1), timezones=st.just(UTC)
        )
    )
    tag = st.text(st.characters(exclude_categories=["Cs"]), min_size=1, max_size=MAX_TAG_LENGTH)
    return UsageEvent(
        event_id=str(draw(st.uuids())),
        team_id=draw(NAME),
        api_key_name=draw(NAME),
        api_surface=draw(st.sampled_from(sorted(API_SURFACES))),
        started_at=moment,
        duration_ms=draw(UINT32),
        model_requested=draw(TEXT),
        model=draw(NAME),
        provider=draw(NAME),
        credential_type=draw(st.sampled_from(sorted(CREDENTIAL_TYPES))),
        streamed=draw(st.booleans()),
        status=draw(st.sampled_from(sorted(STATUSES))),
        http_status=draw(st.integers(100, 599)),
        input_tokens=input_tokens,
        output_tokens=output_tokens,
        cached_input_tokens=cached,
        cache_creation_input_tokens=creation,
        cache_creation_1h_input_tokens=draw(st.integers(0, creation)),
        reasoning_tokens=draw(st.integers(0, output_tokens)),
        time_to_first_token_ms=draw(st.none() | UINT32),
        user_id=draw(
            st.none() | st.text(st.characters(exclude_categories=["Cs"]), max_size=MAX_USER_LENGTH)
        ),
        tags=draw(st.lists(tag, max_size=MAX_TAGS, unique=True)),
        finish_reason=draw(st.none() | TEXT),
        error_type=draw(st.none() | TEXT),
        raw_usage=draw(TEXT),
    )


@FUZZ
@given(events())
def test_every_valid_event_round_trips(event: UsageEvent) -> None:
    event.validate()
    data = CODEC.encode(event)
    assert data.startswith(KNOWN_HEADER)
    assert CODEC.decode(data) == event


@FUZZ
@given(events(), st.data())
def test_a_truncated_or_extended_event_fails_with_decode_error(
    event: UsageEvent, data: st.DataObject
) -> None:
    encoded = CODEC.encode(event)
    cut = data.draw(st.integers(0, len(encoded) - 1))
    assert decode_or_decode_error(encoded[:cut]) is None
    extra = data.draw(st.binary(min_size=1, max_size=8))
    assert decode_or_decode_error(encoded + extra) is None


@FUZZ
@given(st.binary(max_size=300) | st.binary(max_size=200).map(lambda body: KNOWN_HEADER + body))
def test_the_consumer_rejects_what_it_cannot_read_and_keeps_the_bytes(data: bytes) -> None:
    message = BusMessage("t", 0, 7, b"k", data)
    for result in (consumer_decode(CODEC, message), FAST.decode(message)):
        if isinstance(result, Rejected):
            assert result.reason.startswith(("undecodable: ", "invalid: ")), result.reason
            assert result.message.value == data
        else:
            result.validate()


SIGNED = st.integers(min_value=-(2**63), max_value=2**63 - 1)
BREAKING_CHANGES = st.fixed_dictionaries(
    {},
    optional={
        "input_tokens": SIGNED,
        "cached_input_tokens": SIGNED,
        "cache_creation_input_tokens": SIGNED,
        "reasoning_tokens": SIGNED,
        "duration_ms": SIGNED,
        "time_to_first_token_ms": SIGNED,
        "http_status": st.integers(min_value=-(2**31), max_value=2**31 - 1),
        "status": st.text(max_size=12),
        "credential_type": st.text(max_size=12),
        "team_id": st.text(max_size=3),
        "event_id": st.text(max_size=40),
        "tags": st.lists(st.text(max_size=70), max_size=12),
    },
)
"""Changes a foreign or buggy producer could make: the Avro schema allows negative counts
and any strings."""


@FUZZ
@given(events(), BREAKING_CHANGES)
def test_the_consumer_refuses_exactly_the_events_that_fail_validation(
    event: UsageEvent, changes: dict[str, Any]
) -> None:
    """Events a foreign or buggy producer could encode (the Avro schema allows negative
    counts and any strings): the consumer keeps the valid ones and dead-letters the rest."""
    for name, value in changes.items():
        setattr(event, name, value)
    try:
        event.validate()
        valid = True
    except EventValidationError:
        valid = False
    data = CODEC.encode(event)
    message = BusMessage("t", 0, 7, b"k", data)
    generic, fast = consumer_decode(CODEC, message), FAST.decode(message)
    if valid:
        assert isinstance(generic, UsageEvent)
        assert fast == generic == event
        return
    for result in (generic, fast):
        assert isinstance(result, Rejected)
        # An event id that is no UUID fails already in the Avro reader (its logical type).
        bad_id = "event_id" in changes
        assert result.reason.startswith(("invalid: ", "undecodable: ") if bad_id else "invalid: ")
