"""Step 1: bytes -> a validated UsageEvent, or the reason it cannot be one."""

from __future__ import annotations

from dataclasses import dataclass

from meterline.common.bus import BusMessage
from meterline.common.codec import DecodeError, UsageEventCodec
from meterline.common.events import EventValidationError, UsageEvent


@dataclass(frozen=True, slots=True)
class Rejected:
    message: BusMessage
    reason: str


def decode(codec: UsageEventCodec, message: BusMessage) -> UsageEvent | Rejected:
    try:
        event = codec.decode(message.value)
        event.validate()
    except DecodeError as error:
        return Rejected(message, f"undecodable: {error}")
    except EventValidationError as error:
        return Rejected(message, f"invalid: {error}")
    return event
