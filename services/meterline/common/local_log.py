"""The embedded default's bus on disk: a durable local log in the data directory.

The ingress appends each usage event before the caller's answer is finished, and the
consumer pipeline reads the log from its last committed offset, after a restart too.

Layout of the directory:

- ``log-id``: made once, when the log is created. It is part of ``topic``, and so of every
  batch's identity in the warehouse (``bus.py``): a wiped log starts a new identity
  instead of reusing offsets that earlier batches were recorded under.
- ``committed``: the next offset to read (everything before it is in the warehouse),
  replaced atomically after each batch.
- ``<first offset, 20 digits>.log``: append-only segments, each ``MAGIC`` and then records
  framed as ``framing.py`` says, with consecutive offsets from the one in its name.

Guarantees, and what a crash leads to:

- ``publish_nowait`` hands each record to the kernel in one ``write``: once it returned, the
  record survives the process being killed (the page cache is the kernel's).
- A power loss can take what was not yet fsynced: the log is fsynced every
  ``fsync_seconds`` (0: after every append, before the answer goes out) and always before
  the consumer is handed a record, so the warehouse's batch log never names a record that a
  power loss could take away and whose offset could then be given to another one.
- Offsets never go back: a reopened log appends from the end of its last segment, or from
  the committed offset if that is further (a power loss took the tail).
- A crash in the middle of a write leaves a torn record at the end of the last segment;
  opening the log cuts it off (it was never answered: the answer waits for the append).
  A damaged record found later, in a sealed segment, ends that segment for the reader (an
  ERROR log says how many bytes were skipped). A reopened log never appends to an old
  segment.
- Segments wholly before the committed offset are deleted. Past ``max_bytes`` on disk (a
  consumer that cannot write for a long time), appends are refused and counted in
  ``dropped``.

Used from one event loop thread; only fsyncs and the committed file run in worker threads.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import os
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from meterline.common.bus import BusMessage
from meterline.common.framing import decode_records, encode_record, frame_size
from meterline.common.waiting import wait_event

log = logging.getLogger("meterline.local_log")

MAGIC = b"MLLOG001"
SUFFIX = ".log"
LOG_ID_FILE = "log-id"
COMMITTED_FILE = "committed"
LOCK_FILE = "lock"
_READ_CHUNK = 1 << 20
READ_AT_MOST = 10_000
"""Records one ``get_batch`` hands out, whatever it is asked for: reading takes a few
microseconds a record on the event loop the gateway shares, and the pipeline gathers a
batch over several polls anyway."""
SYNC_BEFORE_READ_EVERY = 0.02
"""The fsync a reader waits for runs at most this often (seconds): a consumer polling a
record at a time would otherwise fsync for each; its freshness pays at most this much."""


@dataclass(eq=False)
class _Segment:
    first_offset: int
    path: Path
    size: int
    """Bytes of whole records (and the magic): the reader never reads past it."""


class LocalLog:
    """A log in ``directory``, at most ``max_bytes`` on disk."""

    def __init__(
        self,
        directory: Path,
        topic: str = "usage-events",
        *,
        max_bytes: int = 1 << 30,
        segment_bytes: int = 64 << 20,
        fsync_seconds: float = 1.0,
    ):
        if max_bytes <= len(MAGIC):
            raise ValueError("the local log's max_bytes is too small to hold one record")
        self.directory = directory
        self._base_topic = topic
        self.topic = topic
        self.max_bytes = max_bytes
        self.segment_bytes = min(segment_bytes, max_bytes)
        self.fsync_seconds = fsync_seconds
        self.dropped = 0
        self._segments: list[_Segment] = []
        self._bytes = 0
        self._next_offset = 0
        self._committed = 0
        # The segment being appended to (None until the first append after opening).
        self._writing: _Segment | None = None
        self._fd: int | None = None
        # Descriptors of segments sealed since the last fsync: the next fsync closes them.
        self._sealed_fds: list[int] = []
        self._directory_changed = False
        self._synced_offset = 0
        self._synced_at = 0.0
        self._sync_lock = asyncio.Lock()
        self._syncer: asyncio.Task[None] | None = None
        # The reader: the segment it is in, its byte position there and its next offset.
        self._reading: _Segment | None = None
        self._read_fd: int | None = None
        self._read_position = 0
        self._read_offset = 0
        self._appended = asyncio.Event()
        self._opened = False
        self._lock_fd: int | None = None

    # Opening and closing

    def open(self) -> None:
        """Find the log's id, committed offset and segments; cut a torn tail off."""
        self.directory.mkdir(parents=True, exist_ok=True)
        self._lock_directory()
        self.topic = f"{self._base_topic}@log-{self._log_id()}"
        committed = self.directory / COMMITTED_FILE
        if committed.exists():
            self._committed = int(committed.read_text().strip() or 0)
        for path in sorted(self.directory.glob(f"*{SUFFIX}")):
            try:
                first = int(path.stem)
            except ValueError:
                continue
            self._segments.append(_Segment(first, path, path.stat().st_size))
        self._segments.sort(key=lambda segment: segment.first_offset)
        end = self._committed
        if self._segments:
            last = self._segments[-1]
            count, valid = self._scan(last)
            if valid < last.size:
                log.warning(
                    "local log %s: a torn record at byte %d of %s (a crash while writing); "
                    "its %d bytes are cut off",
                    self.directory,
                    valid,
                    last.path.name,
                    last.size - valid,
                )
                os.truncate(last.path, valid)
                last.size = valid
            end = max(end, last.first_offset + count)
            if count == 0:
                # No record in it (a crash right after it was created, or not a segment):
                # the next segment would start at the same offset, under the same name.
                self._segments.pop()
                if last.size <= len(MAGIC):
                    last.path.unlink()
                else:
                    log.error("local log %s: %s is no segment; set aside", self.directory, last)
                    last.path.rename(last.path.with_suffix(".damaged"))
        self._bytes = sum(segment.size for segment in self._segments)
        self._next_offset = self._synced_offset = end
        self._seek(self._committed)
        self._opened = True
        if self.pending:
            log.info(
                "local log %s holds %d usage events not yet in the warehouse; reading them",
                self.directory,
                self.pending,
            )

    def _lock_directory(self) -> None:
        # A second process on the same log would cut off what the first is writing as a
        # torn tail, and both would number their records alike. The lock goes with the
        # process, however it ends.
        fd = os.open(self.directory / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise RuntimeError(
                f"the local log {self.directory} is in use by another process "
                "(one meterline all-in-one per data directory)"
            ) from None
        self._lock_fd = fd

    def _log_id(self) -> str:
        path = self.directory / LOG_ID_FILE
        if path.exists():
            return path.read_text().strip()
        log_id = uuid.uuid4().hex[:12]
        _replace_durably(path, log_id)
        return log_id

    def _scan(self, segment: _Segment) -> tuple[int, int]:
        """How many whole records ``segment`` holds, and where the last one ends."""
        with segment.path.open("rb") as file:
            if file.read(len(MAGIC)) != MAGIC:
                # Shorter than the magic: torn while being created; else not a log segment.
                return 0, 0 if segment.size < len(MAGIC) else segment.size
            count, position, data = 0, len(MAGIC), b""
            while chunk := file.read(_READ_CHUNK):
                data += chunk
                records, used, damaged = decode_records(data)
                count += len(records)
                position += used
                data = data[used:]
                if damaged:
                    break
        return count, position

    async def start(self) -> None:
        """Start fsyncing the log every ``fsync_seconds``; opens it first if need be."""
        if not self._opened:
            await asyncio.to_thread(self.open)
        if self.fsync_seconds > 0 and self._syncer is None:
            self._syncer = asyncio.create_task(self._sync_every(), name="local-log-fsync")

    async def close(self) -> None:
        """Fsync and close. What is not committed is read again by the next run."""
        if self._syncer is not None:
            self._syncer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._syncer
            self._syncer = None
        await self.sync()
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        self._writing = None
        self._close_reader()
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None
        self._opened = False

    # Appending

    def publish_nowait(self, key: bytes | None, value: bytes) -> bool:
        if not self._opened:
            raise RuntimeError("LocalLog.open() was not called")
        try:
            return self._append(key or b"", value)
        except OSError:
            self.dropped += 1
            log.exception("appending to the local log %s failed", self.directory)
            return False

    def _append(self, key: bytes, value: bytes) -> bool:
        record = encode_record(key, value)
        writing = self._writing
        if writing is not None and writing.size + len(record) > self.segment_bytes:
            self._seal()
            writing = None
        new_segment = len(MAGIC) if writing is None else 0
        if self._bytes + new_segment + len(record) > self.max_bytes:
            self.dropped += 1
            return False
        if writing is None:
            writing = self._start_segment()
        assert self._fd is not None
        written = os.write(self._fd, record)
        if written != len(record):
            # A full disk: take the partial record back, so the next one starts where the
            # reader expects a record.
            os.ftruncate(self._fd, writing.size)
            raise OSError(f"short write to {writing.path} ({written} of {len(record)} bytes)")
        writing.size += len(record)
        self._bytes += len(record)
        self._next_offset += 1
        if self.fsync_seconds <= 0:
            os.fdatasync(self._fd)
            self._synced_offset = self._next_offset
        self._appended.set()
        return True

    def _start_segment(self) -> _Segment:
        path = self.directory / f"{self._next_offset:020d}{SUFFIX}"
        self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND, 0o600)
        os.write(self._fd, MAGIC)
        segment = _Segment(self._next_offset, path, len(MAGIC))
        self._segments.append(segment)
        self._bytes += len(MAGIC)
        self._writing = segment
        self._directory_changed = True
        if self.fsync_seconds <= 0:
            _fsync_directory(self.directory)
            self._directory_changed = False
        return segment

    def _seal(self) -> None:
        # Its last fsync runs in the next sync(), off the event loop.
        if self._fd is not None:
            self._sealed_fds.append(self._fd)
        self._fd = None
        self._writing = None

    # Durability

    async def sync(self) -> None:
        """Everything appended so far, fsynced (in a worker thread)."""
        async with self._sync_lock:
            target = self._next_offset
            if self._synced_offset >= target and not self._sealed_fds:
                return
            sealed, self._sealed_fds = self._sealed_fds, []
            active = os.dup(self._fd) if self._fd is not None else None
            directory_changed, self._directory_changed = self._directory_changed, False

            def fsync() -> None:
                for fd in sealed:
                    try:
                        os.fdatasync(fd)
                    finally:
                        os.close(fd)
                if active is not None:
                    try:
                        os.fdatasync(active)
                    finally:
                        os.close(active)
                if directory_changed:
                    _fsync_directory(self.directory)

            await asyncio.to_thread(fsync)
            self._synced_offset = max(self._synced_offset, target)
            self._synced_at = time.monotonic()

    async def _sync_every(self) -> None:
        while True:
            await asyncio.sleep(self.fsync_seconds)
            try:
                await self.sync()
            except OSError:
                log.exception("fsyncing the local log %s failed", self.directory)

    # Reading

    @property
    def pending(self) -> int:
        return max(0, self._next_offset - self._read_offset)

    async def get_batch(self, max_messages: int, timeout: float) -> list[BusMessage]:
        max_messages = min(max_messages, READ_AT_MOST)
        messages = self._read(max_messages)
        if not messages and timeout > 0:
            self._appended.clear()
            messages = self._read(max_messages)
            if not messages:
                await wait_event(self._appended, timeout)
                messages = self._read(max_messages)
        if messages and self._synced_offset <= messages[-1].offset:
            wait = self._synced_at + SYNC_BEFORE_READ_EVERY - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
            await self.sync()
        return messages

    def _seek(self, offset: int) -> None:
        """Put the reader at ``offset``: in the last segment that starts at or before it."""
        before = [segment for segment in self._segments if segment.first_offset <= offset]
        self._read_offset = offset
        if not before:
            return
        self._open_reader(before[-1])
        while self._read_offset < offset:
            skipped = self._read(min(offset - self._read_offset, 10_000), this_segment=True)
            if not skipped:
                break
        # A committed offset past the end of that segment (a power loss took its tail):
        # the next segment starts further on anyway.
        self._read_offset = max(self._read_offset, offset)

    def _open_reader(self, segment: _Segment) -> None:
        self._close_reader()
        self._reading = segment
        self._read_fd = os.open(segment.path, os.O_RDONLY)
        self._read_position = len(MAGIC)
        self._read_offset = segment.first_offset
        if os.pread(self._read_fd, len(MAGIC), 0) != MAGIC:
            self._skip_rest(segment, "not a local log segment")

    def _close_reader(self) -> None:
        if self._read_fd is not None:
            os.close(self._read_fd)
        self._read_fd = None
        self._reading = None

    def _next_segment(self) -> _Segment | None:
        reading = self._reading
        for segment in self._segments:
            if reading is None or segment.first_offset > reading.first_offset:
                return segment
        return None

    def _skip_rest(self, segment: _Segment, what: str) -> None:
        log.error(
            "local log segment %s: %s at byte %d; the %d bytes after it are skipped",
            segment.path,
            what,
            self._read_position,
            segment.size - self._read_position,
        )
        self._read_position = segment.size

    def _read(self, max_messages: int, *, this_segment: bool = False) -> list[BusMessage]:
        messages: list[BusMessage] = []
        while len(messages) < max_messages:
            segment = self._reading
            if segment is None or self._read_position >= segment.size:
                if this_segment:
                    break
                following = self._next_segment()
                if following is None:
                    break
                self._open_reader(following)
                continue
            assert self._read_fd is not None
            left = segment.size - self._read_position
            data = os.pread(self._read_fd, min(_READ_CHUNK, left), self._read_position)
            needed = frame_size(data)
            if needed is not None and len(data) < needed <= left:
                data = os.pread(self._read_fd, needed, self._read_position)  # a large record
            records, used, damaged = decode_records(data)
            if len(records) > max_messages - len(messages):
                records = records[: max_messages - len(messages)]
                used = _frames_length(data, len(records))
                damaged = False
            offset = self._read_offset
            topic = self.topic
            for key, value in records:
                messages.append(BusMessage(topic, 0, offset, key or None, value))
                offset += 1
            self._read_offset = offset
            self._read_position += used
            if damaged or not records:
                # Appends are whole records up to ``size``: anything else is damage.
                self._skip_rest(segment, "a damaged record")
        return messages

    # Committing

    async def commit(self, next_offset: int) -> None:
        if next_offset <= self._committed:
            return
        await asyncio.to_thread(_replace_durably, self.directory / COMMITTED_FILE, str(next_offset))
        self._committed = next_offset
        self._delete_committed()

    def _delete_committed(self) -> None:
        # A segment is wholly committed when the next one starts at or before the committed
        # offset; the last one stays (it may be written to, or tells where offsets go on).
        while len(self._segments) > 1 and self._segments[1].first_offset <= self._committed:
            segment = self._segments.pop(0)
            if segment is self._reading:
                self._close_reader()
            self._bytes -= segment.size
            segment.path.unlink(missing_ok=True)


def _frames_length(data: bytes, count: int) -> int:
    """Bytes taken by the first ``count`` frames of ``data``."""
    position = 0
    for _ in range(count):
        size = frame_size(data, position)
        assert size is not None
        position += size
    return position


def _replace_durably(path: Path, text: str) -> None:
    """Write ``path`` whole or not at all, and make it survive a power loss."""
    temporary = path.with_name(path.name + ".tmp")
    with temporary.open("w") as file:
        file.write(text + "\n")
        file.flush()
        os.fsync(file.fileno())
    os.replace(temporary, path)
    _fsync_directory(path.parent)


def _fsync_directory(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
