"""The consumer's ``BatchLog`` contract, against the memory log and the one kept in the
warehouse: what a batch recorded before its insert is found again by partition and from an
offset on, and nothing of another partition, topic or consumer group."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from clickhouse_connect.driver.client import Client

from meterline.consumer.batch_log import BatchLog, ClickHouseBatchLog, MemoryBatchLog


@pytest.fixture(params=["memory", pytest.param("clickhouse", marks=pytest.mark.clickhouse)])
def make_log(request: pytest.FixtureRequest) -> Callable[[str], BatchLog]:
    """A batch log for a consumer group; two calls with one group see the same batches
    (for the warehouse: two consumers of the group, or one after a restart)."""
    if request.param == "memory":
        logs: dict[str, MemoryBatchLog] = {}
        return lambda group: logs.setdefault(group, MemoryBatchLog())
    client: Client = request.getfixturevalue("clickhouse")
    return lambda group: ClickHouseBatchLog(client, group)


async def test_recorded_batches_are_found_by_partition_from_an_offset_on(
    make_log: Callable[[str], BatchLog],
) -> None:
    log = make_log("group")
    await log.record("t", 0, 0, 99)
    await log.record("t", 0, 100, 149)
    await log.record("t", 0, 150, 150)
    await log.record("t", 1, 0, 9)
    await log.record("other", 0, 0, 5)

    assert await log.recorded("t", 0, 0) == {0: 99, 100: 149, 150: 150}
    assert await log.recorded("t", 0, 100) == {100: 149, 150: 150}
    assert await log.recorded("t", 0, 151) == {}
    assert await log.recorded("t", 1, 0) == {0: 9}
    assert await log.recorded("t", 2, 0) == {}
    assert await log.recorded("other", 0, 0) == {0: 5}


async def test_a_batch_recorded_again_is_one_batch(make_log: Callable[[str], BatchLog]) -> None:
    log = make_log("group")
    await log.record("t", 0, 10, 19)
    await log.record("t", 0, 10, 19)
    assert await log.recorded("t", 0, 0) == {10: 19}


async def test_each_consumer_group_has_its_own_batches(
    make_log: Callable[[str], BatchLog],
) -> None:
    await make_log("a").record("t", 0, 0, 9)
    await make_log("b").record("t", 0, 0, 4)
    assert await make_log("a").recorded("t", 0, 0) == {0: 9}
    assert await make_log("b").recorded("t", 0, 0) == {0: 4}
