from __future__ import annotations

import asyncio
from collections.abc import Sequence
from decimal import Decimal
from typing import Any

import pytest

from meterline.common.bus import BusMessage, InProcessBus
from meterline.common.clickhouse import RAW_COLUMNS
from meterline.common.codec import UsageEventCodec
from meterline.common.config import GatewayConfig, PriceOverride, TeamConfig
from meterline.common.pricing import StaticPrices
from meterline.consumer.assemble import build_pipeline
from meterline.consumer.batch_log import MemoryBatchLog
from meterline.consumer.dead_letter import CircuitOpen, MemoryDeadLetter
from meterline.consumer.enrich import Enricher
from meterline.consumer.pipeline import Pipeline
from meterline.consumer.settings import ConsumerSettings
from meterline.consumer.source import BusSource
from meterline.consumer.write import MemoryWriter, PythonBatchWriter
from tests.support.events import million_token_event as event
from tests.support.prices import RATES

CONFIG = GatewayConfig(
    teams=[
        TeamConfig(id="acme"),
        TeamConfig(id="globex", price_overrides=[PriceOverride(multiplier=Decimal("0.5"))]),
    ]
)


def settings(**overrides: object) -> ConsumerSettings:
    values: dict[str, object] = {"max_batch_rows": 3, "max_batch_seconds": 0.05}
    values.update(overrides)
    return ConsumerSettings(**values)  # type: ignore[arg-type]


async def run_until_idle(pipeline: Pipeline) -> None:
    stop = asyncio.Event()
    task = asyncio.create_task(pipeline.run(stop))
    await asyncio.sleep(0.05)
    await asyncio.wait_for(pipeline.idle.wait(), 5)
    stop.set()
    await asyncio.wait_for(task, 5)


def build(
    source: InProcessBus | BusSource,
    writer: MemoryWriter,
    dlq: MemoryDeadLetter,
    log: MemoryBatchLog | None = None,
    **kw: object,
) -> Pipeline:
    codec = UsageEventCodec()
    return build_pipeline(
        settings(**kw),
        source=source if isinstance(source, BusSource) else BusSource(source),
        writer=PythonBatchWriter(
            codec, Enricher(StaticPrices({("openai", "gpt-x"): RATES}), CONFIG), writer
        ),
        dead_letter=dlq,
        batch_log=log or MemoryBatchLog(),
        codec=codec,
    )


def column(row: list[object], name: str) -> object:
    return row[RAW_COLUMNS.index(name)]


async def test_events_are_priced_batched_and_written() -> None:
    bus, writer, dlq = InProcessBus(), MemoryWriter(), MemoryDeadLetter()
    codec = UsageEventCodec()
    sent = [
        event(),
        event(credential_type="byok"),
        event(team_id="globex"),
        event(model="unknown-model"),
        event(tags=["b", "a", "b"], user_id=None),
    ]
    for e in sent:
        bus.publish_nowait(e.team_id.encode(), codec.encode(e))
    await run_until_idle(build(bus, writer, dlq))

    rows = {column(r, "event_id"): r for r in writer.rows}
    assert len(rows) == len(sent)
    # 0.5M uncached * 2 + 0.5M cached * 0.5 + 1M output * 8 = 9.25
    system, byok, globex, unknown, tagged = (rows[e.event_id] for e in sent)
    assert column(system, "market_cost") == Decimal("9.25")
    assert column(system, "total_cost") == Decimal("9.25")
    assert column(byok, "market_cost") == Decimal("9.25")
    assert column(byok, "total_cost") == 0
    assert column(globex, "total_cost") == Decimal("4.625")
    assert column(unknown, "price_known") is False
    assert column(unknown, "price_source") == "unknown"
    assert column(tagged, "tags") == ["a", "b"]
    assert column(tagged, "user_id") == ""
    # Batches close at 3 rows: offsets 0-2 then 3-4.
    assert sorted(writer.batches) == [f"{bus.topic}/0/0-2", f"{bus.topic}/0/3-4"]


async def test_poison_messages_go_to_the_dead_letter_sink_and_the_stream_goes_on() -> None:
    bus, writer, dlq = InProcessBus(), MemoryWriter(), MemoryDeadLetter()
    codec = UsageEventCodec()
    good = event()
    bus.publish_nowait(None, b"not avro at all")
    bus.publish_nowait(None, codec.encode(event(input_tokens=10, cached_input_tokens=20)))
    bus.publish_nowait(None, codec.encode(good))
    await run_until_idle(build(bus, writer, dlq, dead_letter_breaker_min_messages=100))
    assert [column(r, "event_id") for r in writer.rows] == [good.event_id]
    reasons = [r.reason for r in dlq.rejected]
    assert reasons[0].startswith("undecodable")
    assert "exceed input_tokens" in reasons[1]
    assert dlq.rejected[0].message.value == b"not avro at all"


async def test_failed_inserts_are_retried_not_skipped() -> None:
    bus, writer, dlq = InProcessBus(), MemoryWriter(), MemoryDeadLetter()
    writer.fail_next = 3
    e = event()
    bus.publish_nowait(None, UsageEventCodec().encode(e))
    pipeline = build(bus, writer, dlq)
    await run_until_idle(pipeline)
    assert [column(r, "event_id") for r in writer.rows] == [e.event_id]
    assert pipeline.stats.insert_failures == 3


async def test_circuit_breaker_stops_when_most_messages_fail() -> None:
    bus, writer, dlq = InProcessBus(), MemoryWriter(), MemoryDeadLetter()
    for _ in range(20):
        bus.publish_nowait(None, b"garbage")
    pipeline = build(bus, writer, dlq, dead_letter_breaker_min_messages=10)
    with pytest.raises(CircuitOpen, match="of the last 10 messages failed"):
        await asyncio.wait_for(pipeline.run(asyncio.Event()), 5)


async def test_repeated_event_ids_count_once() -> None:
    bus, writer, dlq = InProcessBus(), MemoryWriter(), MemoryDeadLetter()
    codec = UsageEventCodec()
    first, second = event(), event()
    for e in (first, first, second, first, second):
        bus.publish_nowait(None, codec.encode(e))
    pipeline = build(bus, writer, dlq)
    await run_until_idle(pipeline)
    assert sorted(str(column(r, "event_id")) for r in writer.rows) == sorted(
        [first.event_id, second.event_id]
    )
    assert pipeline.stats.duplicates_dropped == 3


async def test_a_batch_read_again_after_a_crash_is_cut_where_it_was_recorded() -> None:
    """The first run recorded batch 0-4 and crashed before inserting it. The second run has
    a smaller batch size but must still cut 0-4, so the token matches a possible earlier
    insert, and then go on cutting by size."""
    codec = UsageEventCodec()
    log = MemoryBatchLog()
    bus, writer, dlq = InProcessBus(), MemoryWriter(), MemoryDeadLetter()
    await log.record(bus.topic, 0, 0, 4)
    for _ in range(8):
        bus.publish_nowait(None, codec.encode(event()))
    await run_until_idle(build(bus, writer, dlq, log, max_batch_rows=2))
    assert list(writer.batches) == [
        f"{bus.topic}/0/0-4",
        f"{bus.topic}/0/5-6",
        f"{bus.topic}/0/7-7",
    ]
    assert log.batches[(bus.topic, 0)] == {0: 4, 5: 6, 7: 7}


class GatedWriter:
    """A batch writer whose first write waits until the test opens the gate."""

    def __init__(self) -> None:
        self.gate = asyncio.Event()
        self.writing = asyncio.Event()
        self.tokens: list[str] = []

    async def write(self, messages: Sequence[BusMessage], deduplication_token: str) -> list[Any]:
        self.writing.set()
        await self.gate.wait()
        self.tokens.append(deduplication_token)
        return []


async def test_the_next_batch_is_read_while_one_is_written() -> None:
    """Each poll hands over exactly one full batch (the bus gives at most max_batch_rows):
    the pipeline must read the next one meanwhile, not wait for the write between polls."""
    codec = UsageEventCodec()
    bus = InProcessBus()
    for _ in range(6):
        bus.publish_nowait(None, codec.encode(event()))
    writer = GatedWriter()
    pipeline = build_pipeline(
        settings(max_batch_rows=3, max_batch_seconds=60),
        source=BusSource(bus),
        writer=writer,
        dead_letter=MemoryDeadLetter(),
        batch_log=MemoryBatchLog(),
        codec=codec,
    )
    stop = asyncio.Event()
    task = asyncio.create_task(pipeline.run(stop))
    await asyncio.wait_for(writer.writing.wait(), 5)
    for _ in range(100):
        if bus.pending == 0:
            break
        await asyncio.sleep(0.01)
    assert bus.pending == 0, "the second batch was not read while the first was written"
    assert writer.tokens == []
    writer.gate.set()
    await asyncio.wait_for(pipeline.idle.wait(), 5)
    stop.set()
    await asyncio.wait_for(task, 5)
    assert writer.tokens == [f"{bus.topic}/0/0-2", f"{bus.topic}/0/3-5"]


class ScriptedSource(BusSource):
    """Hands out the given polls in order (a consumer that reads some offsets again),
    then nothing."""

    def __init__(self, polls: list[list[BusMessage]]):
        super().__init__(InProcessBus())
        self._polls = polls

    async def poll(self, max_messages: int, timeout: float) -> list[BusMessage]:
        if self._polls:
            return self._polls.pop(0)
        await asyncio.sleep(timeout)
        return []


async def test_reading_again_from_before_the_open_batch_drops_it_unwritten() -> None:
    """The open batch starts at offset 3; the source then reads again from offset 0 (a new
    Kafka consumer resuming from an older commit). Every event is written once, each in a
    batch whose token covers its offset, so a later re-read is cut the same way."""
    codec = UsageEventCodec()
    messages = [
        BusMessage("usage-events", 0, offset, None, codec.encode(event())) for offset in range(6)
    ]
    writer = MemoryWriter()
    source = ScriptedSource([messages[3:5], messages])
    pipeline = build(source, writer, MemoryDeadLetter(), max_batch_rows=3, max_batch_seconds=60)
    await run_until_idle(pipeline)
    assert list(writer.batches) == ["usage-events/0/0-2", "usage-events/0/3-5"]
    assert len(writer.rows) == 6


class RebalancedSource(ScriptedSource):
    """A member that loses partition 0 to another member after its first poll."""

    def __init__(self, polls: list[list[BusMessage]]):
        super().__init__(polls)
        self.lost: set[int] = set()
        self.committed: dict[tuple[str, int], int] = {}

    async def poll(self, max_messages: int, timeout: float) -> list[BusMessage]:
        polled = await super().poll(max_messages, timeout)
        if polled:
            self.lost.add(0)
        return polled

    def owns(self, topic: str, partition: int) -> bool:
        return partition not in self.lost

    async def commit(self, offsets: dict[tuple[str, int], int]) -> None:
        self.committed.update(offsets)


async def test_an_open_batch_of_a_partition_given_to_another_member_is_dropped() -> None:
    """The open batch of partition 0 is not written when the member no longer reads it (the
    new owner reads it from the last commit, in batches of its own); partition 1's is."""
    codec = UsageEventCodec()
    messages = [
        BusMessage("usage-events", partition, offset, None, codec.encode(event()))
        for partition in (0, 1)
        for offset in range(2)
    ]
    writer = MemoryWriter()
    source = RebalancedSource([messages])
    pipeline = build(source, writer, MemoryDeadLetter(), max_batch_rows=3)
    await run_until_idle(pipeline)
    assert list(writer.batches) == ["usage-events/1/0-1"]
    assert source.committed == {("usage-events", 1): 2}
    assert pipeline.stats.batches_dropped == 1
    assert pipeline.stats.events_written == 2
