"""A message's event id, and bytes -> a validated UsageEvent (or the reason it cannot be
one) wherever Python decodes."""

from __future__ import annotations

import io
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Final

import fastavro

from meterline.common.bus import BusMessage
from meterline.common.codec import HEADER_LENGTH, MARKER, DecodeError, UsageEventCodec
from meterline.common.events import EventValidationError, UsageEvent
from meterline.consumer.avro_block import event_id_in_place

EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class Rejected:
    message: BusMessage
    reason: str
    event_id: str | None = None
    """The id, where the message has one that could be read: the pipeline had counted it
    among its batch's ids, and forgets it, so that a valid repeat is not taken for a
    duplicate."""


def decode(codec: UsageEventCodec, message: BusMessage) -> UsageEvent | Rejected:
    try:
        event = codec.decode(message.value)
    except DecodeError as error:
        return Rejected(message, f"undecodable: {error}")
    try:
        event.validate()
    except EventValidationError as error:
        return Rejected(message, f"invalid: {error}", event.event_id)
    return event


class Decoder:
    """``decode`` with a fast path for events written with the newest schema (nearly all of
    them): the body is read with that schema minus its logical types and without schema
    resolution, which halves fastavro's time per record; the event id and the timestamp are
    converted here, exactly. Any other version goes through the codec's full resolution."""

    def __init__(self, codec: UsageEventCodec):
        self._codec = codec
        newest = codec.reader_schema
        self._fingerprint = newest.fingerprint
        self._header = MARKER + newest.fingerprint
        self._plain_schema = fastavro.parse_schema(_without_logical_types(newest.parsed))

    def event_id(self, message: BusMessage) -> str | Rejected:
        """The message's event id: read from its bytes when it has the newest schema (nearly
        always), else by decoding it, which rejects a message that is no usage event."""
        event_id = event_id_in_place(message.value, self._header)
        if event_id is not None:
            return event_id
        result = self.decode(message)
        return result if isinstance(result, Rejected) else result.event_id

    def decode(self, message: BusMessage) -> UsageEvent | Rejected:
        data = message.value
        if data[2:HEADER_LENGTH] != self._fingerprint or data[:2] != MARKER:
            return decode(self._codec, message)
        try:
            event = self._decode_newest(data)
            event.validate()
        except DecodeError as error:
            return Rejected(message, f"undecodable: {error}", event_id_in_place(data, self._header))
        except EventValidationError as error:
            return Rejected(message, f"invalid: {error}", event_id_in_place(data, self._header))
        return event

    def _decode_newest(self, data: bytes) -> UsageEvent:
        buffer = io.BytesIO(data)
        buffer.seek(HEADER_LENGTH)
        try:
            record = fastavro.schemaless_reader(buffer, self._plain_schema, None)
        except Exception as error:  # fastavro raises many types on corrupt bodies
            raise DecodeError(f"corrupt Avro body: {error}") from None
        if buffer.tell() != len(data):
            raise DecodeError(f"{len(data) - buffer.tell()} trailing bytes after the Avro body")
        if not isinstance(record, dict):
            raise DecodeError("Avro body is not a record")
        try:
            # timestamp-micros, exactly (a float division could be a microsecond off).
            record["started_at"] = EPOCH + timedelta(microseconds=record["started_at"])
        except (KeyError, TypeError, ValueError, OverflowError) as error:
            raise DecodeError(f"record does not fit the usage event: {error}") from None
        try:
            # The newest schema's fields are the event's fields, all present: no defaults
            # to fill in, nothing to convert.
            return UsageEvent(**record)
        except TypeError:
            pass  # a schema field the event does not know yet: from_record skips it
        try:
            return UsageEvent.from_record(record)
        except (KeyError, TypeError, ValueError, OverflowError) as error:
            raise DecodeError(f"record does not fit the usage event: {error}") from None


def _without_logical_types(schema: Any) -> Any:
    if isinstance(schema, dict):
        # Also without fastavro's own bookkeeping keys, so that the result parses afresh.
        return {
            key: _without_logical_types(value)
            for key, value in schema.items()
            if key != "logicalType" and not key.startswith("__")
        }
    if isinstance(schema, list):
        return [_without_logical_types(item) for item in schema]
    return schema
