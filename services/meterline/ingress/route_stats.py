"""How fast each provider has recently answered each model, measured on the gateway's own
traffic, for ``sort: "latency"`` and ``sort: "throughput"`` (``routing.py``).

Each (provider, model) keeps an exponentially weighted moving average of two measures:

- latency: the time to the first token of a streamed answer, or the whole duration of one
  that was not streamed (its client waits for all of it);
- throughput: output tokens per second of generation, that is, after the first token of a
  stream, or over the whole duration of an answer that was not streamed.

Why an EWMA rather than the last N answers: one float per measure, updated in place, so an
answer costs a few dictionary operations on the request path, with no list to keep or scan
and nothing to sort when routes are ranked. With ``WEIGHT = 0.2`` the last ten answers carry
about 90 % of the average (0.8**10 is 0.11): recent enough to follow a provider that slows
down, smooth enough that one slow answer does not reorder the routes.

Only successful answers are measured: an error says nothing about how fast a model writes.
The event's clock starts with the request, so an answer after a failed attempt includes that
attempt's time; it only makes the route that answered look slower.

The ingress serves on one event loop and nothing here awaits, so there is no lock. At most
``MAX_ROUTES`` pairs are kept (a model name is the caller's text), the least recently
measured dropped first.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

from meterline.common.events import UsageEvent
from meterline.ingress.publishing.protocol import UsagePublisher

WEIGHT: Final = 0.2
"""The weight of the newest answer in each average."""
MAX_ROUTES: Final = 4096

Key = tuple[str, str]
"""(provider slug, model as the provider knows it)."""


class RouteStats:
    def __init__(self, max_routes: int = MAX_ROUTES) -> None:
        self._max_routes = max_routes
        self._latency_ms: dict[Key, float] = {}
        self._tokens_per_second: dict[Key, float] = {}

    def observe(self, event: UsageEvent) -> None:
        """Measure one finished request (anything but a success is ignored)."""
        if event.status != "success":
            return
        key = (event.provider, event.model)
        ttft = event.time_to_first_token_ms
        self._update(self._latency_ms, key, float(event.duration_ms if ttft is None else ttft))
        generating_ms = event.duration_ms - (ttft or 0)
        if event.output_tokens > 0 and generating_ms > 0:
            self._update(self._tokens_per_second, key, event.output_tokens * 1000 / generating_ms)

    def latency_ms(self, provider: str, model: str) -> float | None:
        """Recent time to the first token (whole duration when not streamed); None: not
        measured yet."""
        return self._latency_ms.get((provider, model))

    def tokens_per_second(self, provider: str, model: str) -> float | None:
        """Recent output tokens per second of generation; None: not measured yet."""
        return self._tokens_per_second.get((provider, model))

    def _update(self, averages: dict[Key, float], key: Key, value: float) -> None:
        # Popped and put back, so that the dictionary's order is the order of the last
        # measurement and its first key the one to drop.
        previous = averages.pop(key, None)
        averages[key] = value if previous is None else previous + WEIGHT * (value - previous)
        if len(averages) > self._max_routes:
            del averages[next(iter(averages))]


class MeasuringPublisher:
    """A publisher that hands each event on, then measures it in ``stats``: every finished
    request of every surface passes here, streamed or not."""

    def __init__(self, publisher: UsagePublisher, stats: RouteStats) -> None:
        self._publisher = publisher
        self._stats = stats

    async def start(self) -> None:
        await self._publisher.start()

    def publish(self, event: UsageEvent) -> None:
        self._publisher.publish(event)
        self._stats.observe(event)

    async def stop(self) -> None:
        await self._publisher.stop()

    def metrics(self) -> Mapping[str, int]:
        return self._publisher.metrics()
