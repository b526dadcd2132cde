"""The broker crashes and restarts under load, and the ingress restarts while its spool holds
the events Kafka could not take. The clients never notice, and afterwards the report equals
the usage they received: nothing lost, nothing doubled."""

from __future__ import annotations

import signal
import time
from pathlib import Path

import pytest

from tests.faults.harness import Stack, Traffic, describe, running
from tests.support.kafka_broker import LocalKafkaBroker

pytestmark = [pytest.mark.kafka, pytest.mark.clickhouse, pytest.mark.e2e]

# Kafka is seen down after 1 s without acknowledgements, and retried at least every 2 s.
FAST_FAILOVER = {
    "METERLINE_PUBLISH_STALL_SECONDS": "1",
    "METERLINE_PUBLISH_REQUEST_TIMEOUT_SECONDS": "5",
    "METERLINE_PUBLISH_RETRY_MAX_SECONDS": "2",
}


def wait_until(condition: object, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, f"timed out waiting until {what}"
        time.sleep(0.2)


def test_broker_crash_and_restart_under_load(tmp_path: Path, own_broker: LocalKafkaBroker) -> None:
    stack = Stack.create(tmp_path, own_broker.bootstrap_servers, **FAST_FAILOVER)
    with running(stack):
        stack.start("simulator")
        stack.start("ingress")
        stack.start("consumer")
        with Traffic(stack, clients=4, rate=150) as traffic:
            traffic.wait_for(300)
            own_broker.kill()  # a crash: SIGKILL
            outage_started = traffic.count
            time.sleep(4)
            assert traffic.count > outage_started  # the gateway kept answering
            wait_until(
                lambda: stack.metrics()["meterline_ingress_events_spooled"] > 0, 20, "spooled"
            )
            own_broker.start()
            traffic.wait_for(traffic.count + 300)
            own_broker.restart()  # a clean stop and start
            traffic.wait_for(traffic.count + 300)
        assert not traffic.errors, traffic.errors
        got, want = stack.wait_for_report(traffic.received, timeout=120)
        metrics = stack.metrics()
    print(f"broker crash + restart: {describe(traffic.received, got)}; ingress {metrics}")
    assert got == want, describe(traffic.received, got)
    assert metrics["meterline_ingress_events_dropped_total"] == 0
    assert metrics["meterline_ingress_events_spooled"] == 0
    assert metrics["meterline_ingress_events_spooled_total"] > 0


def test_ingress_restarted_while_its_spool_holds_events(
    tmp_path: Path, own_broker: LocalKafkaBroker
) -> None:
    stack = Stack.create(tmp_path, own_broker.bootstrap_servers, **FAST_FAILOVER)
    with running(stack):
        stack.start("simulator")
        stack.start("ingress")
        stack.start("consumer")
        with Traffic(stack, clients=4, rate=150) as traffic:
            traffic.wait_for(200)
            own_broker.kill()
            traffic.wait_for(traffic.count + 600)
        assert not traffic.errors, traffic.errors
        # Everything Kafka did not acknowledge is on disk, nothing only in memory...
        wait_until(
            lambda: stack.metrics()["meterline_ingress_events_buffered"] == 0, 30, "all spooled"
        )
        spooled = stack.metrics()["meterline_ingress_events_spooled"]
        assert spooled > 0
        # ...so it survives a crash of the ingress, and is found by the next one.
        stack.kill("ingress")
        stack.start("ingress")
        assert stack.metrics()["meterline_ingress_events_spooled"] == spooled
        own_broker.start()
        got, want = stack.wait_for_report(traffic.received, timeout=120)
        metrics = stack.metrics()
    print(
        f"ingress restart with {spooled:.0f} events spooled: "
        f"{describe(traffic.received, got)}; ingress {metrics}"
    )
    assert got == want, describe(traffic.received, got)
    assert metrics["meterline_ingress_events_spooled"] == 0
    assert metrics["meterline_ingress_events_dropped_total"] == 0
    assert not list((tmp_path / "data-ingress" / "ingress-spool").glob("*.seg"))


def reads(stack: Stack, name: str) -> bool:
    """Whether the consumer ``name`` has been given partitions."""
    return "Setting newly assigned partitions" in stack.log(name).read_text()


def counted(stack: Stack) -> int:
    return sum(t["request_count"] for t in stack.report().values())


def test_repeated_broker_outages_and_a_consumer_crash_lose_nothing_and_catch_up_quickly(
    tmp_path: Path, own_broker: LocalKafkaBroker
) -> None:
    """Four outages in a row (three crashes, one clean restart), the consumer killed once
    with the broker up and once while it is down: whatever state each outage leaves the
    consumer's Kafka client in, it reads on, and within 30 s of the broker's last return
    the report holds every answered request, once."""
    stack = Stack.create(tmp_path, own_broker.bootstrap_servers, **FAST_FAILOVER)
    with running(stack):
        stack.start("simulator")
        stack.start("ingress")
        stack.start("consumer")
        with Traffic(stack, clients=4, rate=120) as traffic:
            traffic.wait_for(150)
            stack.kill("consumer")  # a crash mid-batch, the broker up
            stack.start("consumer")
            traffic.wait_for(traffic.count + 150)

            own_broker.kill()  # outage 1, the consumer killed during it
            time.sleep(3)
            stack.kill("consumer")
            own_broker.start()
            stack.start("consumer")
            traffic.wait_for(traffic.count + 150)

            own_broker.kill()  # outage 2: longer than the consumer's session
            time.sleep(6)
            own_broker.start()
            traffic.wait_for(traffic.count + 150)

            own_broker.restart()  # outage 3: a clean stop and start
            traffic.wait_for(traffic.count + 150)

            own_broker.kill()  # outage 4: traffic goes on into the spool, and stops there
            time.sleep(4)
            traffic.stop()
            own_broker.start()
            back = time.monotonic()
        assert not traffic.errors, traffic.errors
        total = len(traffic.received)
        wait_until(lambda: counted(stack) >= total, 30, "the report caught up")
        caught_up = time.monotonic() - back
        got, want = stack.wait_for_report(traffic.received, timeout=10)
        metrics = stack.metrics()
    print(
        f"4 broker outages, 2 consumer crashes: {describe(traffic.received, got)}, caught up "
        f"{caught_up:.1f}s after the broker's last return; ingress {metrics}"
    )
    assert got == want, describe(traffic.received, got)
    assert metrics["meterline_ingress_events_dropped_total"] == 0


def test_sigterm_ends_consumers_whose_broker_is_gone_within_their_deadline(
    tmp_path: Path, own_broker: LocalKafkaBroker
) -> None:
    """``meterline consumer`` and ``meterline all-in-one`` on Kafka hold open batches, the
    broker dies, and SIGTERM comes: each gives up its batches at its stop deadline (they
    cannot be committed) and exits; the next consumer reads them again, and nothing is
    lost or counted twice."""
    deadline, client_timeout = 5, 3
    stack = Stack.create(
        tmp_path,
        own_broker.bootstrap_servers,
        METERLINE_MAX_BATCH_ROWS="100000",
        METERLINE_MAX_BATCH_SECONDS="60",
        METERLINE_CONSUMER_STOP_TIMEOUT_SECONDS=str(deadline),
        METERLINE_KAFKA_CLIENT_TIMEOUT_SECONDS=str(client_timeout),
        **FAST_FAILOVER,
    )
    with running(stack):
        stack.start("simulator")
        stack.start("ingress")
        stack.start("consumer")
        stack.start("worker", command="consumer", data="worker")
        with Traffic(stack, clients=4, rate=150) as traffic:
            traffic.wait_for(300)
            for name in ("consumer", "worker"):
                wait_until(lambda: reads(stack, name), 60, f"{name} reads")
            traffic.wait_for(traffic.count + 150)
        assert not traffic.errors, traffic.errors
        time.sleep(2)  # the topic's tail fetched, into batches that stay open (60 s)
        own_broker.kill()
        for name in ("consumer", "worker"):
            started = time.monotonic()
            # Within the deadline, the client's stop and the dead-letter producer's stop.
            status = stack.terminate(name, timeout=deadline + 2 * client_timeout + 15)
            took = time.monotonic() - started
            print(f"{name} stopped {took:.1f}s after SIGTERM, its broker gone")
            assert status in (0, -signal.SIGTERM), status

        own_broker.start()
        stack.env["METERLINE_MAX_BATCH_SECONDS"] = "0.3"  # the next consumer writes at once
        stack.start("consumer")
        got, want = stack.wait_for_report(traffic.received, timeout=60)
    assert got == want, describe(traffic.received, got)
