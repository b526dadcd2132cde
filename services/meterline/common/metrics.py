"""Counters, gauges and histograms in the Prometheus text format (version 0.0.4), and the
process' own series (CPU, memory, file descriptors, start time).

Written here rather than taken from ``prometheus_client`` because every service serves on
one event loop: an observation is a dictionary update and a list increment, with no lock,
and the all-in-one renders its three services' registries into one page with the process
series once.

Label values must come from small, known sets (surface, provider slug, status class,
route template, partition; team only when ``METERLINE_METRICS_TEAM_LABEL`` is set): each
combination is a series kept for the life of the process."""

from __future__ import annotations

import os
import resource
import time
from bisect import bisect_left
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Final, TypeVar

CONTENT_TYPE: Final = "text/plain; version=0.0.4; charset=utf-8"

LATENCY_BUCKETS: Final = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0)
"""Seconds, for work the gateway or a service does itself (overhead, queries, inserts)."""
SLOW_BUCKETS: Final = (0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
"""Seconds, for what waits on something else (time to first token, batch age, commits)."""
ROWS_BUCKETS: Final = (1, 10, 100, 1_000, 10_000, 50_000, 100_000, 500_000)

Labels = tuple[str, ...]
M = TypeVar("M", bound="Metric")


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _labels(names: Sequence[str], values: Labels, extra: str = "") -> str:
    pairs = [f'{name}="{_escape(value)}"' for name, value in zip(names, values, strict=True)]
    if extra:
        pairs.append(extra)
    return "{" + ",".join(pairs) + "}" if pairs else ""


def _number(value: float) -> str:
    if value == float("inf"):
        return "+Inf"
    return repr(int(value)) if float(value).is_integer() else repr(float(value))


class Metric:
    kind = "untyped"

    def __init__(self, name: str, help_text: str, labels: Sequence[str] = ()):
        self.name = name
        self.help = help_text
        self.label_names = tuple(labels)

    def header(self) -> list[str]:
        return [f"# HELP {self.name} {self.help}", f"# TYPE {self.name} {self.kind}"]

    def samples(self) -> list[str]:
        raise NotImplementedError

    def render(self) -> list[str]:
        return self.header() + self.samples()


class Counter(Metric):
    """A count that only goes up. Without labels it is exported at 0 from the start, so
    that ``rate()`` sees its first increment."""

    kind = "counter"

    def __init__(self, name: str, help_text: str, labels: Sequence[str] = ()):
        super().__init__(name, help_text, labels)
        self.values: dict[Labels, float] = {} if labels else {(): 0}

    def inc(self, *labels: str, amount: float = 1) -> None:
        values = self.values
        values[labels] = values.get(labels, 0) + amount

    def value(self, *labels: str) -> float:
        return self.values.get(labels, 0)

    def samples(self) -> list[str]:
        names = self.label_names
        return [f"{self.name}{_labels(names, key)} {_number(v)}" for key, v in self.values.items()]


class Gauge(Metric):
    """A value that goes up and down: set directly, or read from ``source`` at each
    scrape (``source`` returns the labelled values)."""

    kind = "gauge"

    def __init__(
        self,
        name: str,
        help_text: str,
        labels: Sequence[str] = (),
        source: Callable[[], Iterable[tuple[Labels, float]]] | None = None,
    ):
        super().__init__(name, help_text, labels)
        self.values: dict[Labels, float] = {}
        self._source = source

    def set(self, value: float, *labels: str) -> None:
        self.values[labels] = value

    def samples(self) -> list[str]:
        values = dict(self._source()) if self._source is not None else self.values
        names = self.label_names
        return [f"{self.name}{_labels(names, key)} {_number(v)}" for key, v in values.items()]


class Histogram(Metric):
    """Observations counted into buckets: one bisect and three additions per observation;
    the cumulative counts Prometheus expects are summed only when rendered."""

    kind = "histogram"

    def __init__(
        self,
        name: str,
        help_text: str,
        buckets: Sequence[float],
        labels: Sequence[str] = (),
    ):
        super().__init__(name, help_text, labels)
        self.buckets = tuple(sorted(buckets))
        # Per label values: a count per bucket (and one past the last, +Inf), then the sum.
        self.series: dict[Labels, list[float]] = {}
        if not labels:
            self.series[()] = [0] * (len(self.buckets) + 2)

    def observe(self, value: float, *labels: str) -> None:
        counts = self.series.get(labels)
        if counts is None:
            counts = self.series[labels] = [0] * (len(self.buckets) + 2)
        counts[bisect_left(self.buckets, value)] += 1
        counts[-1] += value

    def count(self, *labels: str) -> int:
        counts = self.series.get(labels)
        return 0 if counts is None else int(sum(counts[:-1]))

    def samples(self) -> list[str]:
        lines: list[str] = []
        names = self.label_names
        for key, counts in self.series.items():
            total = 0.0
            for bound, count in zip((*self.buckets, float("inf")), counts[:-1], strict=True):
                total += count
                le = f'le="{_number(bound)}"'
                lines.append(f"{self.name}_bucket{_labels(names, key, le)} {_number(total)}")
            lines.append(f"{self.name}_sum{_labels(names, key)} {_number(counts[-1])}")
            lines.append(f"{self.name}_count{_labels(names, key)} {_number(total)}")
        return lines


class Registry:
    """The series of one service, and text from elsewhere (``add_text``: a part that
    renders its own, such as the publisher's or the budgets')."""

    def __init__(self) -> None:
        self._metrics: list[Metric] = []
        self._texts: list[Callable[[], str]] = []

    def add(self, metric: M) -> M:
        self._metrics.append(metric)
        return metric

    def add_text(self, text: Callable[[], str]) -> None:
        self._texts.append(text)

    def render(self) -> str:
        lines: list[str] = []
        for metric in self._metrics:
            lines += metric.render()
        text = "\n".join(lines) + "\n" if lines else ""
        return text + "".join(part() for part in self._texts)


def status_class(status: int) -> str:
    """``2xx`` .. ``5xx``: the status code's class, a bounded label."""
    return f"{status // 100}xx" if 100 <= status < 600 else "other"


_STARTED = time.time()
_PAGE_SIZE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096
_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def _boot_time() -> float | None:
    try:
        with open("/proc/stat", encoding="ascii") as stat:
            for line in stat:
                if line.startswith("btime "):
                    return float(line.split()[1])
    except OSError:
        return None
    return None


def _process_start_time() -> float:
    """The process' start from /proc (so a restart of the all-in-one inside a test keeps
    the right one); the import time of this module elsewhere."""
    boot = _boot_time()
    try:
        with open("/proc/self/stat", encoding="ascii") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
        if boot is not None:
            return boot + int(fields[19]) / _TICKS
    except (OSError, IndexError, ValueError):
        pass
    return _STARTED


PROCESS_START_TIME: Final = _process_start_time()


def process_text() -> str:
    """``process_*`` series as the Prometheus client libraries name them."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    cpu = usage.ru_utime + usage.ru_stime
    rss: float = usage.ru_maxrss * 1024  # the peak, where /proc is not there
    virtual: float | None = None
    try:
        with open("/proc/self/statm", encoding="ascii") as statm:
            pages = statm.read().split()
        virtual, rss = int(pages[0]) * _PAGE_SIZE, int(pages[1]) * _PAGE_SIZE
    except (OSError, IndexError, ValueError):
        pass
    try:
        open_fds: float | None = len(os.listdir("/proc/self/fd"))
    except OSError:
        open_fds = None
    max_fds = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    series: list[tuple[str, str, str, float | None]] = [
        ("process_cpu_seconds_total", "counter", "User and system CPU time spent.", cpu),
        ("process_resident_memory_bytes", "gauge", "Resident memory size.", rss),
        ("process_virtual_memory_bytes", "gauge", "Virtual memory size.", virtual),
        ("process_open_fds", "gauge", "Open file descriptors.", open_fds),
        ("process_max_fds", "gauge", "Limit of open file descriptors.", max_fds),
        (
            "process_start_time_seconds",
            "gauge",
            "Start time of the process since the Unix epoch.",
            PROCESS_START_TIME,
        ),
    ]
    lines: list[str] = []
    for name, kind, help_text, value in series:
        if value is None or value < 0:
            continue
        lines += [f"# HELP {name} {help_text}", f"# TYPE {name} {kind}", f"{name} {_number(value)}"]
    return "\n".join(lines) + "\n"


class RouteTemplates:
    """The route template of a request once its app has routed it (``/v1/models/{model_id:
    path}``, never the raw path, which may hold ids). Starlette leaves the matched endpoint
    in the scope, not the route: the template is that of the endpoint's route whose pattern
    matches the path. Routers included in the app are walked too (without prefixes, which
    the services do not use)."""

    def __init__(self, routes: Sequence[Any]) -> None:
        self._routes = routes
        self._by_endpoint: dict[Any, list[Any]] | None = None

    def _index(self) -> dict[Any, list[Any]]:
        index: dict[Any, list[Any]] = {}
        pending = list(self._routes)
        while pending:
            route = pending.pop(0)
            included = getattr(route, "original_router", None)
            if included is not None:
                pending[:0] = list(included.routes)
            elif hasattr(route, "path_regex") and hasattr(route, "endpoint"):
                index.setdefault(route.endpoint, []).append(route)
        return index

    def of(self, scope: Mapping[str, Any]) -> str | None:
        endpoint = scope.get("endpoint")
        if endpoint is None:
            return None
        if self._by_endpoint is None:
            # Built on the first request: every route is in place by then.
            self._by_endpoint = self._index()
        candidates = self._by_endpoint.get(endpoint, ())
        if len(candidates) == 1:
            return str(candidates[0].path)
        path = scope.get("path", "")
        for route in candidates:
            if route.path_regex.match(path):
                return str(route.path)
        return None
