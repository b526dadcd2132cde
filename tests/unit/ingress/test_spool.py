"""The ingress spool on its own (torn tails, restarts, the disk limit), and the Kafka
publisher spilling into it when there is no broker."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import pytest

from meterline.common.framing import encode_record
from meterline.ingress.publishing.kafka import KafkaPublisher
from meterline.ingress.publishing.metrics import prometheus_text
from meterline.ingress.spool import MAGIC, SUFFIX, Spool
from tests.support.events import numbered_event


def records(count: int, start: int = 0) -> list[tuple[bytes, bytes]]:
    return [
        (f"team-{n % 3}".encode(), f"value-{n}".encode() * (1 + n % 5))
        for n in range(start, start + count)
    ]


def segments(directory: Path) -> list[Path]:
    return sorted(directory.glob(f"*{SUFFIX}"))


def read_all(spool: Spool) -> list[tuple[tuple[bytes, bytes], int]]:
    out = []
    while batch := spool.read(7):
        out.extend(batch)
    return out


def test_records_come_back_in_order_and_acknowledged_segments_are_deleted(tmp_path: Path) -> None:
    spool = Spool(tmp_path, max_bytes=1 << 20, segment_bytes=200)
    spool.open()
    sent = records(40)
    assert spool.append(sent) == 40
    assert spool.waiting == 40
    assert len(segments(tmp_path)) > 3  # small segments: the roll-over is exercised

    read = read_all(spool)
    assert [record for record, _ in read] == sent
    # Handed out but not acknowledged: nothing may be deleted yet.
    assert segments(tmp_path)
    for _, segment in read[:-1]:
        spool.acknowledge(segment)
    assert len(segments(tmp_path)) == 1
    spool.acknowledge(read[-1][1])
    assert segments(tmp_path) == []
    assert (spool.waiting, spool.bytes) == (0, 0)

    # Appending after a full drain starts a fresh segment.
    assert spool.append(records(2, start=100)) == 2
    assert [record for record, _ in spool.read(10)] == records(2, start=100)


def test_a_restart_replays_everything_not_acknowledged(tmp_path: Path) -> None:
    spool = Spool(tmp_path, max_bytes=1 << 20, segment_bytes=300)
    spool.open()
    sent = records(30)
    spool.append(sent)
    read = spool.read(10)
    first_segment = read[0][1]
    for record_segment in (segment for _, segment in read if segment == first_segment):
        spool.acknowledge(record_segment)
    acknowledged = sum(1 for _, segment in read if segment == first_segment)
    spool.close()

    again = Spool(tmp_path, max_bytes=1 << 20, segment_bytes=300)
    again.open()
    # The first segment was fully acknowledged and deleted; the rest comes back, including
    # records handed out but never acknowledged.
    assert again.waiting == 30 - acknowledged
    assert [record for record, _ in read_all(again)] == sent[acknowledged:]


def test_a_torn_tail_is_skipped_and_every_whole_record_before_it_is_read(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    spool = Spool(tmp_path, max_bytes=1 << 20)
    spool.open()
    sent = records(10)
    spool.append(sent)
    spool.close()
    [path] = segments(tmp_path)
    # A crash in the middle of writing the 11th record.
    partial = encode_record(b"team-x", b"never finished")[:-5]
    with path.open("ab") as file:
        file.write(partial)

    again = Spool(tmp_path, max_bytes=1 << 20)
    again.open()
    assert again.waiting == 10
    with caplog.at_level(logging.WARNING, "meterline.ingress.spool"):
        read = read_all(again)
    assert [record for record, _ in read] == sent
    assert "torn tail" in caplog.text
    for _, segment in read:
        again.acknowledge(segment)
    assert segments(tmp_path) == []  # a torn segment is still deleted once sent


def test_a_damaged_record_stops_its_segment_without_losing_the_records_before_it(
    tmp_path: Path,
) -> None:
    spool = Spool(tmp_path, max_bytes=1 << 20)
    spool.open()
    sent = records(5)
    spool.append(sent)
    spool.close()
    [path] = segments(tmp_path)
    data = bytearray(path.read_bytes())
    third = len(MAGIC) + sum(len(encode_record(*r)) for r in sent[:2])
    data[third + 12] ^= 0xFF  # a byte inside the third record's payload
    path.write_bytes(bytes(data))

    again = Spool(tmp_path, max_bytes=1 << 20)
    again.open()
    assert [record for record, _ in read_all(again)] == sent[:2]
    assert again.damaged_segments == 1


def test_a_file_that_is_not_a_spool_segment_is_ignored(tmp_path: Path) -> None:
    (tmp_path / f"{0:016d}{SUFFIX}").write_bytes(b"something else entirely")
    spool = Spool(tmp_path, max_bytes=1 << 20)
    spool.open()
    assert spool.read(10) == []
    spool.append(records(1))
    assert [record for record, _ in spool.read(10)] == records(1)


def test_the_disk_limit_is_never_exceeded(tmp_path: Path) -> None:
    limit = 1000
    spool = Spool(tmp_path, max_bytes=limit, segment_bytes=300)
    spool.open()
    taken = spool.append(records(100))
    assert 0 < taken < 100
    assert spool.bytes <= limit
    assert sum(p.stat().st_size for p in segments(tmp_path)) == spool.bytes
    assert spool.append(records(1)) == 0
    # Sending frees space again.
    for _, segment in read_all(spool):
        spool.acknowledge(segment)
    assert spool.append(records(1)) == 1


async def test_without_kafka_events_go_to_the_spool_not_memory_and_survive_a_restart(
    tmp_path: Path,
) -> None:
    # Nothing listens on port 9: every connection attempt fails at once.
    spool = Spool(tmp_path / "spool", max_bytes=1 << 20)
    publisher = KafkaPublisher(
        "127.0.0.1:9", "usage-events", max_buffered=5, flush_timeout_seconds=0.5, spool=spool
    )
    await publisher.start()
    for n in range(8):
        publisher.publish(numbered_event(n))
    # 5 in memory, 3 spilled at once (the buffer is full).
    assert (publisher.buffered, publisher.spooled, publisher.dropped) == (5, 3, 0)
    await asyncio.sleep(0.3)
    # The failed connection marks Kafka down: memory moves to disk, new events go there.
    assert (publisher.buffered, publisher.spooled) == (0, 8)
    for n in range(8, 12):
        publisher.publish(numbered_event(n))
    assert (publisher.buffered, publisher.spooled, publisher.dropped) == (0, 12, 0)
    await publisher.stop()
    text = prometheus_text(publisher.metrics())
    assert "meterline_ingress_events_spooled 12\n" in text
    assert "meterline_ingress_events_dropped_total 0\n" in text
    assert "# TYPE meterline_ingress_events_sent_total counter" in text

    again = Spool(tmp_path / "spool", max_bytes=1 << 20)
    again.open()
    assert again.waiting == 12


async def test_past_the_disk_limit_events_are_dropped_loudly(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    one = len(MAGIC) + len(encode_record(b"acme", b"x" * 200))
    spool = Spool(tmp_path, max_bytes=one)
    publisher = KafkaPublisher(
        "127.0.0.1:9", "usage-events", max_buffered=1, flush_timeout_seconds=0.5, spool=spool
    )
    await publisher.start()
    with caplog.at_level(logging.ERROR, "meterline.ingress.publisher"):
        for n in range(5):
            publisher.publish(numbered_event(n))
        await publisher.stop()
    assert publisher.dropped > 0
    assert publisher.dropped + publisher.spooled == 5
    assert "DROPPING usage events" in caplog.text
    assert f"meterline_ingress_events_dropped_total {publisher.dropped}\n" in prometheus_text(
        publisher.metrics()
    )
