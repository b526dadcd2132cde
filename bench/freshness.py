"""Freshness: how long after a caller has its answer the request shows in the warehouse.

Method. One probe at a time: a Chat Completions call through the gateway; the clock starts
when the whole answer (with its ``x-meterline-event-id`` header) is in; then
``GET /v1/generation?id=<event id>`` is polled every ``--poll-ms`` until it answers 200.
The time is an upper bound by at most one poll interval plus one query. Meanwhile a
load-generator process keeps ``--background-rate`` requests/s flowing, so batches close
the way they do in service, not around a lone event.

Two layouts, each service its own process:

* embedded: ``meterline all-in-one`` (in-process bus, consumer and chDB in the process);
* distributed: ``meterline ingress`` -> a real Kafka broker -> ``meterline all-in-one``
  with ``KAFKA_BOOTSTRAP_SERVERS`` set (consumer and query; chDB allows one process per
  data directory, so the two share one).

What sets the number: the consumer closes a batch at ``METERLINE_MAX_BATCH_SECONDS``
(default 1.0 s) after its oldest row, or earlier at ``max_batch_rows``; the ingress
producer lingers up to 20 ms; aiokafka's consumer waits up to ``fetch_max_wait_ms`` (500 ms
by default) for a fetch to fill. The settings used are in the results.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from bench.common import (
    REPO,
    argument_parser,
    kafka_bootstrap,
    markdown_table,
    peak_rss_mib,
    percentile,
    write_results,
)
from bench.ingress_overhead import request_bodies
from meterline.common.config import new_key
from meterline.consumer.settings import ConsumerSettings
from meterline.demo import write_config
from meterline.processes import free_port, meterline_process, wait_http

NAME = "freshness"
PROVIDER_KEY = "sk-bench-simulator"
TARGETS_P95_S = {"embedded": 2.0, "distributed": 5.0}


@dataclass(frozen=True)
class Layout:
    name: str
    gateway: str
    reports: str
    key: str
    pids: dict[str, int]
    """Each service's process id, by service name (for its peak RSS at the end)."""


@contextlib.contextmanager
def layout(name: str, workdir: Path, max_batch_seconds: float) -> Iterator[Layout]:
    key = new_key()
    simulator_port, gateway_port, query_port = free_port(), free_port(), free_port()
    config = workdir / "meterline.toml"
    write_config(config, f"http://127.0.0.1:{simulator_port}/v1", {"bench": key})
    env = {
        **os.environ,
        "METERLINE_CONFIG_FILE": str(config),
        "METERLINE_DATA_DIR": str(workdir / "data"),
        "METERLINE_MAX_BATCH_SECONDS": str(max_batch_seconds),
        "METERLINE_LOG_LEVEL": "WARNING",
        "DEMO_PROVIDER_KEY": PROVIDER_KEY,
    }
    env.pop("KAFKA_BOOTSTRAP_SERVERS", None)
    env.pop("CLICKHOUSE_URL", None)
    with contextlib.ExitStack() as stack:
        waits = []
        pids: dict[str, int] = {}

        def start(service: str, args: list[str], port: int, process_env: dict[str, str]) -> None:
            log = workdir / f"{service}.log"
            proc = stack.enter_context(
                meterline_process([*args, "--port", str(port)], process_env, log)
            )
            waits.append((f"http://127.0.0.1:{port}/healthz", proc, log))
            pids[service] = proc.pid

        start("simulator", ["simulator"], simulator_port, env)
        if name == "embedded":
            start("all-in-one", ["all-in-one"], gateway_port, env)
            query_port = gateway_port
        else:
            suffix = os.urandom(4).hex()
            env = {
                **env,
                "KAFKA_BOOTSTRAP_SERVERS": stack.enter_context(kafka_bootstrap()),
                "METERLINE_USAGE_TOPIC": f"bench-fresh-{suffix}",
                "METERLINE_DEAD_LETTER_TOPIC": f"bench-fresh-dlq-{suffix}",
                "METERLINE_CONSUMER_GROUP": f"bench-fresh-{suffix}",
            }
            ingress_env = {**env, "METERLINE_DATA_DIR": str(workdir / "ingress-data")}
            start("ingress", ["ingress"], gateway_port, ingress_env)
            start("all-in-one", ["all-in-one"], query_port, env)
        for url, proc, log in waits:
            wait_http(url, proc, log)
        yield Layout(
            name, f"http://127.0.0.1:{gateway_port}", f"http://127.0.0.1:{query_port}", key, pids
        )


@contextlib.contextmanager
def background_load(
    gateway: str, key: str, rate: float, seconds: float, workdir: Path
) -> Iterator[None]:
    """A load-generator process sending ``rate`` requests/s to the gateway until the block
    ends (or ``seconds`` pass)."""
    if rate <= 0:
        yield
        return
    bodies = workdir / "background-bodies.json"
    bodies.write_text(json.dumps(request_bodies(streamed=False, gateway=True)))
    port = gateway.rpartition(":")[2]
    command = [
        sys.executable,
        "-m",
        "bench.loadgen",
        "--port",
        port,
        "--rate",
        str(rate),
        "--duration",
        str(seconds),
        "--warmup",
        "0",
        "--bodies",
        str(bodies),
        "--header",
        f"authorization: Bearer {key}",
    ]
    proc = subprocess.Popen(  # noqa: S603 - our own module
        command, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        yield
    finally:
        proc.terminate()
        proc.wait(30)


def probe(client: httpx.Client, stack: Layout, n: int, poll_s: float, timeout_s: float) -> float:
    """Seconds from one answer to its row in /v1/generation."""
    body = request_bodies(streamed=n % 2 == 1, gateway=True)[n % 16]
    headers = {"authorization": f"Bearer {stack.key}"}
    answer = client.post(f"{stack.gateway}/v1/chat/completions", json=body, headers=headers)
    answer.read()
    answered = time.perf_counter()
    answer.raise_for_status()
    event_id = answer.headers["x-meterline-event-id"]
    while True:
        found = client.get(
            f"{stack.reports}/v1/generation", params={"id": event_id}, headers=headers
        )
        if found.status_code == 200:
            return time.perf_counter() - answered
        if found.status_code != 404:
            found.raise_for_status()
        if time.perf_counter() - answered > timeout_s:
            raise TimeoutError(f"event {event_id} not in the warehouse after {timeout_s}s")
        time.sleep(poll_s)


def main(argv: list[str] | None = None) -> int:
    parser = argument_parser(NAME, __doc__ or "")
    parser.add_argument("--samples", type=int, default=40, help="probes per layout")
    parser.add_argument("--background-rate", type=float, default=100.0, help="requests/s")
    parser.add_argument("--poll-ms", type=float, default=20.0)
    parser.add_argument(
        "--max-batch-seconds", type=float, default=ConsumerSettings().max_batch_seconds
    )
    parser.add_argument("--layouts", nargs="+", default=["embedded", "distributed"])
    args = parser.parse_args(argv)
    if args.quick:
        args.samples, args.background_rate, args.layouts = 4, 20.0, ["embedded"]

    results: list[dict[str, Any]] = []
    for name in args.layouts:
        with (
            tempfile.TemporaryDirectory(prefix=f"meterline-bench-fresh-{name}-") as tmp,
            layout(name, Path(tmp), args.max_batch_seconds) as stack,
            httpx.Client(timeout=30) as client,
        ):
            # The first answer waits for the pool's first connection, the first batch for
            # the consumer to settle: one probe before measuring.
            probe(client, stack, 0, args.poll_ms / 1000, 60)
            seconds = args.samples * (args.max_batch_seconds + 1) + 30
            with background_load(
                stack.gateway, stack.key, args.background_rate, seconds, Path(tmp)
            ):
                times = [
                    probe(client, stack, n, args.poll_ms / 1000, 60)
                    for n in range(1, args.samples + 1)
                ]
            # Read while the services still run: VmHWM goes with the process.
            rss = {service: round(peak_rss_mib(pid), 1) for service, pid in stack.pids.items()}
        row = {
            "layout": name,
            "samples": len(times),
            "p50_s": round(percentile(times, 50), 3),
            "p95_s": round(percentile(times, 95), 3),
            "max_s": round(max(times), 3),
            "min_s": round(min(times), 3),
            "target_p95_s": TARGETS_P95_S[name],
            "times_s": [round(t, 4) for t in times],
            "peak_rss_mib": rss,
        }
        row["met"] = row["p95_s"] <= TARGETS_P95_S[name]
        print(json.dumps({k: v for k, v in row.items() if k != "times_s"}), flush=True)
        results.append(row)

    params = {
        "samples": args.samples,
        "background_rate": args.background_rate,
        "poll_ms": args.poll_ms,
        "max_batch_seconds": args.max_batch_seconds,
        "producer_linger_ms": 20,
        "consumer_fetch_max_wait_ms": 500,
        "quick": args.quick,
    }
    write_results(args.out, NAME, params, results, render(results, params))
    return 0


def render(results: list[dict[str, Any]], params: dict[str, Any]) -> str:
    rows = [
        [
            r["layout"],
            r["samples"],
            f"{r['p50_s']:.2f}",
            f"{r['p95_s']:.2f}",
            f"{r['max_s']:.2f}",
            f"{r['target_p95_s']:g}",
            "**met**" if r["met"] else "**not met**",
        ]
        for r in results
    ]
    return (
        f"Seconds from the answer to its row in `/v1/generation`, one probe at a time beside "
        f"{params['background_rate']:g} req/s of background load, polled every "
        f"{params['poll_ms']:g} ms. Consumer `METERLINE_MAX_BATCH_SECONDS` = "
        f"{params['max_batch_seconds']:g}; ingress producer linger 20 ms; consumer "
        "fetch wait up to 500 ms (aiokafka's default).\n\n"
        + markdown_table(
            ["layout", "samples", "p50 s", "p95 s", "max s", "target p95 s", "target"], rows
        )
    )


if __name__ == "__main__":
    sys.exit(main())
