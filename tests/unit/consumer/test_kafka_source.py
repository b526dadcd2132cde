"""KafkaSource's recovery from a consumer that cannot go on, or that stopped fetching
without a word, with stand-in consumers and a stand-in broker probe (the real broker is in
the integration and fault tests, where these failures cannot be caused on demand), and the
stall watch's decision on its own."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Any

import pytest
from aiokafka.errors import KafkaError

from meterline.common.bus import BusMessage
from meterline.consumer import kafka_source as source_module
from meterline.consumer.kafka_source import KafkaConsumerClient, KafkaSource, StallWatch


@dataclass
class Record:
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes


class StandInClient:
    def __init__(self) -> None:
        self.closed = False

    async def close(self) -> None:
        self.closed = True


class StandInConsumer:
    """``fails``: every poll raises (coordination died). ``stuck``: every poll, commit and
    stop waits for ever (a member stuck in a rebalance that never ends). ``stop_cancelled``:
    its stop lets out the CancelledError of a task it cancelled itself, as aiokafka's
    fetcher does with the broker gone, before it closes its client."""

    def __init__(
        self,
        fails: bool,
        records: list[Record],
        stuck: bool = False,
        stop_cancelled: bool = False,
    ):
        self.fails = fails
        self.stuck = stuck
        self.stop_cancelled = stop_cancelled
        self.records = records
        self.started = False
        self.stopped = False
        self.paused_now: set[Any] = set()
        self._client = StandInClient()

    async def start(self) -> None:
        self.started = True

    async def stop(self) -> None:
        self.stopped = True
        if self.stuck:
            await asyncio.Event().wait()
        if self.stop_cancelled:
            pending = asyncio.create_task(asyncio.sleep(3600))
            await asyncio.sleep(0)
            pending.cancel()
            await pending
        await self._client.close()

    def subscribe(self, topics: list[str], *, listener: Any) -> None:
        raise AssertionError("KafkaSource subscribes the consumers it makes, not stand-ins")

    async def getmany(self, *, timeout_ms: int, max_records: int) -> dict[Any, list[Record]]:
        if self.fails:
            raise KafkaError("Unexpected error during coordination RuntimeError('closed')")
        if self.stuck:
            await asyncio.Event().wait()
        taken, self.records = self.records[:max_records], self.records[max_records:]
        if not taken:
            await asyncio.sleep(timeout_ms / 1000)
        return {("t", 0): taken}

    async def commit(self, offsets: dict[Any, int]) -> None:
        if self.stuck:
            await asyncio.Event().wait()

    def assignment(self) -> set[Any]:
        return {("t", 0)}

    def pause(self, *partitions: Any) -> None:
        self.paused_now |= set(partitions)

    def resume(self, *partitions: Any) -> None:
        self.paused_now -= set(partitions)


class StandInProbe:
    """The broker as the probe sees it: where partition t/0 ends, and the group's commit;
    ``answers`` False: the broker is away."""

    def __init__(self, end: int, committed: int | None = None):
        self.end = end
        self.committed_offset = committed
        self.answers = True
        self.asked = 0

    async def end_offsets(self) -> dict[tuple[str, int], int]:
        self.asked += 1
        if not self.answers:
            raise ConnectionError("broker away")
        return {("t", 0): self.end}

    async def committed(
        self, partitions: set[tuple[str, int]]
    ) -> dict[tuple[str, int], int | None]:
        return {tp: self.committed_offset for tp in partitions}

    async def close(self) -> None:
        return None


class StandInSource(KafkaSource):
    def __init__(self, consumers: list[StandInConsumer], probe: StandInProbe | None = None):
        super().__init__(
            "localhost:9092",
            "t",
            "group",
            stall_seconds=0.6,
            stall_check_seconds=0.05,
            client_timeout_seconds=0.3,
        )
        self.consumers = consumers
        self.made: list[StandInConsumer] = []
        self.probe = probe or StandInProbe(0)

    def _new_consumer(self) -> KafkaConsumerClient:
        consumer = self.consumers[len(self.made)]
        self.made.append(consumer)
        return consumer

    def _new_probe(self) -> StandInProbe:
        return self.probe


async def poll_for(source: KafkaSource, seconds: float) -> list[BusMessage]:
    """Poll as the pipeline does (0.1 s at a time) for ``seconds``; what came."""
    got: list[BusMessage] = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        got += await source.poll(10, 0.1)
    return got


@pytest.fixture(autouse=True)
def no_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(source_module, "RESTART_BACKOFF_SECONDS", 0)


async def test_a_consumer_whose_coordination_died_is_replaced() -> None:
    record = Record("t", 0, 7, None, b"body")
    failed, fresh = StandInConsumer(True, []), StandInConsumer(False, [record])
    source = StandInSource([failed, fresh])
    await source.start()

    assert await source.poll(10, 0.1) == []  # the failure: no messages, no exception
    assert failed.stopped and fresh.started
    (message,) = await source.poll(10, 0.1)
    assert (message.topic, message.partition, message.offset, message.value) == ("t", 0, 7, b"body")


async def test_a_paused_source_stays_paused_across_a_replacement() -> None:
    failed, fresh = StandInConsumer(True, []), StandInConsumer(False, [])
    source = StandInSource([failed, fresh])
    await source.start()
    source.pause()

    await source.poll(10, 0.1)
    assert fresh.paused_now == {("t", 0)}
    source.resume()
    assert fresh.paused_now == set()


async def test_a_consumer_that_stopped_fetching_while_the_broker_holds_messages_is_replaced() -> (
    None
):
    stuck = StandInConsumer(False, [], stuck=True)
    fresh = StandInConsumer(False, [Record("t", 0, 0, None, b"a"), Record("t", 0, 1, None, b"b")])
    source = StandInSource([stuck, fresh], StandInProbe(end=2))
    await source.start()

    got = await poll_for(source, 2.5)

    assert [m.offset for m in got] == [0, 1]
    assert stuck.stopped and fresh.started and source.restarts == 1
    await source.stop()


async def test_an_idle_topic_is_no_stall() -> None:
    idle = StandInConsumer(False, [Record("t", 0, 0, None, b"a")])
    probe = StandInProbe(end=1)
    source = StandInSource([idle], probe)
    await source.start()

    await poll_for(source, 1.5)

    assert probe.asked > 0  # it did look
    assert source.restarts == 0
    await source.stop()


async def test_no_replacement_while_the_broker_is_away_or_while_paused() -> None:
    stuck = StandInConsumer(False, [], stuck=True)
    probe = StandInProbe(end=5)
    probe.answers = False
    source = StandInSource([stuck], probe)
    await source.start()
    await poll_for(source, 1.2)
    assert source.restarts == 0

    probe.answers = True
    source.pause()  # the warehouse is down: nothing is fetched on purpose
    await poll_for(source, 1.2)
    assert source.restarts == 0
    await source.stop()


async def test_a_poll_a_commit_and_a_stop_are_bounded_when_the_client_hangs() -> None:
    stuck = StandInConsumer(False, [], stuck=True)
    source = StandInSource([stuck])
    await source.start()

    started = time.monotonic()
    assert await source.poll(10, 0.1) == []
    with pytest.raises(TimeoutError):
        await source.commit({("t", 0): 1})
    await source.stop()
    assert time.monotonic() - started < 2


async def test_a_stop_cut_short_by_the_clients_own_cancelled_task_ends_and_closes_it() -> None:
    consumer = StandInConsumer(False, [], stop_cancelled=True)
    source = StandInSource([consumer])
    await source.start()

    await source.stop()
    assert consumer.stopped
    assert consumer._client.closed


async def test_a_stop_that_is_itself_cancelled_is_still_cancelled() -> None:
    consumer = StandInConsumer(False, [], stuck=True)
    source = StandInSource([consumer])
    source._client_timeout = 60
    await source.start()

    stopping = asyncio.create_task(source.stop())
    await asyncio.sleep(0.05)
    stopping.cancel()
    with pytest.raises(asyncio.CancelledError):
        await stopping


def test_the_watch_needs_starved_polls_an_answering_broker_and_lag_for_the_whole_time() -> None:
    watch = StallWatch(stall_seconds=10)
    watch.assignment = {("t", 0)}
    watch.polled(0, [BusMessage("t", 0, 99, None, b"")])  # read up to 100
    ends = {("t", 0): 150, ("t", 1): 500}  # t/1 is another member's

    def starve(until: float, step: float = 1) -> list[bool]:
        seen = []
        now = watch._last_poll
        while now < until:
            now += step
            watch.polled(now, [])
            seen.append(watch.observe(now, ends, {("t", 0): 100}))
        return seen

    assert not any(starve(11))  # lagging from 2 s (the first look): not yet 10 s
    assert starve(12)[-1]  # now it is
    # Progress resets it.
    watch.polled(13.5, [BusMessage("t", 0, 120, None, b"")])
    assert not any(starve(20))
    # The broker not answering resets it too.
    assert not watch.observe(20.5, None, None)
    assert not any(starve(29))


def test_the_watch_ignores_what_another_member_or_an_earlier_life_already_read() -> None:
    watch = StallWatch(stall_seconds=1)
    watch.assignment = {("t", 0)}
    watch.polled(0, [BusMessage("t", 0, 9, None, b"")])
    for now in range(3, 20):
        watch.polled(now, [])
        # The group committed up to the end: nothing is left to read here.
        assert not watch.observe(now, {("t", 0): 50}, {("t", 0): 50})


def test_the_watch_watches_all_partitions_before_a_first_assignment_none_after_an_empty_one() -> (
    None
):
    watch = StallWatch(stall_seconds=1)
    ends = {("t", 0): 5}
    results = []
    for now in range(3, 8):
        watch.polled(now, [])
        results.append(watch.observe(now, ends, {}))
    assert results[-1]  # never assigned: stuck joining, with messages waiting

    watch = StallWatch(stall_seconds=1)
    watch.assignment = set()  # more members than partitions: this one reads nothing
    for now in range(3, 8):
        watch.polled(now, [])
        assert not watch.observe(now, ends, {})


def test_the_watch_does_not_judge_a_pipeline_that_is_not_polling() -> None:
    watch = StallWatch(stall_seconds=1)
    watch.polled(0, [])
    # The last poll was long ago: a write under way, not a starved consumer.
    assert not watch.worth_asking(30)
    assert not watch.observe(30, {("t", 0): 5}, {})
