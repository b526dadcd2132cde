"""``UsagePublisher``: what the ingress hands its usage events to, and the record an event
becomes on the bus or in Kafka."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol

from meterline.common.codec import UsageEventCodec
from meterline.common.events import UsageEvent

Record = tuple[bytes, bytes]
"""(key, value) as they go to Kafka: the team id and the Avro single-object encoding."""


class UsagePublisher(Protocol):
    async def start(self) -> None: ...

    def publish(self, event: UsageEvent) -> None:
        """Hand one event over. Never blocks, never raises."""
        ...

    async def stop(self) -> None:
        """Deliver what is buffered (within the implementation's time limit), then close."""
        ...

    def metrics(self) -> Mapping[str, int]:
        """Counters and gauges by the names in ``metrics.METRICS``."""
        ...


def to_record(codec: UsageEventCodec, event: UsageEvent) -> Record:
    # Keyed by team so one team's events stay ordered within a partition.
    return event.team_id.encode(), codec.encode(event)
