"""``PublisherHealth``: whether Kafka is taking the Kafka publisher's events.

Kafka counts as down from a failed connection or send, or a stall, until the next
acknowledgement. A stall is records in flight and nothing acknowledged for
``stall_seconds``: a broker that went away fails its sends only much later. While Kafka is
down the publisher sends new events to the spool rather than memory. Times are seconds on
the event loop's clock, passed in, so that this object never reads a clock itself."""

from __future__ import annotations


class PublisherHealth:
    def __init__(self, stall_seconds: float) -> None:
        self.stall_seconds = stall_seconds
        self._healthy = True
        self._last_progress = 0.0

    @property
    def healthy(self) -> bool:
        return self._healthy

    @property
    def check_seconds(self) -> float:
        """How often to look for a stall: often enough to see one soon after it begins."""
        return min(0.25, self.stall_seconds / 4)

    def progress(self, now: float) -> None:
        """Something moved without an acknowledgement (a connection opened, a send began
        with nothing in flight): the stall clock starts again."""
        self._last_progress = now

    def acknowledged(self, now: float) -> bool:
        """Kafka took a record: it is healthy. True when it was down until now."""
        self._last_progress = now
        recovered = not self._healthy
        self._healthy = True
        return recovered

    def down(self) -> bool:
        """A connection or a send failed, or a stall: Kafka is down. True when it was
        healthy until now."""
        went_down = self._healthy
        self._healthy = False
        return went_down

    def stalled(self, now: float, in_flight: int) -> bool:
        """Records are in flight and nothing moved for longer than ``stall_seconds``."""
        return in_flight > 0 and now - self._last_progress > self.stall_seconds
