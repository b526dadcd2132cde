"""A batch of usage-event messages as one Avro object container, for the engine to decode.

The body of every message written with the newest schema is already an Avro record of that
schema, so a batch is one container block of the bodies laid end to end, built without
decoding anything. Each record gets one more field at its end, ``kafka_offset`` (8 bytes,
little endian), so that every decoded row names the message it came from.

The event id is the schema's first field, a 36-character string: its bytes sit at a fixed
place in the message, which is how the consumer reads the id of every message (to drop
repeats) without decoding it."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from typing import Any, Final

import fastavro.schema

from meterline.common.codec import HEADER_LENGTH, MARKER, KnownSchema

OFFSET_FIELD: Final = "kafka_offset"
_ID_LENGTH: Final = 36
_ID_LENGTH_BYTE: Final = _ID_LENGTH * 2  # Avro writes lengths zigzag-encoded
_ID_END: Final = HEADER_LENGTH + 1 + _ID_LENGTH


def avro_long(value: int) -> bytes:
    """Avro's variable-length zigzag encoding of a long."""
    value = (value << 1) ^ (value >> 63)
    out = bytearray()
    while value & ~0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def event_id_in_place(value: bytes, header: bytes) -> str | None:
    """The event id of a message whose 10-byte header is ``header``, read from its bytes; None
    when the message has another header or no 36-character id where it should be."""
    if (
        len(value) < _ID_END
        or value[HEADER_LENGTH] != _ID_LENGTH_BYTE
        or value[:HEADER_LENGTH] != header
    ):
        return None
    try:
        return value[HEADER_LENGTH + 1 : _ID_END].decode("ascii")
    except UnicodeDecodeError:
        return None


class AvroBatches:
    """Builds containers of messages written with ``schema`` (the newest schema)."""

    def __init__(self, schema: KnownSchema):
        if schema.parsed["fields"][0]["name"] != "event_id":
            raise ValueError("the usage event schema must begin with event_id")
        self._header = MARKER + schema.fingerprint
        # The canonical form: names, types and field order only (no logical types, so that
        # the engine reads started_at as the plain long it is).
        record: dict[str, Any] = json.loads(
            fastavro.schema.to_parsing_canonical_form(schema.parsed)
        )
        record["fields"].append(
            {"name": OFFSET_FIELD, "type": {"type": "fixed", "name": "KafkaOffset", "size": 8}}
        )
        self.fields: list[dict[str, Any]] = record["fields"]
        self._sync = os.urandom(16)
        metadata = {"avro.schema": json.dumps(record).encode(), "avro.codec": b"null"}
        container_header = bytearray(b"Obj\x01")
        container_header += avro_long(len(metadata))
        for key, value in metadata.items():
            container_header += avro_long(len(key)) + key.encode() + avro_long(len(value)) + value
        container_header += avro_long(0) + self._sync
        self._container_header = bytes(container_header)

    def event_id(self, value: bytes) -> str | None:
        """The event id of a message written with this schema, or None when the message is
        anything else (another schema version, or not a usage event at all)."""
        return event_id_in_place(value, self._header)

    def body(self, value: bytes) -> memoryview:
        """The Avro record of a message ``event_id`` accepted."""
        return memoryview(value)[HEADER_LENGTH:]

    def container(self, records: Sequence[tuple[int, bytes | memoryview]]) -> bytes:
        """One container of (offset, record body) pairs, in one block."""
        parts: list[bytes | memoryview] = []
        for offset, body in records:
            parts.append(body)
            parts.append(offset.to_bytes(8, "little"))
        data = b"".join(parts)
        return b"".join(
            (
                self._container_header,
                avro_long(len(records)),
                avro_long(len(data)),
                data,
                self._sync,
            )
        )
