"""The embedded default (``meterline all-in-one`` on its local log and chDB) restarted on the
same data directory in the middle of traffic, gracefully and by SIGKILL: afterwards the
report equals the usage the clients received, nothing lost, nothing doubled."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.faults.harness import Stack, Traffic, describe, running
from tests.faults.test_graceful_shutdown import assert_graceful

pytestmark = [pytest.mark.clickhouse, pytest.mark.e2e]


def test_restarted_three_times_mid_traffic_nothing_lost_nothing_doubled(tmp_path: Path) -> None:
    stack = Stack.create(tmp_path, None)
    stops: list[str] = []
    with running(stack):
        stack.start("simulator")
        stack.start("consumer")
        with Traffic(stack, clients=4, rate=200) as traffic:
            for how in ("SIGTERM", "SIGKILL", "SIGTERM"):
                traffic.wait_for(traffic.count + 250)
                if how == "SIGKILL":
                    stack.kill("consumer")
                else:
                    assert_graceful(stack, "consumer")
                stops.append(how)
                stack.start("consumer")
            traffic.wait_for(traffic.count + 250)
        answered = traffic.received + stack.recorded(traffic.cut_off)
        got, want = stack.wait_for_report(answered, timeout=60)
    print(
        f"embedded default stopped by {', '.join(stops)}: {describe(answered, got)} "
        f"({len(traffic.cut_off)} answers cut off, {len(answered) - traffic.count} of them "
        f"recorded); client errors {dict(traffic.errors)}"
    )
    assert got == want, describe(answered, got)
