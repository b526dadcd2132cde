"""How a (key, value) record is framed in an append-only segment file: the ingress spool
and the embedded default's local log write the same frames.

A frame is ``length (u32) | crc32 (u32) | payload``, the payload ``key length (u32) | key |
value``, big-endian. The checksum is what tells a torn or damaged tail (a crash in the
middle of a write, a bad disk) from a record."""

from __future__ import annotations

import struct
import zlib

Record = tuple[bytes, bytes]
"""(key, value)."""

HEADER = struct.Struct(">II")
_KEY_LENGTH = struct.Struct(">I")


def encode_record(key: bytes, value: bytes) -> bytes:
    payload = _KEY_LENGTH.pack(len(key)) + key + value
    return HEADER.pack(len(payload), zlib.crc32(payload)) + payload


def record_size(key: bytes, value: bytes) -> int:
    return HEADER.size + _KEY_LENGTH.size + len(key) + len(value)


def frame_size(data: bytes, position: int = 0) -> int | None:
    """The whole size of the frame starting at ``position``, once its header is there."""
    if position + HEADER.size > len(data):
        return None
    return HEADER.size + int(HEADER.unpack_from(data, position)[0])


def decode_records(data: bytes, start: int = 0) -> tuple[list[Record], int, bool]:
    """Whole records in ``data[start:]``: the records, the position after the last whole
    one, and whether a damaged record (bad checksum or lengths) stopped the scan. A record
    cut short by the end of ``data`` is not damage: it may be completed later, or be the
    torn tail of a crash."""
    records: list[Record] = []
    position = start
    end = len(data)
    while position + HEADER.size <= end:
        length, checksum = HEADER.unpack_from(data, position)
        body = position + HEADER.size
        if body + length > end:
            break
        payload = data[body : body + length]
        if length < _KEY_LENGTH.size or zlib.crc32(payload) != checksum:
            return records, position, True
        (key_length,) = _KEY_LENGTH.unpack_from(payload)
        if _KEY_LENGTH.size + key_length > length:
            return records, position, True
        key_end = _KEY_LENGTH.size + key_length
        records.append((payload[_KEY_LENGTH.size : key_end], payload[key_end:]))
        position = body + length
    return records, position, False
