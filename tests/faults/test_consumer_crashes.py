"""kill -9 the consumer again and again while traffic flows: at each step of a batch's life
(cut, range recorded, inserted, committed) and at random moments. After each run of crashes
the report must equal the usage the clients received: nothing lost, nothing doubled.

Small batches (200 rows or 0.3 s) so that every crash has open, recorded and inserted
batches around it, over the topic's four partitions (one team per partition key)."""

from __future__ import annotations

import random
import time
from pathlib import Path

import pytest

from tests.faults.harness import Stack, Traffic, describe, running

pytestmark = [pytest.mark.kafka, pytest.mark.clickhouse, pytest.mark.e2e]


def crash_repeatedly(stack: Stack, traffic: Traffic, plan: list[str | float]) -> list[str]:
    """Run the consumer through ``plan``: a crash point name (the consumer kills itself
    there, after 1-3 batches) or a number of seconds after which it is killed from outside
    (mid-batch, wherever it is). Returns what happened, for the failure message."""
    rng = random.Random(4)
    happened = []
    for step in plan:
        if isinstance(step, str):
            after = rng.randint(1, 3)
            stack.start("consumer", crash_at=step, crash_after=after)
            process = stack.processes.pop("consumer")
            status = process.wait(60)
            assert status == -9, f"the consumer was to crash {step}, but exited with {status}"
            happened.append(f"{step}#{after}")
        else:
            stack.start("consumer")
            time.sleep(step)
            stack.kill("consumer")
            happened.append(f"kill-9@{step:.1f}s")
        # Traffic keeps flowing between two incarnations.
        traffic.wait_for(traffic.count + 20)
    return happened


def run(tmp_path: Path, kafka_bootstrap: str, plan: list[str | float]) -> None:
    stack = Stack.create(tmp_path, kafka_bootstrap)
    with running(stack):
        stack.start("simulator")
        stack.start("ingress")
        with Traffic(stack, clients=4, rate=150) as traffic:
            happened = crash_repeatedly(stack, traffic, plan)
        assert not traffic.errors, traffic.errors
        # A consumer that no longer crashes catches up on everything.
        stack.start("consumer")
        got, want = stack.wait_for_report(traffic.received)
    print(f"consumer crashes {happened}: {describe(traffic.received, got)}")
    assert got == want, describe(traffic.received, got)


def test_consumer_killed_at_every_step_of_a_batch_counts_each_event_once(
    tmp_path: Path, kafka_bootstrap: str
) -> None:
    run(tmp_path, kafka_bootstrap, ["after_batch_log", "after_insert", 1.5])


@pytest.mark.slow
def test_consumer_killed_many_times_counts_each_event_once(
    tmp_path: Path, kafka_bootstrap: str
) -> None:
    rng = random.Random(7)
    points = ["before_batch_log", "after_batch_log", "after_insert", "after_commit"]
    plan: list[str | float] = [*points * 3, *(rng.uniform(0.5, 3) for _ in range(6))]
    rng.shuffle(plan)
    run(tmp_path, kafka_bootstrap, plan)
