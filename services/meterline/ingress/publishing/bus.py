"""``BusPublisher``: the embedded default's publisher, into the bus its consumer reads."""

from __future__ import annotations

import logging
from collections.abc import Mapping

from meterline.common.bus import Bus
from meterline.common.codec import UsageEventCodec
from meterline.common.events import UsageEvent
from meterline.ingress.publishing.protocol import to_record

# Every publisher logs under one name, whichever mode the ingress runs in.
log = logging.getLogger("meterline.ingress.publisher")


class BusPublisher:
    """The embedded mode: encoded events into the bus the consumer reads. With the local log
    an event is on disk (the page cache) when ``publish`` returns."""

    def __init__(self, bus: Bus, codec: UsageEventCodec | None = None):
        self._bus = bus
        self._codec = codec or UsageEventCodec()
        self.sent = 0
        self.failed = 0

    async def start(self) -> None:
        pass

    def publish(self, event: UsageEvent) -> None:
        try:
            key, value = to_record(self._codec, event)
        except Exception:
            self.failed += 1
            log.exception("usage event %s could not be encoded; dropped", event.event_id)
            return
        if self._bus.publish_nowait(key, value):
            self.sent += 1
        else:
            self.failed += 1
            # The first drop and then one line per thousand, as the Kafka publisher does.
            if self.failed % 1000 == 1:
                log.error(
                    "DROPPING usage events: the bus takes no more (%d dropped so far)",
                    self.failed,
                )

    async def stop(self) -> None:
        pass

    def metrics(self) -> Mapping[str, int]:
        return {"sent": self.sent, "dropped": self.failed, "buffered": self._bus.pending}
