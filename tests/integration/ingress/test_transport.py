"""The provider client honours the proxy variables it read at start-up (through the
proxy by default, around it for the hosts ``NO_PROXY`` names) and reads compressed answers."""

from __future__ import annotations

import asyncio
import gzip
from collections.abc import AsyncIterator
from contextlib import aclosing, asynccontextmanager

import aiohttp
import pytest
from yarl import URL

from meterline.ingress.transport import ProviderClient


@asynccontextmanager
async def recording_server(
    body: bytes, headers: bytes = b""
) -> AsyncIterator[tuple[int, list[bytes]]]:
    """A bare HTTP/1.1 server on loopback that keeps each request's head (its first line is
    the request line) and answers ``body`` with ``headers``: a server that answers with its
    own name lets a test tell which server a request reached and how."""
    heads: list[bytes] = []

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        heads.append(head)
        length = 0
        for line in head.split(b"\r\n")[1:]:
            if line.lower().startswith(b"content-length:"):
                length = int(line.split(b":", 1)[1])
        await reader.readexactly(length)
        writer.write(
            b"HTTP/1.1 200 OK\r\n%sContent-Length: %d\r\nConnection: close\r\n\r\n%s"
            % (headers, len(body), body)
        )
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(answer, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield port, heads
    finally:
        server.close()
        await server.wait_closed()


def request_lines(heads: list[bytes]) -> list[bytes]:
    return [head.split(b"\r\n", 1)[0] for head in heads]


async def post(url: str) -> str:
    timeout = aiohttp.ClientTimeout(total=5)
    async with aclosing(ProviderClient(max_connections=4, keepalive_expiry=5.0)) as client:
        response = await client.post(URL(url), {}, b'{"model":"m"}', timeout)
        try:
            return (await response.read()).decode()
        finally:
            response.close()


async def test_requests_go_through_the_proxy_the_environment_names(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async with recording_server(b"proxy") as (proxy_port, proxy_heads):
        monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{proxy_port}")
        monkeypatch.delenv("NO_PROXY", raising=False)
        monkeypatch.delenv("no_proxy", raising=False)
        monkeypatch.delenv("http_proxy", raising=False)
        answer = await post("http://provider.invalid:8080/v1/chat/completions")
    assert answer == "proxy"
    # A forward proxy is asked for the absolute URL.
    proxy_lines = request_lines(proxy_heads)
    assert proxy_lines == [b"POST http://provider.invalid:8080/v1/chat/completions HTTP/1.1"]


async def test_hosts_in_no_proxy_are_reached_directly(monkeypatch: pytest.MonkeyPatch) -> None:
    async with (
        recording_server(b"proxy") as (proxy_port, proxy_heads),
        recording_server(b"provider") as (provider_port, provider_heads),
    ):
        monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{proxy_port}")
        monkeypatch.setenv("NO_PROXY", "127.0.0.1")
        monkeypatch.delenv("http_proxy", raising=False)
        monkeypatch.delenv("no_proxy", raising=False)
        answers = [await post(f"http://127.0.0.1:{provider_port}/v1/messages") for _ in range(2)]
    assert answers == ["provider", "provider"]
    provider_lines, proxy_lines = request_lines(provider_heads), request_lines(proxy_heads)
    assert provider_lines == [b"POST /v1/messages HTTP/1.1"] * 2
    assert proxy_lines == []


async def test_a_compressed_answer_is_read_decompressed() -> None:
    """Providers may gzip a whole answer; usage is read from the JSON inside."""
    body = b'{"usage":{"prompt_tokens":3}}'
    gzipped = b"Content-Type: application/json\r\nContent-Encoding: gzip\r\n"
    async with recording_server(gzip.compress(body), gzipped) as (port, heads):
        assert await post(f"http://127.0.0.1:{port}/v1/chat/completions") == body.decode()
    assert b"accept-encoding: gzip" in heads[0].lower()
