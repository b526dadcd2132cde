"""Producer-side repeats: the ingress may send an event twice when it cannot tell whether
Kafka took it (a timeout, or a spool replayed after a restart). The copies share the event
id but sit at different offsets, so offset-based deduplication cannot see them; a window
of recently seen ids can. Repeats arrive within minutes, and a team's events stay on one
partition (the key is the team), so one consumer sees both copies."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable


class RecentIds:
    """A bounded set of the ids most recently written (oldest forgotten first).

    Ids are remembered only once their batch is written: remembering them earlier would
    drop the re-read copies of a batch that never reached the warehouse."""

    def __init__(self, capacity: int):
        self._capacity = capacity
        self._ids: OrderedDict[str, None] = OrderedDict()

    def __contains__(self, event_id: str) -> bool:
        return event_id in self._ids

    def remember(self, event_ids: Iterable[str]) -> None:
        if self._capacity == 0:
            return
        for event_id in event_ids:
            self._ids[event_id] = None
        while len(self._ids) > self._capacity:
            self._ids.popitem(last=False)
