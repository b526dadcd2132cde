"""The upstream transport honours the proxy variables it read at start-up: through the
proxy by default, around it for the hosts ``NO_PROXY`` names."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
import pytest

from meterline.ingress.transport import AiohttpTransport


@asynccontextmanager
async def recording_server(name: bytes) -> AsyncIterator[tuple[int, list[bytes]]]:
    """A bare HTTP/1.1 server on loopback that keeps each request line and answers with
    its own ``name``, so a test can tell which server a request reached and how."""
    lines: list[bytes] = []

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        lines.append(head.split(b"\r\n", 1)[0])
        length = 0
        for line in head.split(b"\r\n")[1:]:
            if line.lower().startswith(b"content-length:"):
                length = int(line.split(b":", 1)[1])
        await reader.readexactly(length)
        writer.write(
            b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s"
            % (len(name), name)
        )
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(answer, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield port, lines
    finally:
        server.close()
        await server.wait_closed()


async def post(url: str) -> str:
    transport = AiohttpTransport(max_connections=4, keepalive_expiry=5.0)
    async with httpx.AsyncClient(transport=transport, trust_env=False) as client:
        response = await client.post(url, content=b'{"model":"m"}')
        return response.text


async def test_requests_go_through_the_proxy_the_environment_names(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async with recording_server(b"proxy") as (proxy_port, proxy_lines):
        monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{proxy_port}")
        monkeypatch.delenv("NO_PROXY", raising=False)
        monkeypatch.delenv("no_proxy", raising=False)
        monkeypatch.delenv("http_proxy", raising=False)
        answer = await post("http://provider.invalid:8080/v1/chat/completions")
    assert answer == "proxy"
    # A forward proxy is asked for the absolute URL.
    assert proxy_lines == [b"POST http://provider.invalid:8080/v1/chat/completions HTTP/1.1"]


async def test_hosts_in_no_proxy_are_reached_directly(monkeypatch: pytest.MonkeyPatch) -> None:
    async with (
        recording_server(b"proxy") as (proxy_port, proxy_lines),
        recording_server(b"provider") as (provider_port, provider_lines),
    ):
        monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{proxy_port}")
        monkeypatch.setenv("NO_PROXY", "127.0.0.1")
        monkeypatch.delenv("http_proxy", raising=False)
        monkeypatch.delenv("no_proxy", raising=False)
        answers = [await post(f"http://127.0.0.1:{provider_port}/v1/messages") for _ in range(2)]
    assert answers == ["provider", "provider"]
    assert provider_lines == [b"POST /v1/messages HTTP/1.1"] * 2
    assert proxy_lines == []
