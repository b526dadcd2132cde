"""A stopping pipeline ends within ``consumer_stop_timeout_seconds`` whatever its source or
warehouse do: past the deadline the open batches are left uncommitted (read again by the
next consumer) and the source is stopped anyway."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime

from meterline.common.bus import BusMessage
from meterline.common.codec import UsageEventCodec
from meterline.common.config import GatewayConfig, TeamConfig
from meterline.common.events import UsageEvent
from meterline.common.pricing import StaticPrices
from meterline.consumer.assemble import build_pipeline
from meterline.consumer.batch_log import MemoryBatchLog
from meterline.consumer.dead_letter import MemoryDeadLetter
from meterline.consumer.enrich import Enricher
from meterline.consumer.pipeline import Pipeline
from meterline.consumer.settings import ConsumerSettings
from meterline.consumer.write import MemoryWriter, PythonBatchWriter

CODEC = UsageEventCodec()


def message(offset: int) -> BusMessage:
    event = UsageEvent(
        event_id=UsageEvent.new_id(),
        team_id="acme",
        api_key_name="prod",
        api_surface="chat_completions",
        started_at=datetime(2026, 3, 2, 9, tzinfo=UTC),
        duration_ms=100,
        model_requested="openai/gpt-x",
        model="gpt-x",
        provider="openai",
        credential_type="system",
        streamed=False,
        status="success",
        http_status=200,
        input_tokens=10,
        output_tokens=10,
    )
    return BusMessage("usage-events", 0, offset, b"acme", CODEC.encode(event))


class StuckSource:
    """Hands out ``count`` messages, then nothing; its commits never return when
    ``commit_hangs`` (a Kafka client looking for a coordinator that is gone)."""

    def __init__(self, count: int, commit_hangs: bool):
        self._messages = [message(offset) for offset in range(count)]
        self._commit_hangs = commit_hangs
        self.committed: dict[tuple[str, int], int] = {}
        self.stopped = False

    async def start(self) -> None:
        return None

    async def poll(self, max_messages: int, timeout: float) -> list[BusMessage]:
        if not self._messages:
            await asyncio.sleep(timeout)
            return []
        taken, self._messages = self._messages[:max_messages], self._messages[max_messages:]
        return taken

    async def commit(self, offsets: dict[tuple[str, int], int]) -> None:
        if self._commit_hangs:
            await asyncio.Event().wait()
        self.committed.update(offsets)

    def pause(self) -> None:
        return None

    def owns(self, topic: str, partition: int) -> bool:
        return True

    def resume(self) -> None:
        return None

    async def keep_alive(self) -> None:
        return None

    async def stop(self) -> None:
        self.stopped = True


def down_writer() -> MemoryWriter:
    """A warehouse that refuses every insert."""
    writer = MemoryWriter()
    writer.fail_next = 1_000_000
    return writer


def pipeline(source: StuckSource, writer: MemoryWriter, **settings: object) -> Pipeline:
    values: dict[str, object] = {
        "max_batch_rows": 3,
        "max_batch_seconds": 60,
        "consumer_stop_timeout_seconds": 0.5,
        "insert_retry_max_seconds": 0.05,
    }
    return build_pipeline(
        ConsumerSettings(**(values | settings)),  # type: ignore[arg-type]
        source=source,
        writer=PythonBatchWriter(
            CODEC, Enricher(StaticPrices({}), GatewayConfig(teams=[TeamConfig(id="acme")])), writer
        ),
        dead_letter=MemoryDeadLetter(),
        batch_log=MemoryBatchLog(),
        codec=CODEC,
    )


async def stop_after(running: Pipeline, seconds: float) -> float:
    """Run, set the stop signal after ``seconds``; how long the stop took."""
    stop = asyncio.Event()
    task = asyncio.create_task(running.run(stop))
    await asyncio.sleep(seconds)
    stop.set()
    stopped = time.monotonic()
    await asyncio.wait_for(task, 10)
    return time.monotonic() - stopped


async def test_a_commit_that_never_returns_does_not_keep_the_consumer_from_stopping() -> None:
    source = StuckSource(5, commit_hangs=True)
    running = pipeline(source, MemoryWriter())
    took = await stop_after(running, 0.2)
    assert 0.4 < took < 2, took
    assert running.stop_deadline_passed
    assert source.stopped
    assert source.committed == {}  # left uncommitted: read again by the next consumer


async def test_a_warehouse_that_stays_down_does_not_keep_the_consumer_from_stopping() -> None:
    source = StuckSource(5, commit_hangs=False)
    running = pipeline(source, down_writer())
    took = await stop_after(running, 0.2)
    assert took < 2, took
    assert running.stop_deadline_passed
    assert source.stopped
    assert source.committed == {}


async def test_a_stop_that_finishes_in_time_writes_and_commits_everything() -> None:
    source = StuckSource(5, commit_hangs=False)
    writer = MemoryWriter()
    running = pipeline(source, writer, consumer_stop_timeout_seconds=5)
    took = await stop_after(running, 0.2)
    assert took < 2, took
    assert not running.stop_deadline_passed
    assert source.committed == {("usage-events", 0): 5}
    assert sum(len(rows) for rows in writer.batches.values()) == 5
