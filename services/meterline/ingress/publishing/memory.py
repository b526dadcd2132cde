"""``MemoryPublisher``: every event in a list, for tests."""

from __future__ import annotations

from collections.abc import Mapping

from meterline.common.events import UsageEvent


class MemoryPublisher:
    """Keeps every event in ``events``; for tests."""

    def __init__(self) -> None:
        self.events: list[UsageEvent] = []
        self.started = False
        self.stopped = False

    async def start(self) -> None:
        self.started = True

    def publish(self, event: UsageEvent) -> None:
        self.events.append(event)

    async def stop(self) -> None:
        self.stopped = True

    def metrics(self) -> Mapping[str, int]:
        return {"sent": len(self.events)}
