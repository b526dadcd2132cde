"""What every fault-injection test needs: the services as real processes, traffic that
remembers the usage each client received, and the report compared with it.

The services run exactly as an operator runs them (``meterline simulator``, ``meterline
ingress``, ``meterline all-in-one`` reading Kafka into chDB and serving the report), except
that a consumer can be started through ``tests.faults.crashing``, which kills itself with
SIGKILL at a chosen point of the pipeline."""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from functools import cache
from pathlib import Path
from typing import Any

import httpx
from genai_prices import Usage, calc_price

from meterline.common.config import new_key
from meterline.demo import write_config
from meterline.ingress.metering import EVENT_ID_HEADER
from meterline.processes import free_port, wait_http

REPO = Path(__file__).resolve().parents[2]
TEAMS = ("acme", "globex", "initech", "umbrella")
MODELS = ("gpt-4o", "gpt-4o-mini", "o4-mini")
METRICS = ("input_tokens", "output_tokens", "cached_input_tokens", "reasoning_tokens")


@cache
def market_cost(model: str, input_tokens: int, output_tokens: int, cached: int) -> Decimal:
    """genai-prices' own number for one request, as the consumer prices it."""
    price = calc_price(
        Usage(input_tokens=input_tokens, output_tokens=output_tokens, cache_read_tokens=cached),
        model_ref=model,
        provider_id="openai",
        genai_request_timestamp=datetime.now(UTC),
    )
    return Decimal(price.total_price)


@dataclass
class Received:
    """The usage one client received in a response."""

    team: str
    model: str
    input_tokens: int
    output_tokens: int
    cached_input_tokens: int
    reasoning_tokens: int


def expected_totals(received: list[Received]) -> dict[str, dict[str, Any]]:
    """Per team: request count, every token metric, market cost, summed over the responses."""
    totals: dict[str, dict[str, Any]] = defaultdict(
        lambda: {**dict.fromkeys(METRICS, 0), "request_count": 0, "market_cost": Decimal(0)}
    )
    for r in received:
        row = totals[r.team]
        row["request_count"] += 1
        for metric in METRICS:
            row[metric] += getattr(r, metric)
        row["market_cost"] += market_cost(
            r.model, r.input_tokens, r.output_tokens, r.cached_input_tokens
        )
    return dict(totals)


@dataclass
class Stack:
    """The processes of one test and how to (re)start them."""

    directory: Path
    kafka: str
    keys: dict[str, str] = field(default_factory=dict)
    ports: dict[str, int] = field(default_factory=dict)
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    env: dict[str, str] = field(default_factory=dict)
    reports: str = ""
    """Where /v1/report is served: the consumer (all-in-one), unless a test says otherwise."""

    @classmethod
    def create(cls, directory: Path, kafka: str | None, **env: str) -> Stack:
        """``kafka`` None: the embedded default, where ``consumer`` (all-in-one on the
        in-process bus) is the gateway too."""
        stack = cls(directory, kafka or "")
        stack.keys = {team: new_key() for team in TEAMS}
        stack.ports = {name: free_port() for name in ("simulator", "ingress", "consumer")}
        if kafka is None:
            stack.ports["ingress"] = stack.ports["consumer"]
        stack.reports = f"http://127.0.0.1:{stack.ports['consumer']}"
        config = directory / "meterline.toml"
        write_config(config, f"http://127.0.0.1:{stack.ports['simulator']}/v1", stack.keys)
        suffix = uuid.uuid4().hex[:8]
        stack.env = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
            "METERLINE_CONFIG_FILE": str(config),
            "METERLINE_CLICKHOUSE_DATABASE": f"faults_{suffix}",
            "KAFKA_BOOTSTRAP_SERVERS": kafka or "",
            "METERLINE_USAGE_TOPIC": f"usage-events-{suffix}",
            "METERLINE_DEAD_LETTER_TOPIC": f"usage-events-dlq-{suffix}",
            "METERLINE_CONSUMER_GROUP": f"meterline-{suffix}",
            "METERLINE_MAX_BATCH_ROWS": "200",
            "METERLINE_MAX_BATCH_SECONDS": "0.3",
            "METERLINE_KAFKA_SESSION_TIMEOUT_MS": "1500",
            "DEMO_PROVIDER_KEY": "sk-simulator",
            **env,
        }
        stack.env.pop("CLICKHOUSE_URL", None)
        if kafka is None:
            stack.env.pop("KAFKA_BOOTSTRAP_SERVERS")
        return stack

    @property
    def gateway(self) -> str:
        return f"http://127.0.0.1:{self.ports['ingress']}"

    def log(self, name: str) -> Path:
        return self.directory / f"{name}.log"

    def start(
        self,
        name: str,
        *,
        crash_at: str | None = None,
        crash_after: int = 1,
        command: str | None = None,
        data: str | None = None,
    ) -> None:
        """Start ``simulator``, ``ingress`` or ``consumer`` (all-in-one on Kafka: the
        consumer, plus the report on the same chDB data directory) and wait until it
        serves. ``crash_at`` makes the consumer SIGKILL itself at that point, which may
        come before it ever answered: then only its start is waited for. ``command`` runs
        another meterline command under that name (``meterline consumer`` has no port and is
        not waited for), ``data`` another service's data directory."""
        env = {**self.env, "METERLINE_DATA_DIR": str(self.directory / f"data-{data or name}")}
        command = (
            command
            or {
                "simulator": "simulator",
                "ingress": "ingress",
                "consumer": "all-in-one",
            }[name]
        )
        ports = [] if command == "consumer" else ["--port", str(self.ports[name])]
        if command == "consumer":
            # Its metrics and probes port, free: other consumers may run on this machine.
            env["METERLINE_CONSUMER_HTTP_PORT"] = str(free_port())
        module = "meterline.cli"
        if crash_at is not None:
            module = "tests.faults.crashing"
            env |= {
                "METERLINE_TEST_CRASH_AT": crash_at,
                "METERLINE_TEST_CRASH_AFTER": str(crash_after),
            }
        with self.log(name).open("ab") as out:
            out.write(
                f"\n=== {datetime.now(UTC)} start {command} crash_at={crash_at} ===\n".encode()
            )
            out.flush()
            process = subprocess.Popen(
                [sys.executable, "-m", module, command, *ports],
                env=env,
                cwd=REPO,
                stdout=out,
                stderr=out,
            )
        self.processes[name] = process
        STARTED.append(process)
        if crash_at is None and ports:
            wait_http(f"http://127.0.0.1:{self.ports[name]}/healthz", process, self.log(name))

    def kill(self, name: str) -> None:
        """SIGKILL: a crash."""
        process = self.processes.pop(name)
        process.kill()
        process.wait()

    def terminate(self, name: str, timeout: float = 60) -> int:
        """SIGTERM, the graceful stop, and its exit status. A process still running after
        ``timeout`` is killed, and the test fails: a graceful stop that does not end is a
        bug, and the process must not outlive the test."""
        process = self.processes.pop(name)
        process.send_signal(signal.SIGTERM)
        try:
            return process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
            raise AssertionError(
                f"{name} was still running {timeout:.0f}s after SIGTERM; killed"
            ) from None

    def stop_all(self, timeout: float = 30) -> None:
        """Every process still running: SIGTERM to all at once, SIGKILL to those still
        there after ``timeout``. Never raises, so it may run on any way out of a test."""
        processes, self.processes = self.processes, {}
        stop_processes(list(processes.values()), timeout)

    def metrics(self) -> dict[str, float]:
        """The ingress's /metrics, parsed."""
        text = httpx.get(f"{self.gateway}/metrics", timeout=5).text
        return {
            name: float(value)
            for name, value in (
                line.split(" ", 1) for line in text.splitlines() if not line.startswith("#")
            )
        }

    def report(self) -> dict[str, dict[str, Any]]:
        """Per team: what ``/v1/report`` adds up to (all models, yesterday to tomorrow)."""
        today = datetime.now(UTC).date()
        params = {
            "group_by": "model",
            "start_date": (today - timedelta(days=1)).isoformat(),
            "end_date": (today + timedelta(days=1)).isoformat(),
        }
        totals: dict[str, dict[str, Any]] = {}
        for team, key in self.keys.items():
            response = httpx.get(
                f"{self.reports}/v1/report",
                params=params,
                headers={"Authorization": f"Bearer {key}"},
                timeout=30,
            )
            assert response.status_code == 200, response.text
            rows = json.loads(response.text, parse_float=Decimal)["results"]
            if rows:
                totals[team] = {
                    **{m: sum(r[m] for r in rows) for m in METRICS},
                    "request_count": sum(r["request_count"] for r in rows),
                    "market_cost": sum((Decimal(str(r["market_cost"])) for r in rows), Decimal(0)),
                }
        return totals

    def recorded(self, cut_off: list[CutOff]) -> list[Received]:
        """The usage the warehouse holds for answers that were cut off, looked up one by one
        (``/v1/generation``): the gateway recorded those whose event was published before
        it died, and their usage counts like any other."""
        found: list[Received] = []
        for cut in cut_off:
            response = httpx.get(
                f"{self.reports}/v1/generation",
                params={"id": cut.event_id},
                headers={"Authorization": f"Bearer {self.keys[cut.team]}"},
                timeout=30,
            )
            if response.status_code == 404:
                continue
            assert response.status_code == 200, response.text
            row = response.json()
            found.append(Received(cut.team, row["model"], *(row[m] for m in METRICS)))
        return found

    def wait_for_report(
        self, received: list[Received], timeout: float = 90
    ) -> tuple[dict[str, dict[str, Any]], dict[str, dict[str, Any]]]:
        """The report once it holds at least as many requests as were received (or the
        timeout passed), checked once more a moment later so that a late double count
        shows too; and what the clients received."""
        want = expected_totals(received)
        total = len(received)
        deadline = time.monotonic() + timeout
        while True:
            got = self.report()
            counted = sum(t["request_count"] for t in got.values())
            if counted >= total or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        time.sleep(1.5)
        return self.report(), want


class Traffic:
    """Clients in threads sending Chat Completions requests through the gateway, streamed
    and not, across teams and models, until stopped; ``received`` holds the usage of every
    answered request, ``errors`` counts requests without an answer."""

    def __init__(self, stack: Stack, clients: int = 4, rate: float | None = None):
        self._stack = stack
        self._clients = clients
        self._interval = clients / rate if rate else 0.0
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()
        self.received: list[Received] = []
        self.errors: Counter[str] = Counter()
        self.cut_off: list[CutOff] = []
        """Answers cut off after their headers (the gateway was killed): the event may or
        may not have been recorded, and its id says which."""

    def __enter__(self) -> Traffic:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        self._stop.clear()
        self._threads = [
            threading.Thread(target=self._run, args=(n,), daemon=True) for n in range(self._clients)
        ]
        for thread in self._threads:
            thread.start()

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(60)

    @property
    def count(self) -> int:
        return len(self.received)

    def wait_for(self, count: int, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while self.count < count:
            assert time.monotonic() < deadline, f"only {self.count} of {count} requests answered"
            time.sleep(0.05)

    def _run(self, worker: int) -> None:
        rng = random.Random(worker)
        with httpx.Client(base_url=self._stack.gateway, timeout=30) as client:
            n = worker
            while not self._stop.is_set():
                started = time.monotonic()
                try:
                    received = send(client, self._stack.keys, n, rng)
                except CutOff as cut:
                    with self._lock:
                        self.cut_off.append(cut)
                        self.errors[type(cut.__cause__).__name__] += 1
                    time.sleep(0.05)
                except (httpx.HTTPError, AssertionError) as error:
                    with self._lock:
                        self.errors[type(error).__name__] += 1
                    time.sleep(0.05)
                else:
                    with self._lock:
                        self.received.append(received)
                n += self._clients
                if self._interval:
                    time.sleep(max(0.0, self._interval - (time.monotonic() - started)))


def request(
    keys: dict[str, str], n: int, rng: random.Random
) -> tuple[str, str, dict[str, Any], dict[str, str]]:
    """Request ``n`` of the mix: its team, model, body and headers. Odd ones stream."""
    team = TEAMS[n % len(TEAMS)]
    model = MODELS[n % len(MODELS)]
    body: dict[str, Any] = {
        "model": f"openai/{model}",
        "messages": [{"role": "user", "content": f"question {n} " * rng.randint(1, 40)}],
        "user": f"user_{n % 7}",
    }
    if n % 5 == 0:
        body["prompt_cache_key"] = "shared-prefix"
    if n % 2:
        body |= {"stream": True, "stream_options": {"include_usage": True}}
    headers = {"Authorization": f"Bearer {keys[team]}", "ai-reporting-tags": f"feature:{n % 3}"}
    return team, model, body, headers


def received(team: str, model: str, usage: dict[str, Any]) -> Received:
    """What a client received, from the Chat Completions usage of its answer."""
    details = usage.get("prompt_tokens_details") or {}
    completion = usage.get("completion_tokens_details") or {}
    return Received(
        team=team,
        model=model,
        input_tokens=usage["prompt_tokens"],
        output_tokens=usage["completion_tokens"],
        cached_input_tokens=details.get("cached_tokens") or 0,
        reasoning_tokens=completion.get("reasoning_tokens") or 0,
    )


class CutOff(Exception):
    """A request whose answer began (its headers, with the event id) but did not end."""

    def __init__(self, team: str, event_id: str):
        super().__init__(f"the answer to {event_id} was cut off")
        self.team = team
        self.event_id = event_id


def send(client: httpx.Client, keys: dict[str, str], n: int, rng: random.Random) -> Received:
    """One request; the usage its response carried."""
    team, model, body, headers = request(keys, n, rng)
    usage: dict[str, Any] | None = None
    with client.stream("POST", "/v1/chat/completions", json=body, headers=headers) as response:
        assert response.status_code == 200, response.read()
        try:
            if body.get("stream"):
                for line in response.iter_lines():
                    if line.startswith("data: {"):
                        usage = json.loads(line[6:]).get("usage") or usage
            else:
                usage = json.loads(response.read())["usage"]
        except httpx.HTTPError as error:
            raise CutOff(team, response.headers[EVENT_ID_HEADER]) from error
    assert usage is not None
    return received(team, model, usage)


STARTED: list[subprocess.Popen[bytes]] = []
"""Every process any stack started, for ``stop_leftovers``."""


def stop_processes(processes: list[subprocess.Popen[bytes]], timeout: float) -> None:
    """SIGTERM to every one still running, then SIGKILL to those left after ``timeout``."""
    for process in processes:
        if process.poll() is None:
            with contextlib.suppress(OSError):
                process.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + timeout
    for process in processes:
        try:
            process.wait(max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            with contextlib.suppress(OSError):
                process.kill()
            process.wait()


def stop_leftovers(timeout: float = 10) -> None:
    """Whatever a test left running (it failed before ``running`` could stop it, or popped
    a process from its stack and lost it), so that no service outlives its test: called
    after every fault test, and at exit."""
    leftovers = [process for process in STARTED if process.poll() is None]
    STARTED.clear()
    stop_processes(leftovers, timeout)


atexit.register(stop_leftovers)


@contextlib.contextmanager
def running(stack: Stack) -> Iterator[Stack]:
    try:
        yield stack
    finally:
        stack.stop_all()


def describe(received: list[Received], got: dict[str, dict[str, Any]]) -> str:
    counted = sum(t["request_count"] for t in got.values())
    return f"{len(received)} requests answered, {counted} in the report"
