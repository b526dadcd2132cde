"""A bounded load test: 100,000 Chat Completions requests through the ingress (its own
process, publishing to the real Kafka broker) with the provider simulator behind it, half
of them streamed, across teams, users, tags and models. Then the consumer (all-in-one on
Kafka) reads the topic into chDB, and the report must equal, exactly, what the clients
received: requests, every token metric and the cost, per team.

The client is a tight asyncio loop in the test process (aiohttp on uvloop, a fixed number
of requests in flight), so that the ingress, not the client, is what the machine spends
its time on. ``METERLINE_LOAD_REQUESTS`` makes it smaller or larger."""

from __future__ import annotations

import asyncio
import json
import os
import random
import time
from collections import Counter
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import uvloop

from tests.faults.harness import Received, Stack, describe, received, request, running

pytestmark = [pytest.mark.kafka, pytest.mark.clickhouse, pytest.mark.e2e, pytest.mark.slow]

REQUESTS = int(os.environ.get("METERLINE_LOAD_REQUESTS", "100000"))
IN_FLIGHT = 32


def usage_of(body: bytes, streamed: bool) -> dict[str, Any]:
    if not streamed:
        usage: dict[str, Any] = json.loads(body)["usage"]
        return usage
    # The usage rides on the last chunk before [DONE]: search from the end.
    for line in reversed(body.split(b"\n")):
        if line.startswith(b"data: {") and b'"usage"' in line:
            found = json.loads(line[6:]).get("usage")
            if found:
                return dict(found)
    raise AssertionError(f"a stream without usage: {body[-500:]!r}")


async def load(
    gateway: str, keys: dict[str, str], count: int
) -> tuple[list[Received], Counter[str], float]:
    """``count`` requests, ``IN_FLIGHT`` at a time; what was received, the errors by kind,
    and the seconds it took."""
    results: list[Received] = []
    errors: Counter[str] = Counter()
    url = f"{gateway}/v1/chat/completions"
    connector = aiohttp.TCPConnector(limit=IN_FLIGHT)
    timeout = aiohttp.ClientTimeout(total=60)

    async def worker(session: aiohttp.ClientSession, first: int) -> None:
        rng = random.Random(first)
        for n in range(first, count, IN_FLIGHT):
            team, model, body, headers = request(keys, n, rng)
            try:
                async with session.post(url, json=body, headers=headers) as response:
                    answer = await response.read()
                    if response.status != 200:
                        errors[f"http_{response.status}"] += 1
                        continue
            except (aiohttp.ClientError, TimeoutError) as error:
                errors[type(error).__name__] += 1
                continue
            results.append(received(team, model, usage_of(answer, bool(body.get("stream")))))

    started = time.monotonic()
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        await asyncio.gather(*(worker(session, first) for first in range(IN_FLIGHT)))
    return results, errors, time.monotonic() - started


def test_100k_requests_through_the_ingress_are_all_counted_once(
    tmp_path: Path, kafka_bootstrap: str
) -> None:
    stack = Stack.create(
        tmp_path,
        kafka_bootstrap,
        METERLINE_MAX_BATCH_ROWS="20000",
        METERLINE_MAX_BATCH_SECONDS="1",
    )
    with running(stack):
        stack.start("simulator")
        stack.start("ingress")
        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            got_back, errors, sending = runner.run(load(stack.gateway, stack.keys, REQUESTS))
        # Each event is published just after its answer: the last few may still be on
        # their way to Kafka.
        deadline = time.monotonic() + 30
        while (metrics := stack.metrics())["meterline_ingress_events_sent_total"] < REQUESTS:
            if time.monotonic() > deadline:
                break
            time.sleep(0.2)
        # The consumer only now: it reads the whole topic, as after a backlog.
        consuming_started = time.monotonic()
        stack.start("consumer")
        got, want = stack.wait_for_report(got_back, timeout=600)
        consuming = time.monotonic() - consuming_started
    streamed = REQUESTS // 2
    print(
        f"load: {REQUESTS} requests ({streamed} streamed) in {sending:.1f}s, "
        f"{REQUESTS / sending:.0f} req/s, {IN_FLIGHT} in flight, errors {dict(errors)}; "
        f"consumer started, caught up and reported in {consuming:.1f}s; "
        f"{describe(got_back, got)}; ingress {metrics}"
    )
    assert not errors, errors
    assert len(got_back) == REQUESTS
    assert metrics["meterline_ingress_events_sent_total"] == REQUESTS
    assert metrics["meterline_ingress_events_dropped_total"] == 0
    assert got == want, describe(got_back, got)
