from __future__ import annotations

from datetime import UTC, datetime

import pytest

from meterline.common.bus import BusMessage
from meterline.common.codec import UsageEventCodec
from meterline.consumer.decode import Decoder, Rejected, decode
from tests.support.events import million_token_event as event

CODEC = UsageEventCodec()
AWKWARD = [
    event(),
    event(user_id=None, tags=[], finish_reason=None, error_type=None),
    event(user_id="ünï-çødé ✓", tags=["a", "b", "a"], time_to_first_token_ms=0),
    event(
        status="error",
        http_status=529,
        error_type="overloaded",
        input_tokens=0,
        output_tokens=0,
        cached_input_tokens=0,
    ),
    # A microsecond a float division would get wrong, and the far past and future.
    event(started_at=datetime(2026, 11, 28, 17, 30, 2, 17_423, tzinfo=UTC)),
    event(started_at=datetime(1970, 1, 1, 0, 0, 0, 1, tzinfo=UTC)),
    event(started_at=datetime(2999, 12, 31, 23, 59, 59, 999_999, tzinfo=UTC)),
    event(raw_usage='{"prompt_tokens": 12, "nested": {"x": [1, 2]}}'),
]


def message(value: bytes) -> BusMessage:
    return BusMessage("t", 0, 0, None, value)


@pytest.mark.parametrize("sent", AWKWARD)
def test_the_fast_path_reads_what_the_codec_reads(sent: object) -> None:
    data = CODEC.encode(sent)  # type: ignore[arg-type]
    fast = Decoder(CODEC).decode(message(data))
    assert fast == decode(CODEC, message(data))
    assert fast == sent


def test_bad_bytes_are_rejected_with_a_reason() -> None:
    decoder = Decoder(CODEC)
    good = CODEC.encode(event())
    cases = {
        b"not avro at all": "undecodable",
        good + b"\x00": "undecodable: 1 trailing bytes",
        good[:-5]: "undecodable: corrupt Avro body",
        good[:2] + bytes(8) + good[10:]: "undecodable: unknown schema fingerprint",
        CODEC.encode(event(event_id="not-a-uuid")): "invalid: event_id is not a UUID",
        CODEC.encode(event(reasoning_tokens=2, output_tokens=1)): "invalid: reasoning_tokens",
    }
    for data, reason in cases.items():
        result = decoder.decode(message(data))
        assert isinstance(result, Rejected), reason
        assert result.reason.startswith(reason), result.reason
        assert result.message.value == data
