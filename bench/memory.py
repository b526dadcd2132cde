"""Memory: the peak RSS of each service under the loads the other benchmarks apply.

Method. This benchmark applies no load of its own. Every other benchmark runs the services
as separate processes and reads each one's high-water mark (``VmHWM``) just before
stopping it, so the number covers the whole run, warm-up and peaks included. This module
gathers those readings from ``DIR/<benchmark>.json`` into one table, with the load that
produced each one and the commit it was measured on:

* ``consumer_throughput``: the consumer (Kafka → decode → price → chDB insert with the
  views → commit), one process per run; the largest reading per batch size;
* ``report_latency``: ``meterline query`` over the prepared warehouse, per size;
* ``ingress_overhead``: the simulator, ``meterline all-in-one`` (embedded) and ``meterline
  ingress`` (to Kafka) after every rate, streamed and not, and the highest-rate search;
* ``freshness``: the services of each layout (embedded; ingress → Kafka → all-in-one).

A benchmark whose result file is missing is left out and named below the table.

    python -m bench.memory [--out DIR]
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from bench.common import argument_parser, markdown_table, write_results

NAME = "memory"
SOURCES = ("consumer_throughput", "report_latency", "ingress_overhead", "freshness")


def _read(out: Path, name: str) -> dict[str, Any] | None:
    path = out / f"{name}.json"
    if not path.is_file():
        return None
    document: dict[str, Any] = json.loads(path.read_text())
    return document


def _row(
    service: str, load: str, rss: float, document: dict[str, Any], benchmark: str
) -> dict[str, Any]:
    return {
        "service": service,
        "load": load,
        "peak_rss_mib": round(float(rss), 1),
        "benchmark": benchmark,
        "git_commit": document.get("machine", {}).get("git_commit", ""),
        "quick": bool(document.get("params", {}).get("quick", False)),
    }


def from_consumer(document: dict[str, Any]) -> list[dict[str, Any]]:
    events = document["params"]["events"]
    return [
        _row(
            "consumer",
            f"{events:,} events from Kafka, batches of {r['batch_rows']:,} rows",
            r["peak_rss_mib_max"],
            document,
            "consumer_throughput",
        )
        for r in document["results"]
    ]


def from_report_latency(document: dict[str, Any]) -> list[dict[str, Any]]:
    requests = document["params"]["requests_per_call"]
    return [
        _row(
            "query",
            f"{run['events']:,} raw events, 4 report calls × {requests} (one client)",
            run["query_peak_rss_mib"],
            document,
            "report_latency",
        )
        for run in document["runs"]
    ]


def from_ingress(document: dict[str, Any]) -> list[dict[str, Any]]:
    params = document["params"]
    rates = "/".join(f"{rate:g}" for rate in params["rates"])
    load = (
        f"{rates} req/s, streamed and not, "
        f"{params['rounds']} round(s) of {params['duration_s']:g} s"
    )
    best = {m["target"]: m["max_sustained_rate"] for m in document.get("max_rates", [])}
    roles = {
        "simulator": "provider simulator",
        "all-in-one": "all-in-one (embedded)",
        "ingress": "ingress (to Kafka)",
    }
    rows = []
    for name, rss in document["peak_rss_mib"].items():
        target = {"all-in-one": "all-in-one", "ingress": "ingress+kafka"}.get(name)
        extra = ""
        if target in best:
            held = best[target]
            extra = (
                f"; rate search, up to {held:g} req/s sustained"
                if held
                else "; rate search from 250 req/s (not sustained)"
            )
        rows.append(_row(roles.get(name, name), load + extra, rss, document, "ingress_overhead"))
    return rows


def from_freshness(document: dict[str, Any]) -> list[dict[str, Any]]:
    rate = document["params"]["background_rate"]
    rows = []
    for result in document["results"]:
        for name, rss in result.get("peak_rss_mib", {}).items():
            if name == "simulator":
                continue  # the provider, not Meterline: measured under more load above
            role = name
            if name == "all-in-one":
                role = (
                    "all-in-one (embedded)"
                    if result["layout"] == "embedded"
                    else "all-in-one (consumer + query, from Kafka)"
                )
            elif name == "ingress":
                role = "ingress (to Kafka)"
            load = f"{rate:g} req/s + {result['samples']} probes ({result['layout']})"
            rows.append(_row(role, load, rss, document, "freshness"))
    return rows


READERS = {
    "consumer_throughput": from_consumer,
    "report_latency": from_report_latency,
    "ingress_overhead": from_ingress,
    "freshness": from_freshness,
}


def collect(out: Path) -> tuple[list[dict[str, Any]], list[str]]:
    """Every reading in ``out``, and the benchmarks with no result file there."""
    rows: list[dict[str, Any]] = []
    missing = []
    for name in SOURCES:
        document = _read(out, name)
        if document is None:
            missing.append(name)
            continue
        rows += READERS[name](document)
    return rows, missing


def render(rows: list[dict[str, Any]], missing: list[str]) -> str:
    if not rows:
        return "_no benchmark results to read yet_\n"
    table = markdown_table(
        ["service", "load", "peak RSS MiB", "measured by", "commit"],
        [
            [
                r["service"],
                r["load"] + (" (quick size)" if r["quick"] else ""),
                f"{r['peak_rss_mib']:,.0f}",
                f"`{r['benchmark']}`",
                r["git_commit"],
            ]
            for r in rows
        ],
    )
    text = [
        "Peak RSS (`VmHWM`) of each service process, read at the end of the benchmark that "
        "loaded it.\n",
        table,
    ]
    if missing:
        text.append("\nNo result yet from: " + ", ".join(f"`{m}`" for m in missing) + ".\n")
    return "\n".join(text)


def main(argv: list[str] | None = None) -> int:
    parser = argument_parser(NAME, __doc__ or "")
    args = parser.parse_args(argv)
    rows, missing = collect(args.out)
    write_results(
        args.out, NAME, {"sources": list(SOURCES)}, rows, render(rows, missing), missing=missing
    )
    print(render(rows, missing))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
