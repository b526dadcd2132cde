"""Avro single-object encoding of usage events.

Each message is ``C3 01`` + the writer schema's 8-byte CRC-64-AVRO fingerprint (little
endian) + the Avro body. A consumer therefore reads every schema version it ships without a
schema registry: it looks the fingerprint up among ``schemas/avro/usage_event.v*.avsc`` and
resolves the body from that writer schema to the newest reader schema (Avro's evolution
rules: fields added later carry defaults).
"""

from __future__ import annotations

import io
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import fastavro
import fastavro.schema

from meterline.common.events import UsageEvent

MARKER: Final = b"\xc3\x01"
HEADER_LENGTH: Final = 10
_SCHEMA_FILE = re.compile(r"^usage_event\.v(\d+)\.avsc$")


class DecodeError(ValueError):
    """Bytes that are not a usage event this consumer can read; the message says why."""


def schema_dir() -> Path:
    """Where the .avsc files are: inside the installed package, or in the source tree."""
    here = Path(__file__).resolve()
    packaged = here.parents[1] / "_schemas" / "avro"
    if packaged.is_dir():
        return packaged
    return here.parents[3] / "schemas" / "avro"


@dataclass(frozen=True, slots=True)
class KnownSchema:
    version: int
    parsed: Any
    fingerprint: bytes


def load_schemas(directory: Path | None = None) -> list[KnownSchema]:
    """Every usage-event schema version, oldest first."""
    directory = directory or schema_dir()
    found: list[KnownSchema] = []
    for path in directory.iterdir():
        match = _SCHEMA_FILE.match(path.name)
        if not match:
            continue
        parsed = fastavro.parse_schema(json.loads(path.read_text()))
        canonical = fastavro.schema.to_parsing_canonical_form(parsed)
        fingerprint = bytes.fromhex(fastavro.schema.fingerprint(canonical, "CRC-64-AVRO"))
        found.append(KnownSchema(int(match.group(1)), parsed, fingerprint))
    if not found:
        raise FileNotFoundError(f"no usage_event.v*.avsc in {directory}")
    return sorted(found, key=lambda s: s.version)


class UsageEventCodec:
    """Encodes with one writer schema (the newest by default), decodes every known version."""

    def __init__(self, schemas: list[KnownSchema] | None = None, writer_version: int | None = None):
        self._schemas = schemas or load_schemas()
        self._reader = self._schemas[-1]
        self._writer = (
            self._reader
            if writer_version is None
            else next(s for s in self._schemas if s.version == writer_version)
        )
        self._by_fingerprint = {s.fingerprint: s for s in self._schemas}
        self._header = MARKER + self._writer.fingerprint

    @property
    def writer_version(self) -> int:
        return self._writer.version

    @property
    def reader_schema(self) -> KnownSchema:
        """The newest schema: every version is resolved to it when decoding."""
        return self._reader

    def encode_record(self, record: dict[str, Any]) -> bytes:
        buffer = io.BytesIO()
        buffer.write(self._header)
        fastavro.schemaless_writer(buffer, self._writer.parsed, record)
        return buffer.getvalue()

    def encode(self, event: UsageEvent) -> bytes:
        return self.encode_record(event.to_record())

    def decode_record(self, data: bytes) -> dict[str, Any]:
        if len(data) < HEADER_LENGTH or data[:2] != MARKER:
            raise DecodeError("not Avro single-object encoding (missing the C3 01 marker)")
        writer = self._by_fingerprint.get(data[2:HEADER_LENGTH])
        if writer is None:
            raise DecodeError(f"unknown schema fingerprint {data[2:HEADER_LENGTH].hex()}")
        buffer = io.BytesIO(data)
        buffer.seek(HEADER_LENGTH)
        try:
            record = fastavro.schemaless_reader(buffer, writer.parsed, self._reader.parsed)
        except Exception as error:  # fastavro raises many types on corrupt bodies
            raise DecodeError(f"corrupt Avro body for schema v{writer.version}: {error}") from None
        if buffer.tell() != len(data):
            raise DecodeError(f"{len(data) - buffer.tell()} trailing bytes after the Avro body")
        if not isinstance(record, dict):
            raise DecodeError("Avro body is not a record")
        return record

    def decode(self, data: bytes) -> UsageEvent:
        record = self.decode_record(data)
        try:
            return UsageEvent.from_record(record)
        except (KeyError, TypeError, ValueError) as error:
            raise DecodeError(f"record does not fit the usage event: {error}") from None
