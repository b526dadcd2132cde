"""What every benchmark shares: the command line, the machine description, percentiles, peak
RSS, a Kafka broker, and writing ``<name>.json`` + ``<name>.md`` the way ``bench.run`` splices
them into BENCHMARKS.md."""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
DEFAULT_OUT = REPO / "bench" / "results"


def argument_parser(name: str, description: str) -> argparse.ArgumentParser:
    """The options every benchmark takes (``--quick``, ``--out``); add your own to it."""
    parser = argparse.ArgumentParser(prog=f"python -m bench.{name}", description=description)
    parser.add_argument(
        "--quick", action="store_true", help="tiny sizes that run in seconds (the test suite)"
    )
    parser.add_argument(
        "--out", type=Path, default=DEFAULT_OUT, help=f"results folder (default {DEFAULT_OUT})"
    )
    return parser


def machine() -> dict[str, Any]:
    """Enough about the machine to tell whether two result files are comparable."""
    cpu_model = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu_model = line.split(":", 1)[1].strip()
                break
    memory_gib = 0.0
    with contextlib.suppress(OSError, ValueError, IndexError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                memory_gib = round(int(line.split()[1]) / 1024 / 1024, 1)
                break
    return {
        "cpus": os.cpu_count(),
        "cpu_model": cpu_model,
        "memory_gib": memory_gib,
        "os": platform.platform(),
        "python": platform.python_version(),
        "git_commit": _git_commit(),
        "load_average_1m": round(os.getloadavg()[0], 2),
    }


def _git_commit() -> str:
    try:
        done = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],  # noqa: S607 - git from PATH
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return ""
    return done.stdout.strip()


def percentile(values: Sequence[float], p: float) -> float:
    """The p-th percentile (0..100), nearest-rank: always one of the measured values."""
    if not values:
        raise ValueError("percentile of no values")
    ordered = sorted(values)
    rank = max(1, math.ceil(p / 100 * len(ordered)))
    return ordered[rank - 1]


def median(values: Sequence[float]) -> float:
    return statistics.median(values)


def peak_rss_mib(pid: int | None = None) -> float:
    """Peak resident set size (VmHWM) of a running process, or of this one, in MiB."""
    if pid is None:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise ValueError(f"no VmHWM for process {pid}")


def children_peak_rss_mib() -> float:
    """The largest peak RSS among the waited-for child processes, in MiB."""
    return resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024


@contextlib.contextmanager
def kafka_bootstrap() -> Iterator[str]:
    """``KAFKA_BOOTSTRAP_SERVERS`` if set, else a one-node broker started for the benchmark."""
    if str(REPO) not in sys.path:
        sys.path.insert(0, str(REPO))
    from tests.support.kafka_broker import kafka_bootstrap_from_env_or_start

    bootstrap, broker = kafka_bootstrap_from_env_or_start()
    try:
        yield bootstrap
    finally:
        if broker is not None:
            broker.stop()


@dataclass
class Stopwatch:
    started: float = 0.0
    elapsed: float = 0.0

    def __enter__(self) -> Stopwatch:
        self.started = time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        self.elapsed = time.perf_counter() - self.started


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    lines = [
        "| " + " | ".join(headers) + " |",
        "|" + "|".join(" ---: " if i else " --- " for i in range(len(headers))) + "|",
    ]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def write_results(
    out: Path,
    name: str,
    params: dict[str, Any],
    results: list[dict[str, Any]],
    markdown: str,
    **extra: Any,
) -> Path:
    """Write ``out/<name>.json`` and ``out/<name>.md``; returns the JSON path."""
    out.mkdir(parents=True, exist_ok=True)
    document = {
        "benchmark": name,
        "machine": machine(),
        "params": params,
        "results": results,
        **extra,
    }
    path = out / f"{name}.json"
    path.write_text(json.dumps(document, indent=2, default=str) + "\n")
    (out / f"{name}.md").write_text(markdown.rstrip() + "\n")
    return path


@contextlib.contextmanager
def engine_directory(prefix: str = "meterline-bench-chdb-") -> Iterator[str]:
    """A temporary directory for the embedded engine, removed afterwards. The engine may
    still be finishing a merge in it when a benchmark is done (it lives until the process
    ends), so the removal is retried for a few seconds before it gives up quietly."""
    directory = tempfile.mkdtemp(prefix=prefix)
    try:
        yield directory
    finally:
        for _ in range(20):
            try:
                shutil.rmtree(directory)
                break
            except FileNotFoundError:
                break
            except OSError:
                time.sleep(0.25)
        else:
            shutil.rmtree(directory, ignore_errors=True)
