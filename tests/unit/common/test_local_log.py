"""The embedded default's local log: offsets and identity that survive a restart, reading on
from the committed offset, torn and damaged records, the disk limit."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

from meterline.common.framing import encode_record
from meterline.common.local_log import COMMITTED_FILE, MAGIC, SUFFIX, LocalLog


def opened(directory: Path, **options: int | float) -> LocalLog:
    log = LocalLog(directory, "usage-events", **options)  # type: ignore[arg-type]
    log.open()
    return log


def crash(log: LocalLog) -> None:
    """What a killed process leaves: its files as they are, its lock released."""
    assert log._lock_fd is not None
    os.close(log._lock_fd)


def append(log: LocalLog, *values: bytes) -> None:
    for value in values:
        assert log.publish_nowait(b"acme", value)


async def read_all(log: LocalLog) -> list[tuple[int, bytes]]:
    messages = await log.get_batch(1_000_000, 0)
    return [(m.offset, m.value) for m in messages]


def segments(directory: Path) -> list[Path]:
    return sorted(directory.glob(f"*{SUFFIX}"))


async def test_what_is_not_committed_is_read_again_after_a_restart(tmp_path: Path) -> None:
    log = opened(tmp_path)
    append(log, b"a", b"b", b"c")
    assert await read_all(log) == [(0, b"a"), (1, b"b"), (2, b"c")]
    await log.commit(2)  # a and b are in the warehouse; c is not
    await log.close()

    again = opened(tmp_path)
    assert again.pending == 1
    assert await read_all(again) == [(2, b"c")]
    append(again, b"d")
    # Offsets go on where the log ended: never an offset an earlier batch was recorded under.
    assert await read_all(again) == [(3, b"d")]
    assert again.topic == log.topic
    await again.close()


async def test_a_crash_without_close_loses_nothing_appended(tmp_path: Path) -> None:
    log = opened(tmp_path)
    append(log, b"a", b"b")
    # No close(), no fsync: a killed process leaves the records in the page cache.
    crash(log)
    again = opened(tmp_path)
    assert await read_all(again) == [(0, b"a"), (1, b"b")]
    await again.close()


async def test_the_identity_is_the_logs_own_and_a_wiped_log_gets_a_new_one(
    tmp_path: Path,
) -> None:
    first = opened(tmp_path / "one")
    second = opened(tmp_path / "two")
    assert first.topic.startswith("usage-events@log-")
    assert first.topic != second.topic
    append(first, b"x")
    [message] = await first.get_batch(10, 0)
    assert message.topic == first.topic


async def test_a_torn_tail_is_cut_off_and_appending_goes_on_in_a_new_segment(
    tmp_path: Path,
) -> None:
    log = opened(tmp_path)
    append(log, b"a", b"b")
    [segment] = segments(tmp_path)
    with segment.open("ab") as file:  # a crash in the middle of a write
        file.write(encode_record(b"acme", b"never finished")[:-3])
    crash(log)
    again = opened(tmp_path)
    assert segment.stat().st_size == len(MAGIC) + 2 * len(encode_record(b"acme", b"a"))
    append(again, b"c")
    assert await read_all(again) == [(0, b"a"), (1, b"b"), (2, b"c")]
    assert len(segments(tmp_path)) == 2


async def test_a_segment_torn_while_being_created_is_removed(tmp_path: Path) -> None:
    log = opened(tmp_path)
    append(log, b"a")
    await log.close()
    (tmp_path / f"{1:020d}{SUFFIX}").write_bytes(MAGIC[:3])
    again = opened(tmp_path)
    append(again, b"b")
    assert await read_all(again) == [(0, b"a"), (1, b"b")]


async def test_a_damaged_record_ends_its_segment_and_the_next_one_is_read(
    tmp_path: Path,
) -> None:
    log = opened(tmp_path, segment_bytes=len(MAGIC) + 2 * len(encode_record(b"acme", b"a")))
    append(log, b"a", b"b", b"c")
    first, _ = segments(tmp_path)
    data = bytearray(first.read_bytes())
    data[-1] ^= 0xFF  # the second record's last byte
    first.write_bytes(bytes(data))
    assert await read_all(log) == [(0, b"a"), (2, b"c")]


async def test_committed_segments_are_deleted(tmp_path: Path) -> None:
    log = opened(tmp_path, segment_bytes=len(MAGIC) + 2 * len(encode_record(b"acme", b"a")))
    append(log, b"a", b"b", b"c", b"d", b"e")
    assert len(segments(tmp_path)) == 3
    await read_all(log)
    await log.commit(4)
    assert [int(path.stem) for path in segments(tmp_path)] == [4]
    assert (tmp_path / COMMITTED_FILE).read_text().strip() == "4"
    await log.close()
    again = opened(tmp_path)
    assert await read_all(again) == [(4, b"e")]


async def test_offsets_never_go_back_when_the_log_lost_its_tail(tmp_path: Path) -> None:
    """A power loss can take records whose batch was committed before the log was fsynced
    (the committed file is): the next offset is then the committed one, not the log's end."""
    log = opened(tmp_path)
    append(log, b"a", b"b", b"c")
    await read_all(log)
    await log.commit(3)
    await log.close()
    [segment] = segments(tmp_path)
    segment.write_bytes(MAGIC + encode_record(b"acme", b"a"))
    again = opened(tmp_path)
    append(again, b"d")
    assert await read_all(again) == [(3, b"d")]


async def test_past_the_disk_limit_appends_are_refused_and_counted(tmp_path: Path) -> None:
    one = len(encode_record(b"acme", b"x" * 100))
    log = opened(tmp_path, max_bytes=len(MAGIC) + 2 * one)
    assert log.publish_nowait(b"acme", b"x" * 100)
    assert log.publish_nowait(b"acme", b"x" * 100)
    assert not log.publish_nowait(b"acme", b"x" * 100)
    assert log.dropped == 1
    await read_all(log)
    await log.commit(2)
    # Committing frees nothing of the last segment (it is being written); a new one is
    # started only when this one is full, so the limit holds.
    assert not log.publish_nowait(b"acme", b"x" * 100)


async def test_a_reader_waits_for_the_next_append(tmp_path: Path) -> None:
    log = opened(tmp_path)
    reading = asyncio.create_task(log.get_batch(10, 5))
    await asyncio.sleep(0.05)
    assert not reading.done()
    append(log, b"a")
    [message] = await asyncio.wait_for(reading, 1)
    assert (message.offset, message.value) == (0, b"a")
    assert await log.get_batch(10, 0.05) == []


async def test_a_large_record_and_many_records_cross_read_chunks(tmp_path: Path) -> None:
    log = opened(tmp_path)
    big = b"y" * (3 << 20)
    values = [b"small"] * 5000 + [big] + [b"tail"]
    append(log, *values)
    got: list[bytes] = []
    while batch := await log.get_batch(777, 0):
        got.extend(m.value for m in batch)
    assert got == values


async def test_fsync_after_every_append(tmp_path: Path) -> None:
    log = opened(tmp_path, fsync_seconds=0)
    await log.start()
    append(log, b"a", b"b")
    assert await read_all(log) == [(0, b"a"), (1, b"b")]
    await log.close()


async def test_the_periodic_fsync_runs_and_close_stops_it(tmp_path: Path) -> None:
    log = opened(tmp_path, fsync_seconds=0.01)
    await log.start()
    append(log, b"a")
    await asyncio.sleep(0.05)
    # The fsync task's only visible effect.
    assert log._synced_offset == 1
    await log.close()


async def test_a_second_process_on_the_same_log_is_refused(tmp_path: Path) -> None:
    log = opened(tmp_path)
    with pytest.raises(RuntimeError, match="in use by another process"):
        opened(tmp_path)
    await log.close()
    opened(tmp_path)  # free again once the first one closed
