"""Producer-side repeats: the ingress may send an event twice when it cannot tell whether
Kafka took it (a timeout, or a spool replayed after a restart). The copies share the event
id but sit at different offsets, so offset-based deduplication cannot see them; a window
of recently seen ids can. Repeats arrive within minutes, and a team's events stay on one
partition (the key is the team), so one consumer sees both copies."""

from __future__ import annotations

from collections.abc import Iterable


class RecentIds:
    """The ids most recently written: at least the newest ``capacity``, at most twice that.

    Two generations of ids instead of an exact window: remembering a batch is one set update
    in C, ten times cheaper on the consumer's event loop than an ordered dict evicting one id
    at a time (BENCHMARKS.md, consumer throughput), and the window only has to be at least
    as long as repeats are late. When the newer generation holds ``capacity`` ids it becomes
    the older one, and the old older one is forgotten.

    Ids are remembered only once their batch is written: remembering them earlier would
    drop the re-read copies of a batch that never reached the warehouse."""

    def __init__(self, capacity: int):
        self._capacity = capacity
        self._newer: set[str] = set()
        self._older: set[str] = set()

    def __contains__(self, event_id: str) -> bool:
        return event_id in self._newer or event_id in self._older

    def remember(self, event_ids: Iterable[str]) -> None:
        if self._capacity == 0:
            return
        self._newer.update(event_ids)
        if len(self._newer) >= self._capacity:
            self._older, self._newer = self._newer, set()
