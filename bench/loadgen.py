"""An open-loop HTTP/1.1 load generator, run as its own process.

Request ``i`` is due at ``start + i / rate`` whatever happened to the earlier ones (open
loop: a slow server does not slow the arrivals down, as it would with a fixed number of
clients each waiting for its answer). Latency is measured from the due time, not from the
moment the request was written, so a generator that fell behind adds to the latency it
reports instead of hiding it.

It is deliberately lean, so that its own cost stays small next to the server's: uvloop,
prebuilt request bytes, kept-alive connections from a pool (a new one is opened only when
every open one is busy), and httptools (the parser uvicorn itself uses) to find where each
response ends. The benchmarks measure the generator's own overhead by pointing it straight
at the provider simulator.

    python -m bench.loadgen --port 8080 --path /v1/chat/completions --rate 500 \
        --duration 10 --bodies bodies.json --header "authorization: Bearer KEY"

prints one JSON object: latencies and times to the first body byte (ms, from the due time),
errors by kind, the achieved rate, the scheduler's lag and the generator's CPU time.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import sys
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, cast

import httptools
import uvloop

MAX_CONNECTIONS = 1024
REQUEST_TIMEOUT_S = 30.0


class _Connection(asyncio.Protocol):
    """One kept-alive connection carrying one request at a time."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self._waiter: asyncio.Future[int] | None = None
        self._parser: httptools.HttpResponseParser | None = None
        self.first_body_at = 0.0
        self.body_bytes = 0
        self.event_id: bytes | None = None
        self._keep_alive = True

    # asyncio.Protocol
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without inheriting from it.
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        if self._parser is None:
            return  # nothing asked for: a stray byte after an answer; ignored
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError as error:
            self._fail(error)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._fail(exc or ConnectionResetError("connection closed by the server"))

    # httptools callbacks
    def on_header(self, name: bytes, value: bytes) -> None:
        if name.lower() == b"x-meterline-event-id":
            self.event_id = value

    def on_body(self, body: bytes) -> None:
        if not self.first_body_at:
            self.first_body_at = time.perf_counter()
        self.body_bytes += len(body)

    def on_message_complete(self) -> None:
        parser = self._parser
        assert parser is not None
        self._keep_alive = parser.should_keep_alive()
        waiter, self._waiter, self._parser = self._waiter, None, None
        if waiter is not None and not waiter.done():
            waiter.set_result(parser.get_status_code())

    def _fail(self, error: BaseException) -> None:
        waiter, self._waiter, self._parser = self._waiter, None, None
        if waiter is not None and not waiter.done():
            waiter.set_exception(error)

    async def request(self, raw: bytes, timeout: float) -> int:
        """Send one request and wait up to ``timeout`` s for the whole answer; its status."""
        assert self.transport is not None
        self._parser = httptools.HttpResponseParser(self)
        self.first_body_at = 0.0
        self.body_bytes = 0
        self.event_id = None
        waiter: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self._waiter = waiter
        self.transport.write(raw)
        status = await asyncio.wait_for(waiter, max(timeout, 0.001))
        if not self._keep_alive:
            self.close()
        return status

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()


@dataclass
class Results:
    latencies_ms: list[float] = field(default_factory=list)
    ttfb_ms: list[float] = field(default_factory=list)
    lags_ms: list[float] = field(default_factory=list)
    event_ids: list[str] = field(default_factory=list)
    errors: Counter[str] = field(default_factory=Counter)
    completed: int = 0
    body_bytes: int = 0


class LoadGenerator:
    def __init__(self, host: str, port: int, requests: Sequence[bytes]):
        self._host = host
        self._port = port
        self._requests = requests
        self._idle: list[_Connection] = []
        self._open = 0
        self._freed: asyncio.Condition | None = None
        self.peak_connections = 0

    async def _acquire(self) -> _Connection:
        while self._idle:
            connection = self._idle.pop()
            if not connection.closed:
                return connection
            self._open -= 1
        assert self._freed is not None
        while self._open >= MAX_CONNECTIONS:
            async with self._freed:
                await self._freed.wait()
            if self._idle:
                return await self._acquire()
        self._open += 1
        self.peak_connections = max(self.peak_connections, self._open)
        try:
            _, connection = await asyncio.get_running_loop().create_connection(
                _Connection, self._host, self._port
            )
        except BaseException:
            self._open -= 1
            raise
        return connection

    async def _release(self, connection: _Connection) -> None:
        if connection.closed:
            self._open -= 1
        else:
            self._idle.append(connection)
        assert self._freed is not None
        if self._open >= MAX_CONNECTIONS:
            async with self._freed:
                self._freed.notify()

    async def _one(self, index: int, due: float, results: Results | None) -> None:
        raw = self._requests[index % len(self._requests)]
        connection: _Connection | None = None
        # The timeout runs from the due time, waiting for a free connection included: past
        # a server's capacity the backlog grows without end, and a run must still end (by
        # its duration plus REQUEST_TIMEOUT_S), counting what did not come back as errors.
        deadline = due + REQUEST_TIMEOUT_S
        try:
            connection = await asyncio.wait_for(
                self._acquire(), max(deadline - time.perf_counter(), 0.001)
            )
            sent = time.perf_counter()
            status = await connection.request(raw, deadline - sent)
        except (OSError, TimeoutError, httptools.HttpParserError) as error:
            if connection is not None:
                connection.close()
                await self._release(connection)
            if results is not None:
                results.errors[type(error).__name__] += 1
            return
        done = time.perf_counter()
        await self._release(connection)
        if results is None:
            return
        if status >= 400:
            results.errors[f"http_{status}"] += 1
            return
        results.completed += 1
        results.latencies_ms.append((done - due) * 1000)
        results.ttfb_ms.append(((connection.first_body_at or done) - due) * 1000)
        results.lags_ms.append((sent - due) * 1000)
        results.body_bytes += connection.body_bytes
        if connection.event_id is not None:
            results.event_ids.append(connection.event_id.decode())

    async def run(self, rate: float, duration: float, warmup: float) -> dict[str, Any]:
        self._freed = asyncio.Condition()
        results = Results()
        total_warmup = int(rate * warmup)
        total = total_warmup + int(rate * duration)
        tasks: set[asyncio.Task[None]] = set()
        start = time.perf_counter() + 0.01
        cpu_before = _cpu_seconds()
        measured_start = start + total_warmup / rate
        for index in range(total):
            due = start + index / rate
            delay = due - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            task = asyncio.create_task(
                self._one(index, due, results if index >= total_warmup else None)
            )
            tasks.add(task)
            task.add_done_callback(tasks.discard)
        if tasks:
            await asyncio.wait(tasks)
        elapsed = time.perf_counter() - measured_start
        cpu = _cpu_seconds() - cpu_before
        for connection in self._idle:
            connection.close()
        return {
            "rate": rate,
            "duration_s": duration,
            "warmup_s": warmup,
            "sent": total - total_warmup,
            "completed": results.completed,
            "achieved_rate": results.completed / elapsed if elapsed > 0 else 0.0,
            "errors": dict(results.errors),
            "latencies_ms": results.latencies_ms,
            "ttfb_ms": results.ttfb_ms,
            "lags_ms": results.lags_ms,
            "event_ids": results.event_ids,
            "body_bytes": results.body_bytes,
            "peak_connections": self.peak_connections,
            "cpu_seconds": cpu,
            "cpu_per_request_us": cpu / total * 1e6 if total else 0.0,
        }


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def build_request(
    host: str, port: int, path: str, body: bytes, headers: Sequence[tuple[str, str]]
) -> bytes:
    lines = [
        f"POST {path} HTTP/1.1",
        f"host: {host}:{port}",
        "content-type: application/json",
        f"content-length: {len(body)}",
        *(f"{name}: {value}" for name, value in headers),
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.loadgen", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--path", default="/v1/chat/completions")
    parser.add_argument("--rate", type=float, required=True, help="requests per second")
    parser.add_argument("--duration", type=float, required=True, help="measured seconds")
    parser.add_argument("--warmup", type=float, default=1.0, help="unmeasured seconds first")
    parser.add_argument(
        "--bodies", required=True, help="a JSON file holding a list of request bodies (objects)"
    )
    parser.add_argument("--header", action="append", default=[], help="'name: value'")
    args = parser.parse_args(argv)

    with open(args.bodies) as file:
        bodies = json.load(file)
    headers = [tuple(part.strip() for part in h.split(":", 1)) for h in args.header]
    requests = [
        build_request(
            args.host,
            args.port,
            args.path,
            json.dumps(body, separators=(",", ":")).encode(),
            headers,
        )
        for body in bodies
    ]
    generator = LoadGenerator(args.host, args.port, requests)
    result = uvloop.run(generator.run(args.rate, args.duration, args.warmup))
    json.dump(result, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
