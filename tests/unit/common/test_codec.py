from __future__ import annotations

import dataclasses
import json
from datetime import datetime
from pathlib import Path

import pytest

from meterline.common.codec import MARKER, DecodeError, UsageEventCodec, load_schemas, schema_dir
from meterline.common.events import UsageEvent

V2_FINGERPRINT = "2698923f7e43c947"
EXAMPLES = sorted((Path(__file__).resolve().parents[3] / "schemas" / "examples").glob("*.json"))


def _event(path: Path) -> UsageEvent:
    record = json.loads(path.read_text())
    record["started_at"] = datetime.fromisoformat(record["started_at"])
    return UsageEvent.from_record(record)


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.stem for p in EXAMPLES])
def test_every_example_payload_round_trips_and_validates(path: Path) -> None:
    codec = UsageEventCodec()
    event = _event(path)
    event.validate()
    data = codec.encode(event)
    assert data[:2] == MARKER
    assert codec.decode(data) == event


def test_there_are_awkward_examples() -> None:
    assert len(EXAMPLES) >= 6


def test_header_carries_the_crc64_avro_fingerprint_of_the_newest_schema() -> None:
    v1, v2 = load_schemas()
    assert (v1.version, v2.version) == (1, 2)
    data = UsageEventCodec().encode(_event(EXAMPLES[0]))
    assert data[2:10] == v2.fingerprint
    # A released schema's canonical form, and so its fingerprint, never changes.
    assert v1.fingerprint.hex() == "15d10fcf04a7cd73"
    assert v2.fingerprint.hex() == V2_FINGERPRINT


def test_a_v1_event_still_decodes_with_the_v2_fields_at_their_defaults() -> None:
    event = _event(EXAMPLES[0])
    old = UsageEventCodec(writer_version=1).encode(event)
    assert old[2:10] == load_schemas()[0].fingerprint
    decoded = UsageEventCodec().decode(old)
    assert (
        decoded.input_audio_tokens,
        decoded.output_audio_tokens,
        decoded.web_search_requests,
        decoded.zero_data_retention,
    ) == (0, 0, 0, False)
    assert decoded.input_tokens == event.input_tokens
    assert decoded.raw_usage == event.raw_usage


def test_the_v2_fields_round_trip() -> None:
    event = dataclasses.replace(
        _event(EXAMPLES[0]),
        input_tokens=5_000,
        cached_input_tokens=0,
        cache_creation_input_tokens=0,
        cache_creation_1h_input_tokens=0,
        input_audio_tokens=1_200,
        output_audio_tokens=3,
        web_search_requests=4,
        zero_data_retention=True,
    )
    assert UsageEventCodec().decode(UsageEventCodec().encode(event)) == event


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"", "marker"),
        (b'{"json": true}', "marker"),
        (MARKER + b"\x00" * 8 + b"body", "unknown schema fingerprint"),
    ],
)
def test_foreign_bytes_are_refused_with_a_reason(data: bytes, reason: str) -> None:
    with pytest.raises(DecodeError, match=reason):
        UsageEventCodec().decode(data)


def test_truncated_body_is_refused() -> None:
    codec = UsageEventCodec()
    data = codec.encode(_event(EXAMPLES[0]))
    with pytest.raises(DecodeError):
        codec.decode(data[:-5])


def test_trailing_bytes_are_refused() -> None:
    codec = UsageEventCodec()
    data = codec.encode(_event(EXAMPLES[0]))
    with pytest.raises(DecodeError, match="trailing"):
        codec.decode(data + b"\x00")


def test_a_later_schema_with_an_added_field_is_read_alongside_v2(tmp_path: Path) -> None:
    """Avro evolution: a newer producer adds a field with a default; a consumer that knows
    both versions reads old and new messages, and a consumer that knows only the older
    ones refuses the new fingerprint (instead of misreading it)."""
    source = schema_dir() / "usage_event.v2.avsc"
    (tmp_path / "usage_event.v2.avsc").write_text(source.read_text())
    v3 = json.loads(source.read_text())
    v3["fields"].append({"name": "region", "type": "string", "default": "unknown"})
    (tmp_path / "usage_event.v3.avsc").write_text(json.dumps(v3))

    both = load_schemas(tmp_path)
    older_writer = UsageEventCodec(both, writer_version=2)
    newer_writer = UsageEventCodec(both, writer_version=3)
    reader = UsageEventCodec(both)
    event = _event(EXAMPLES[0])

    old = older_writer.encode(event)
    record = event.to_record() | {"region": "eu-west"}
    new = newer_writer.encode_record(record)
    assert old[2:10] != new[2:10]
    assert reader.decode_record(old)["region"] == "unknown"
    assert reader.decode_record(new)["region"] == "eu-west"
    assert reader.decode(new) == event

    with pytest.raises(DecodeError, match="unknown schema fingerprint"):
        UsageEventCodec(load_schemas()).decode(new)
