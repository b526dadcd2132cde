"""Ingress overhead: the latency the gateway adds to a call, and the rate one process holds.

Method. The provider simulator (no artificial delay) and the gateway run as their own
processes, the way an operator runs them: ``meterline all-in-one`` (embedded: in-process
bus, the consumer writing to chDB in the same process) and ``meterline ingress`` publishing
to a real Kafka broker. A separate load-generator process (``bench.loadgen``, open loop:
each request is due at a fixed time whatever the earlier ones did, latency counted from that
due time) sends Chat Completions requests on loopback at a fixed rate, streamed and not, to
the simulator directly and through each gateway, the provider receiving the same bodies
either way. Runs are interleaved (direct, all-in-one, ingress; direct, ...) and repeated,
so a neighbour's burst of CPU falls on all of them alike.

The added latency is a difference of distributions: p50 through the gateway minus p50
direct (and the same for p99), per round, then the median over rounds. It is not a
per-request difference, which cannot be measured when the two calls are not the same call;
the direct run also carries the generator's own cost and the simulator's, so the difference
is what the gateway adds on top of both. The highest sustained rate steps the rate up until
a run has errors, falls short of the rate it was asked for, or its p99 passes
``--max-p99-ms``. Peak RSS is each service process's VmHWM at the end.

With ``--budgets`` a further all-in-one runs the same configuration plus the five hard
budgets of ``bench.budget_check`` (the team, every user daily, every user on a feature tag,
every tag, the model), large enough that every request is admitted, so each request pays
the budgets' check, reservation and settle: its added latency beside the plain
all-in-one's, in the same rounds, is what budgets cost a request end to end.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.common import (
    REPO,
    argument_parser,
    kafka_bootstrap,
    markdown_table,
    median,
    peak_rss_mib,
    percentile,
    write_results,
)
from meterline.common.config import new_key
from meterline.demo import write_config
from meterline.processes import free_port, meterline_process, wait_http

NAME = "ingress_overhead"
BUDGETS_TOML = """
[[teams.budgets]]
id = "team"
amount_usd = "1000000"

[[teams.budgets]]
id = "per-user"
amount_usd = "1000"
scope = { user = "*" }
period = "daily"

[[teams.budgets]]
id = "per-user-feature"
amount_usd = "1000"
scope = { user = "*", tag = "feature:1" }
period = "weekly"
timezone = "America/New_York"

[[teams.budgets]]
id = "per-tag"
amount_usd = "100000"
scope = { tag = "*" }

[[teams.budgets]]
id = "model"
amount_usd = "100000"
scope = { model = "gpt-4o-mini" }
"""
"""The hard budgets of ``--budgets``: ``bench.budget_check``'s, on the bodies' model and tags."""
PROVIDER_KEY = "sk-bench-simulator"
TARGET_P50_MS = 1.0
TARGET_P99_MS = 5.0
TARGET_RATE = 500
MAX_RATE_STEPS = (250, 500, 750, 1000, 1250, 1500, 2000, 2500, 3000)


@dataclass(frozen=True)
class Target:
    """Where the load goes: a port, the bodies and the headers."""

    name: str
    port: int
    key: str
    gateway: bool


@dataclass
class Service:
    name: str
    proc: subprocess.Popen[bytes]


def request_bodies(*, streamed: bool, gateway: bool, count: int = 16) -> list[dict[str, Any]]:
    """Chat Completions bodies of mixed sizes. Through the gateway they carry a
    ``provider/model`` name and a user and tags in ``providerOptions``, which the gateway
    takes off: the provider then receives what it receives in the direct run."""
    bodies = []
    for n in range(count):
        body: dict[str, Any] = {
            "model": "openai/gpt-4o-mini" if gateway else "gpt-4o-mini",
            "messages": [
                {"role": "system", "content": "You are a concise assistant."},
                {"role": "user", "content": f"Summarise ticket {n}. " * (1 + 13 * n)},
            ],
        }
        if streamed:
            body["stream"] = True
            body["stream_options"] = {"include_usage": True}
        if gateway:
            body["providerOptions"] = {
                "gateway": {"user": f"user_{n % 4}", "tags": [f"feature:{n % 3}", "plan:pro"]}
            }
        bodies.append(body)
    return bodies


def run_load(
    target: Target,
    *,
    rate: float,
    duration: float,
    streamed: bool,
    workdir: Path,
    warmup: float = 1.0,
    pids: dict[str, int] | None = None,
) -> dict[str, Any]:
    """One load-generator process against ``target``; its raw result, with the CPU time each
    of ``pids`` used during the run (``cpu_seconds``)."""
    bodies = workdir / f"bodies-{target.gateway}-{streamed}.json"
    if not bodies.exists():
        bodies.write_text(json.dumps(request_bodies(streamed=streamed, gateway=target.gateway)))
    command = [
        sys.executable,
        "-m",
        "bench.loadgen",
        "--port",
        str(target.port),
        "--rate",
        str(rate),
        "--duration",
        str(duration),
        "--warmup",
        str(warmup),
        "--bodies",
        str(bodies),
        "--header",
        f"authorization: Bearer {target.key}",
    ]
    pids = pids or {}
    cpu_before = {name: cpu_seconds(pid) for name, pid in pids.items()}
    done = subprocess.run(  # noqa: S603 - our own module
        command, cwd=REPO, capture_output=True, text=True, timeout=duration + warmup + 120
    )
    if done.returncode != 0:
        raise RuntimeError(f"load generator failed:\n{done.stderr[-4000:]}")
    result: dict[str, Any] = json.loads(done.stdout)
    result["service_cpu_seconds"] = {
        name: cpu_seconds(pid) - cpu_before[name] for name, pid in pids.items()
    }
    return result


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (``/proc/PID/stat``)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    # utime and stime are fields 14 and 15 of stat(5); [0] here is field 3.
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def summarize(raw: dict[str, Any]) -> dict[str, Any]:
    latencies = raw["latencies_ms"]
    summary = {
        key: raw[key]
        for key in ("rate", "sent", "completed", "achieved_rate", "errors", "peak_connections")
    }
    summary["error_count"] = sum(raw["errors"].values())
    # Answers that carried the gateway's event id header: every metered one.
    summary["event_ids"] = len(raw["event_ids"])
    summary["generator_cpu_us_per_request"] = round(raw["cpu_per_request_us"], 1)
    # Everything the run sent, warm-up included, is in the services' CPU time.
    requests = raw["sent"] * (1 + raw.get("warmup_s", 0) / raw["duration_s"])
    summary["cpu_us_per_request"] = {
        name: round(seconds / requests * 1e6, 1)
        for name, seconds in raw.get("service_cpu_seconds", {}).items()
    }
    if latencies:
        summary["p50_ms"] = round(percentile(latencies, 50), 3)
        summary["p99_ms"] = round(percentile(latencies, 99), 3)
        summary["ttfb_p50_ms"] = round(percentile(raw["ttfb_ms"], 50), 3)
        summary["lag_p99_ms"] = round(percentile(raw["lags_ms"], 99), 3)
    return summary


def sustained(summary: dict[str, Any], max_p99_ms: float) -> bool:
    p99: float = summary.get("p99_ms", float("inf"))
    errors: int = summary["error_count"]
    achieved: float = summary["achieved_rate"]
    return errors == 0 and achieved >= 0.97 * summary["rate"] and p99 <= max_p99_ms


@contextlib.contextmanager
def services(
    workdir: Path, *, kafka: bool, log_off: bool, budgets: bool = False
) -> Iterator[tuple[dict[str, Target], list[Service]]]:
    """The simulator, ``meterline all-in-one`` (embedded, its bus the local log on disk),
    with ``log_off`` a second all-in-one whose bus is memory only, with ``budgets`` one
    whose team has hard budgets, and with ``kafka`` ``meterline ingress`` publishing to a
    broker; each its own process."""
    key = new_key()
    simulator_port, all_in_one_port, ingress_port = free_port(), free_port(), free_port()
    config = workdir / "meterline.toml"
    write_config(config, f"http://127.0.0.1:{simulator_port}/v1", {"bench": key})
    env = {
        **os.environ,
        "METERLINE_CONFIG_FILE": str(config),
        "METERLINE_DATA_DIR": str(workdir / "data"),
        "DEMO_PROVIDER_KEY": PROVIDER_KEY,
        "METERLINE_LOG_LEVEL": "WARNING",
    }
    env.pop("KAFKA_BOOTSTRAP_SERVERS", None)
    env.pop("CLICKHOUSE_URL", None)
    with contextlib.ExitStack() as stack:
        started: list[tuple[Service, int, Path]] = []

        def start(name: str, args: list[str], port: int, process_env: dict[str, str]) -> None:
            log = workdir / f"{name}.log"
            proc = stack.enter_context(
                meterline_process([*args, "--port", str(port)], process_env, log)
            )
            started.append((Service(name, proc), port, log))

        start("simulator", ["simulator"], simulator_port, env)
        start("all-in-one", ["all-in-one"], all_in_one_port, env)
        targets = {
            "direct": Target("direct", simulator_port, PROVIDER_KEY, gateway=False),
            "all-in-one": Target("all-in-one", all_in_one_port, key, gateway=True),
        }
        if log_off:
            log_off_port = free_port()
            log_off_env = {
                **env,
                "METERLINE_DATA_DIR": str(workdir / "log-off-data"),
                "METERLINE_LOCAL_LOG_MAX_BYTES": "0",
            }
            start("all-in-one-log-off", ["all-in-one"], log_off_port, log_off_env)
            targets["all-in-one, log off"] = Target(
                "all-in-one, log off", log_off_port, key, gateway=True
            )
        if budgets:
            budgets_port = free_port()
            budgets_config = workdir / "meterline-budgets.toml"
            budgets_config.write_text(config.read_text() + BUDGETS_TOML)
            budgets_env = {
                **env,
                "METERLINE_CONFIG_FILE": str(budgets_config),
                "METERLINE_DATA_DIR": str(workdir / "budgets-data"),
            }
            start("all-in-one-budgets", ["all-in-one"], budgets_port, budgets_env)
            targets["all-in-one, budgets"] = Target(
                "all-in-one, budgets", budgets_port, key, gateway=True
            )
        if kafka:
            bootstrap = stack.enter_context(kafka_bootstrap())
            kafka_env = {
                **env,
                "KAFKA_BOOTSTRAP_SERVERS": bootstrap,
                "METERLINE_USAGE_TOPIC": f"bench-usage-{os.urandom(4).hex()}",
                "METERLINE_DATA_DIR": str(workdir / "ingress-data"),
            }
            start("ingress", ["ingress"], ingress_port, kafka_env)
            targets["ingress+kafka"] = Target("ingress+kafka", ingress_port, key, gateway=True)
        for service, port, log in started:
            wait_http(f"http://127.0.0.1:{port}/healthz", service.proc, log)
        yield targets, [service for service, _, _ in started]


def main(argv: list[str] | None = None) -> int:
    parser = argument_parser(NAME, __doc__ or "")
    parser.add_argument("--rates", type=float, nargs="+", default=[200, 500, 1000])
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per run")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved repetitions")
    parser.add_argument("--no-kafka", action="store_true", help="embedded all-in-one only")
    parser.add_argument(
        "--no-log-off",
        action="store_true",
        help="skip the second all-in-one whose bus is memory only (the local log off)",
    )
    parser.add_argument(
        "--budgets",
        action="store_true",
        help="a further all-in-one whose team has five hard budgets (every request admitted)",
    )
    parser.add_argument("--no-max-rate", action="store_true", help="skip the max-rate search")
    parser.add_argument("--max-p99-ms", type=float, default=100.0)
    args = parser.parse_args(argv)
    if args.quick:
        args.rates, args.duration, args.rounds = [100], 1.5, 1
        args.no_kafka = args.no_max_rate = args.no_log_off = True

    with tempfile.TemporaryDirectory(prefix="meterline-bench-ingress-") as tmp:
        workdir = Path(tmp)
        with services(
            workdir, kafka=not args.no_kafka, log_off=not args.no_log_off, budgets=args.budgets
        ) as (
            targets,
            procs,
        ):
            pids = {service.name: service.proc.pid for service in procs}
            runs = []
            for round_ in range(args.rounds):
                for rate in args.rates:
                    for streamed in (False, True):
                        for target in targets.values():
                            raw = run_load(
                                target,
                                rate=rate,
                                duration=args.duration,
                                streamed=streamed,
                                workdir=workdir,
                                warmup=0.5 if args.quick else 1.0,
                                pids=pids,
                            )
                            summary = summarize(raw)
                            summary.update(target=target.name, streamed=streamed, round=round_)
                            runs.append(summary)
                            print(json.dumps(summary), flush=True)
            max_rates = []
            if not args.no_max_rate:
                for target in targets.values():
                    best = 0.0
                    for rate in MAX_RATE_STEPS:
                        try:
                            raw = run_load(
                                target,
                                rate=rate,
                                duration=5,
                                streamed=False,
                                workdir=workdir,
                                pids=pids,
                            )
                        except (RuntimeError, subprocess.TimeoutExpired) as error:
                            # A rate the target cannot hold may wedge the run: that is the
                            # answer to this search, not a reason to lose the others.
                            print(f"{target.name} at {rate} req/s: {error}", flush=True)
                            break
                        summary = summarize(raw)
                        summary["target"] = target.name
                        print(json.dumps(summary), flush=True)
                        if not sustained(summary, args.max_p99_ms):
                            break
                        best = rate
                    max_rates.append({"target": target.name, "max_sustained_rate": best})
            rss = {service.name: round(peak_rss_mib(service.proc.pid), 1) for service in procs}

    results = aggregate(runs, list(targets))
    params = {
        "rates": args.rates,
        "duration_s": args.duration,
        "rounds": args.rounds,
        "kafka": not args.no_kafka,
        "log_off": not args.no_log_off,
        "budgets": args.budgets,
        "max_p99_ms": args.max_p99_ms,
        "quick": args.quick,
    }
    write_results(
        args.out,
        NAME,
        params,
        results,
        render(results, max_rates, rss, params),
        runs=runs,
        max_rates=max_rates,
        peak_rss_mib=rss,
    )
    return 0


def aggregate(runs: list[dict[str, Any]], target_names: list[str]) -> list[dict[str, Any]]:
    """Per rate, streamed or not, and target: the medians over rounds, and the added latency
    (each round's percentile minus the direct run's of the same round, median over rounds)."""
    results = []
    keys = sorted({(run["rate"], run["streamed"]) for run in runs})
    for rate, streamed in keys:
        by_target: dict[str, list[dict[str, Any]]] = {}
        for run in runs:
            if run["rate"] == rate and run["streamed"] == streamed:
                by_target.setdefault(run["target"], []).append(run)
        direct = {run["round"]: run for run in by_target.get("direct", [])}
        for name in target_names:
            rows = by_target.get(name, [])
            measured = [run for run in rows if "p50_ms" in run]
            row: dict[str, Any] = {
                "rate": rate,
                "streamed": streamed,
                "target": name,
                "rounds": len(rows),
                "errors": sum(run["error_count"] for run in rows),
                "achieved_rate": round(median([run["achieved_rate"] for run in rows]), 1),
                "generator_cpu_us_per_request": median(
                    [run["generator_cpu_us_per_request"] for run in rows]
                ),
            }
            if measured:
                row["p50_ms"] = round(median([run["p50_ms"] for run in measured]), 3)
                row["p99_ms"] = round(median([run["p99_ms"] for run in measured]), 3)
            if name != "direct":
                pairs = [
                    (run, direct[run["round"]])
                    for run in measured
                    if "p50_ms" in direct.get(run["round"], {})
                ]
                if pairs:
                    row["added_p50_ms"] = round(
                        median([a["p50_ms"] - b["p50_ms"] for a, b in pairs]), 3
                    )
                    row["added_p99_ms"] = round(
                        median([a["p99_ms"] - b["p99_ms"] for a, b in pairs]), 3
                    )
            results.append(row)
    return results


def _sustained_text(rate: float) -> str:
    """The highest rate held, or that not even the first step was."""
    return f"{rate:g}" if rate else f"< {MAX_RATE_STEPS[0]}"


def render(
    results: list[dict[str, Any]],
    max_rates: list[dict[str, Any]],
    rss: dict[str, float],
    params: dict[str, Any],
) -> str:
    def ms(value: float | None) -> str:
        return "-" if value is None else f"{value:.2f}"

    rows = [
        [
            f"{r['rate']:g}",
            "yes" if r["streamed"] else "no",
            r["target"],
            ms(r.get("p50_ms")),
            ms(r.get("p99_ms")),
            ms(r.get("added_p50_ms")),
            ms(r.get("added_p99_ms")),
            f"{r['achieved_rate']:g}",
            r["errors"],
        ]
        for r in results
    ]
    text = [
        f"Open-loop load for {params['duration_s']:g} s per run, median of {params['rounds']} "
        "interleaved rounds; latencies in ms from each request's due time to its last byte.\n",
        markdown_table(
            [
                "req/s",
                "streamed",
                "target",
                "p50",
                "p99",
                "added p50",
                "added p99",
                "achieved req/s",
                "errors",
            ],
            rows,
        ),
    ]
    if max_rates:
        text.append(
            "\nHighest rate sustained (non-streamed; no errors, at least 97% of the asked rate, "
            f"p99 at most {params['max_p99_ms']:g} ms), stepping through "
            f"{', '.join(str(r) for r in MAX_RATE_STEPS)} req/s:\n\n"
            + markdown_table(
                ["target", "max sustained req/s"],
                [[m["target"], _sustained_text(m["max_sustained_rate"])] for m in max_rates],
            )
        )
    text.append(
        "\nPeak RSS (MiB) at the end of the run: "
        + ", ".join(f"{name} {value:g}" for name, value in rss.items())
        + "\n"
    )
    verdicts = []
    for r in results:
        if r["rate"] != TARGET_RATE or r["target"] == "direct" or "added_p50_ms" not in r:
            continue
        met = r["added_p50_ms"] <= TARGET_P50_MS and r["added_p99_ms"] <= TARGET_P99_MS
        verdicts.append(
            f"- {r['target']}, {'streamed' if r['streamed'] else 'not streamed'}: "
            f"added p50 {r['added_p50_ms']:.2f} ms, p99 {r['added_p99_ms']:.2f} ms: "
            + ("**met**" if met else "**not met**")
        )
    if verdicts:
        text.append(
            f"\nTarget at {TARGET_RATE} req/s: added p50 <= {TARGET_P50_MS:g} ms and "
            f"p99 <= {TARGET_P99_MS:g} ms.\n\n" + "\n".join(verdicts) + "\n"
        )
    return "\n".join(text)


if __name__ == "__main__":
    sys.exit(main())
