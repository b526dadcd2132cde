"""The broker crashes and restarts under load, and the ingress restarts while its spool holds
the events Kafka could not take. The clients never notice, and afterwards the report equals
the usage they received: nothing lost, nothing doubled."""

from __future__ import annotations

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
