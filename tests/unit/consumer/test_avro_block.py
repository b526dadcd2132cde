from __future__ import annotations

import io

import fastavro

from meterline.common.bus import BusMessage
from meterline.common.codec import UsageEventCodec
from meterline.consumer.avro_block import AvroBatches, avro_long, event_id_in_place
from meterline.consumer.decode import Decoder
from tests.support.events import million_token_event as event

CODEC = UsageEventCodec()
HEADER = CODEC.encode(event())[:10]


def test_a_container_reads_back_as_the_records_with_their_offsets() -> None:
    events = [event(tags=["a", "é"], user_id=None), event(time_to_first_token_ms=5), event()]
    batches = AvroBatches(CODEC.reader_schema)
    values = [CODEC.encode(e) for e in events]
    offsets = [7, 2**40, 0]

    container = batches.container([(o, batches.body(v)) for o, v in zip(offsets, values)])

    records = [r for r in fastavro.reader(io.BytesIO(container)) if isinstance(r, dict)]
    assert len(records) == len(events)
    assert [r["kafka_offset"] for r in records] == [o.to_bytes(8, "little") for o in offsets]
    for record, value in zip(records, values, strict=True):
        del record["kafka_offset"]
        expected = CODEC.decode_record(value)
        expected["event_id"] = str(expected["event_id"])
        # The container's schema has no logical types: the engine reads plain longs.
        expected["started_at"] = int(expected["started_at"].timestamp() * 1_000_000)
        assert record == expected


def test_the_event_id_is_read_in_place_only_from_messages_with_the_newest_schema() -> None:
    e = event()
    value = CODEC.encode(e)
    assert event_id_in_place(value, HEADER) == e.event_id
    decoded = Decoder(CODEC).event_id(BusMessage("t", 0, 0, None, value))
    assert decoded == e.event_id

    assert event_id_in_place(value, b"\xc3\x01" + b"\x00" * 8) is None  # another schema
    assert event_id_in_place(CODEC.encode(event(event_id="short")), HEADER) is None
    assert event_id_in_place(value[:12], HEADER) is None
    assert event_id_in_place(b"", HEADER) is None
    non_ascii = value[:11] + "é".encode() * 18 + value[47:]
    assert event_id_in_place(non_ascii, HEADER) is None


def test_avro_longs_are_zigzag_varints() -> None:
    for n in (0, 1, -1, 63, -64, 64, 2**40, -(2**63), 2**63 - 1):
        buffer = io.BytesIO()
        fastavro.schemaless_writer(buffer, "long", n)
        assert avro_long(n) == buffer.getvalue()
