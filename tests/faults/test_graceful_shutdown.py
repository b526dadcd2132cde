"""SIGTERM in the middle of traffic, for every service: requests in flight finish, the
publisher's buffer reaches Kafka, the consumer writes and commits its open batches, and
every process exits 0. Afterwards the report equals the usage the clients received."""

from __future__ import annotations

import asyncio
import re
import signal
import time
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from meterline.processes import free_port
from tests.faults.harness import Stack, Traffic, describe, running

pytestmark = [pytest.mark.kafka, pytest.mark.clickhouse, pytest.mark.e2e]


async def lag(bootstrap: str, topic: str, group: str) -> dict[int, tuple[int, int | None]]:
    """Per partition: the end offset and the group's committed offset."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        [described] = await admin.describe_topics([topic])
    finally:
        await admin.close()
    partitions = [TopicPartition(topic, p["partition"]) for p in described["partitions"]]
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=group)
    await consumer.start()
    try:
        ends = await consumer.end_offsets(partitions)
        return {tp.partition: (ends[tp], await consumer.committed(tp)) for tp in partitions}
    finally:
        await consumer.stop()


def wait_for_log(stack: Stack, name: str, text: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while text not in stack.log(name).read_text():
        assert time.monotonic() < deadline, f"{name} never logged {text!r}"
        time.sleep(0.2)


def assert_graceful(stack: Stack, name: str) -> None:
    """SIGTERM, and the server's shutdown ran to its end. Uvicorn re-raises the signal once
    it has shut down, so the exit status is 0 or "terminated by SIGTERM"; the log tells a
    finished shutdown from an interrupted one."""
    status = stack.terminate(name)
    assert status in (0, -signal.SIGTERM), status
    tail = stack.log(name).read_text().rsplit("=== ", 1)[-1]
    assert "Application shutdown complete" in tail, tail[-3000:]


def test_sigterm_to_ingress_consumer_and_query_loses_nothing(
    tmp_path: Path, kafka_bootstrap: str
) -> None:
    # Batches close only at 1,000 rows or after 60 s: when SIGTERM comes, every partition
    # has an open batch that only the graceful stop writes and commits.
    stack = Stack.create(
        tmp_path, kafka_bootstrap, METERLINE_MAX_BATCH_ROWS="1000", METERLINE_MAX_BATCH_SECONDS="60"
    )
    with running(stack):
        stack.start("simulator")
        stack.start("ingress")
        stack.start("consumer", command="consumer")
        with Traffic(stack, clients=6, rate=300) as traffic:
            traffic.wait_for(100)
            # The consumer starts slower than the ingress; it must hold open batches when
            # the SIGTERM comes, so it has to be reading first.
            wait_for_log(stack, "consumer", "Setting newly assigned partitions", timeout=120)
            traffic.wait_for(traffic.count + 300)
            started = time.monotonic()
            assert_graceful(stack, "ingress")
            stopped_after = time.monotonic() - started
        # New requests found the port closed; none was answered and then lost.
        answered = traffic.count
        ingress_log = stack.log("ingress").read_text()
        assert "Kafka did not take them" not in ingress_log
        assert not list((tmp_path / "data-ingress" / "ingress-spool").glob("*.seg"))

        # Time to fetch the topic's tail; the batches stay open (under 1,000 rows, 60 s).
        time.sleep(3)
        assert stack.terminate("consumer") == 0
        stopping = re.search(
            r"stopping: writing and committing (\d+) open batches \((\d+) events\)",
            stack.log("consumer").read_text(),
        )
        assert stopping and int(stopping[2]) > 0, "the consumer held no open batch at SIGTERM"
        offsets = asyncio.run(
            lag(
                kafka_bootstrap,
                stack.env["METERLINE_USAGE_TOPIC"],
                stack.env["METERLINE_CONSUMER_GROUP"],
            )
        )
        # Everything in the topic is committed: the open batches were written on the way out.
        assert offsets and all(end == (committed or 0) for end, committed in offsets.values()), (
            offsets
        )
        assert sum(end for end, _ in offsets.values()) >= answered

        # The query service alone, on the consumer's warehouse: nothing is left to consume,
        # so the report shows what the consumer wrote before it exited.
        stack.ports["query"] = free_port()
        stack.start("query", command="query", data="consumer")
        stack.reports = f"http://127.0.0.1:{stack.ports['query']}"
        got, want = stack.wait_for_report(traffic.received, timeout=10)
        assert_graceful(stack, "query")
    print(
        f"SIGTERM ingress ({stopped_after:.1f}s to stop), consumer ({stopping[2]} events in "
        f"{stopping[1]} open batches), query: "
        f"{describe(traffic.received, got)}; client errors after the stop {dict(traffic.errors)}"
    )
    assert got == want, describe(traffic.received, got)


def test_sigterm_to_the_embedded_all_in_one_loses_nothing(tmp_path: Path) -> None:
    stack = Stack.create(tmp_path, None, METERLINE_MAX_BATCH_SECONDS="60")
    with running(stack):
        stack.start("simulator")
        stack.start("consumer")
        with Traffic(stack, clients=6, rate=300) as traffic:
            traffic.wait_for(400)
            assert_graceful(stack, "consumer")
        stack.start("consumer")
        got, want = stack.wait_for_report(traffic.received, timeout=10)
    print(f"SIGTERM all-in-one (embedded): {describe(traffic.received, got)}")
    assert got == want, describe(traffic.received, got)
