"""The load generator ends a run on time even when the server stops answering: each request
times out from its due time, waiting for a free connection included, so a benchmark pushed
past a server's capacity records errors instead of hanging."""

from __future__ import annotations

import asyncio
import time

import pytest

from bench import loadgen


async def _silent_server() -> tuple[asyncio.Server, int]:
    """Accepts connections and reads requests, never answers."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while await reader.read(65536):
            pass
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    return server, port


async def _answering_server() -> tuple[asyncio.Server, int]:
    """Answers every request with a small 200 (keep-alive)."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            length = next(
                int(line.split(b":", 1)[1])
                for line in head.split(b"\r\n")
                if line.lower().startswith(b"content-length:")
            )
            await reader.readexactly(length)
            writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}")
            await writer.drain()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    return server, port


def _request(port: int) -> bytes:
    return loadgen.build_request("127.0.0.1", port, "/", b"{}", [])


def test_a_server_that_never_answers_ends_the_run_with_timeouts(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(loadgen, "REQUEST_TIMEOUT_S", 0.5)
    # Few connections, so most requests wait for one: that wait is bounded too.
    monkeypatch.setattr(loadgen, "MAX_CONNECTIONS", 2)

    async def scenario() -> dict[str, object]:
        server, port = await _silent_server()
        async with server:
            generator = loadgen.LoadGenerator("127.0.0.1", port, [_request(port)])
            return await generator.run(rate=40, duration=0.5, warmup=0.1)

    started = time.perf_counter()
    result = asyncio.run(scenario())
    assert time.perf_counter() - started < 5  # duration + warm-up + timeout, and some slack
    assert result["completed"] == 0
    assert result["errors"] == {"TimeoutError": result["sent"]}
    assert result["sent"] == 20


def test_an_answering_server_completes_every_request() -> None:
    async def scenario() -> dict[str, object]:
        server, port = await _answering_server()
        async with server:
            generator = loadgen.LoadGenerator("127.0.0.1", port, [_request(port)])
            return await generator.run(rate=100, duration=0.3, warmup=0.1)

    result = asyncio.run(scenario())
    assert result["errors"] == {}
    assert result["completed"] == result["sent"] == 30
    latencies = result["latencies_ms"]
    assert isinstance(latencies, list) and len(latencies) == 30
    assert all(0 < latency < 1000 for latency in latencies)
