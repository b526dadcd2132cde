"""The ingress spool: usage events that cannot wait in memory, on local disk until Kafka
takes them.

Layout: a directory of append-only segment files named by a growing sequence number. Each
segment starts with ``MAGIC``; then records framed as ``common/framing.py`` says.

Guarantees, and what a crash leads to:

- ``append()`` hands each record to the kernel in one ``write``: once it returned, the record
  survives the process being killed (not a power cut: the file is fsynced only when a
  segment is sealed and on ``close()``).
- A crash in the middle of a write leaves a torn tail. Reading stops at the first record
  whose length runs past the end of the file or whose checksum does not match, and the rest
  of that segment is ignored; every earlier record is read. A reopened spool never appends
  to an old segment, so a torn tail stays at the end.
- A segment is deleted only when it is sealed (no longer written), every record in it has
  been read, and every one of those was acknowledged (``acknowledge``). Progress within a
  segment is not persisted: after a restart a partly sent segment is sent again from its
  start, so Kafka may hold those events twice; the consumer drops repeats by event id.
- Past ``max_bytes`` on disk, ``append()`` refuses records and says how many it took; the
  caller counts and reports the rest as dropped.

The spool is used from one event loop thread only; it is not thread-safe.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from meterline.common.framing import HEADER, Record, decode_records, encode_record, record_size

log = logging.getLogger("meterline.ingress.spool")

MAGIC = b"MLSPOOL1"
SUFFIX = ".seg"
_READ_CHUNK = 1 << 20


@dataclass
class _Segment:
    sequence: int
    path: Path
    size: int
    sealed: bool
    read_position: int = len(MAGIC)
    read_records: int = 0
    acknowledged: int = 0
    exhausted: bool = False
    """Sealed and read to its end (or to a torn or damaged tail)."""

    @property
    def done(self) -> bool:
        return self.exhausted and self.acknowledged >= self.read_records


class Spool:
    """Append-only segments in ``directory``, at most ``max_bytes`` of them on disk.

    ``append`` writes; ``read`` hands out records not handed out before, oldest first, each
    with the sequence number of its segment; ``acknowledge(sequence)`` says one of them
    reached Kafka. ``waiting`` counts records on disk not yet acknowledged."""

    def __init__(self, directory: Path, max_bytes: int, segment_bytes: int = 8 << 20):
        if max_bytes <= len(MAGIC):
            raise ValueError("the spool's max_bytes is too small to hold one record")
        self.directory = directory
        self.max_bytes = max_bytes
        self.segment_bytes = min(segment_bytes, max_bytes)
        self._segments: dict[int, _Segment] = {}
        self._writer: _Segment | None = None
        self._fd: int | None = None
        self._next_sequence = 0
        self.waiting = 0
        self.appended = 0
        self.damaged_segments = 0

    @property
    def bytes(self) -> int:
        return sum(segment.size for segment in self._segments.values())

    def open(self) -> None:
        """Find the segments a previous run left behind (all sealed now) and count their
        records, so the metrics are right from the start."""
        self.directory.mkdir(parents=True, exist_ok=True)
        for path in sorted(self.directory.glob(f"*{SUFFIX}")):
            try:
                sequence = int(path.stem)
            except ValueError:
                continue
            segment = _Segment(sequence, path, path.stat().st_size, sealed=True)
            self._segments[sequence] = segment
            self._next_sequence = max(self._next_sequence, sequence + 1)
            self.waiting += self._count(segment)
        if self._segments:
            log.info(
                "spool %s holds %d usage events from an earlier run (%d bytes); sending them",
                self.directory,
                self.waiting,
                self.bytes,
            )

    def _count(self, segment: _Segment) -> int:
        count = 0
        position = 0
        with segment.path.open("rb") as file:
            if file.read(len(MAGIC)) != MAGIC:
                return 0
            data = b""
            while chunk := file.read(_READ_CHUNK):
                data = data[position:] + chunk
                records, position, damaged = decode_records(data)
                count += len(records)
                if damaged:
                    break
        return count

    def append(self, records: Sequence[Record]) -> int:
        """Write records until the disk limit; return how many were written."""
        written = 0
        for key, value in records:
            encoded = encode_record(key, value)
            writer = self._writer
            if writer is not None and writer.size + len(encoded) > self.segment_bytes:
                self._seal()
                writer = None
            new_segment_bytes = len(MAGIC) if writer is None else 0
            if self.bytes + new_segment_bytes + len(encoded) > self.max_bytes:
                break
            if writer is None:
                writer = self._start_segment()
            assert self._fd is not None
            os.write(self._fd, encoded)
            writer.size += len(encoded)
            written += 1
        self.waiting += written
        self.appended += written
        return written

    def _start_segment(self) -> _Segment:
        sequence = self._next_sequence
        self._next_sequence += 1
        path = self.directory / f"{sequence:016d}{SUFFIX}"
        self.directory.mkdir(parents=True, exist_ok=True)
        self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND, 0o600)
        os.write(self._fd, MAGIC)
        segment = _Segment(sequence, path, len(MAGIC), sealed=False)
        self._segments[sequence] = segment
        self._writer = segment
        return segment

    def _seal(self) -> None:
        if self._fd is not None:
            os.fsync(self._fd)
            os.close(self._fd)
        self._fd = None
        if self._writer is not None:
            self._writer.sealed = True
            self._writer = None

    def read(self, max_records: int) -> list[tuple[Record, int]]:
        """Up to ``max_records`` records not handed out yet, oldest segment first."""
        out: list[tuple[Record, int]] = []
        for sequence in sorted(self._segments):
            if len(out) >= max_records:
                break
            segment = self._segments[sequence]
            if segment.exhausted:
                continue
            for record in self._read_segment(segment, max_records - len(out)):
                out.append((record, sequence))
            if (
                not segment.sealed
                and segment.read_records
                and segment.read_position >= segment.size
            ):
                # Everything written so far is handed out: seal the segment so that it can
                # be deleted once acknowledged; new records start a fresh one.
                self._seal()
                segment.exhausted = True
            self._delete_if_done(segment)
        return out

    def _read_segment(self, segment: _Segment, max_records: int) -> list[Record]:
        records: list[Record] = []
        with segment.path.open("rb") as file:
            if segment.read_records == 0 and file.read(len(MAGIC)) != MAGIC:
                self._give_up(segment, "not a spool file")
                return records
            while len(records) < max_records and segment.read_position < segment.size:
                remaining = segment.size - segment.read_position
                file.seek(segment.read_position)
                data = file.read(min(_READ_CHUNK, remaining))
                if len(data) >= HEADER.size:
                    # A record longer than one chunk: read exactly that record.
                    needed = HEADER.size + HEADER.unpack_from(data)[0]
                    if len(data) < needed <= remaining:
                        file.seek(segment.read_position)
                        data = file.read(needed)
                found, used, damaged = decode_records(data)
                if len(found) > max_records - len(records):
                    found = found[: max_records - len(records)]
                    used = sum(record_size(key, value) for key, value in found)
                    damaged = False
                segment.read_position += used
                segment.read_records += len(found)
                records.extend(found)
                if damaged:
                    self._give_up(segment, "a damaged record")
                    break
                if not found:
                    # Writes are whole records, so only a crash leaves a partial one.
                    if segment.sealed:
                        self._give_up(segment, "a torn tail")
                    break
        if segment.sealed and segment.read_position >= segment.size:
            segment.exhausted = True
        return records

    def _give_up(self, segment: _Segment, what: str) -> None:
        log.warning(
            "spool segment %s: %s at byte %d; the %d bytes after it are skipped",
            segment.path,
            what,
            segment.read_position,
            segment.size - segment.read_position,
        )
        self.damaged_segments += 1
        segment.exhausted = True

    def acknowledge(self, sequence: int) -> None:
        """One record of segment ``sequence`` reached Kafka."""
        self.waiting = max(0, self.waiting - 1)
        segment = self._segments.get(sequence)
        if segment is None:
            return
        segment.acknowledged += 1
        self._delete_if_done(segment)

    def _delete_if_done(self, segment: _Segment) -> None:
        if segment.done:
            del self._segments[segment.sequence]
            segment.path.unlink(missing_ok=True)

    def close(self) -> None:
        """Seal the open segment. What is not acknowledged stays on disk for the next run."""
        self._seal()
