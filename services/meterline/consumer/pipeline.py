"""The consumer pipeline: what happens to every message, in order (``assemble.py`` puts it
together).

Steps, in order, for every message:

1. ``source``      poll a batch of messages (Kafka consumer group, or the embedded
                   default's bus: its local log on disk)
2. ``decode``      read the event id (in place for the newest schema; a message that is no
                   usage event is rejected here)
   ``dedupe``      drop an event id seen recently (a producer-side repeat)
3. ``batch``       gather messages per partition until ``max_batch_rows`` or
                   ``max_batch_seconds`` (or, re-reading after a crash, exactly where the
                   batch log says)
4. ``batch_log``   record the batch's offset range, before the insert
5. ``write``       decode, validate and price the batch and insert it into ClickHouse with its
                   deduplication token (``engine_write``: inside the engine; or in Python)
6. ``dead_letter`` rejected messages -> dead-letter topic, with a circuit breaker
7. commit          the batch's offsets, only after the insert returned

Delivery guarantee: at-least-once from Kafka, each event counted once in the rollups.

A batch's identity (its range in the batch log, and its token) is topic, partition and
offsets, so those must never name two different messages, across processes too. Kafka's
offsets never go back. The embedded default's local log continues its offsets across
restarts and carries its own id in the topic name (``usage-events@log-<id>``), so a wiped
log starts a new identity; the memory-only bus is named per process. An earlier process's
recorded batches and tokens therefore never match a new batch, which would otherwise be
dropped as a repeat.

What a crash between two steps leads to:

- before the batch log (steps 1-3): nothing was committed or written; the messages are
  read again and batched afresh.
- after the batch log, before or during the insert: the messages are read again, cut at
  the recorded range, and inserted with the token of that range (for the first time, or
  dropped as a repeat if the insert had gone through).
- after the insert, before the commit: the same; ClickHouse drops the repeated block from
  the raw table and every rollup (``deduplicate_blocks_in_dependent_materialized_views``).
- after the commit: nothing is read again.
- read again from an older commit by a live consumer (a rebalance, or a new Kafka consumer
  replacing one that failed): the batch still open is dropped unwritten, since its messages
  come again, and the batch log cuts the rest as above.
- a partition a rebalance gave to another member: a batch of it still open here is dropped
  unwritten when it would be written (``MessageSource.owns``), since the new owner reads
  it from the last commit and cuts its own batches.
- producer-side repeats (the ingress re-sending an event it was not sure Kafka had) carry
  the same event id at other offsets: the dedupe step drops ids it has seen recently.
- dead letters are flushed before the commit, so a rejected message is never lost.

Warehouse outages: a failed batch-log read or write or insert is retried with backoff (up
to ``insert_retry_max_seconds`` between attempts) for as long as it takes. Meanwhile the
batch is kept, nothing past it is committed, the partitions are paused so no more messages
are fetched into memory, and the consumer polls Kafka now and then to stay in its group;
the first attempt that succeeds resumes the partitions.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from meterline.common.bus import BusMessage
from meterline.consumer.batch import Batch
from meterline.consumer.batch_log import BatchLog
from meterline.consumer.dead_letter import CircuitBreaker, CircuitOpen, DeadLetterSink
from meterline.consumer.decode import Decoder, Rejected
from meterline.consumer.dedupe import RecentIds
from meterline.consumer.observe import ConsumerMetrics, Lag
from meterline.consumer.settings import ConsumerSettings
from meterline.consumer.source import MessageSource, ObservableSource
from meterline.consumer.write import BatchWriter

log = logging.getLogger("meterline.consumer")

YIELD_EVERY = 1_000
"""Messages accepted between two turns of the event loop. Accepting never waits by itself,
and a poll can hand over 100,000 messages: without these turns, the batch being written
would not move on to its next step (and the Kafka client would not fetch ahead) until the
whole poll was accepted."""

KEEP_ALIVE_SECONDS = 5.0
"""How often a consumer paused by a warehouse outage polls Kafka to stay in its group."""


@dataclass
class ConsumerStats:
    events_written: int = 0
    events_rejected: int = 0
    batches_written: int = 0
    insert_failures: int = 0
    duplicates_dropped: int = 0
    batches_dropped: int = 0
    """Open batches of a partition a rebalance gave to another member."""


class Pipeline:
    def __init__(
        self,
        source: MessageSource,
        decoder: Decoder,
        writer: BatchWriter,
        dead_letter: DeadLetterSink,
        batch_log: BatchLog,
        breaker: CircuitBreaker,
        recent_ids: RecentIds,
        settings: ConsumerSettings,
    ):
        """Built by ``consumer.assemble.build_pipeline``, which makes the decoder, the
        breaker and the recent ids from the settings."""
        self._source = source
        self._decoder = decoder
        self._writer = writer
        self._dead_letter = dead_letter
        self._batch_log = batch_log
        self._settings = settings
        self._breaker = breaker
        self._open: dict[tuple[str, int], Batch] = {}
        self._planned: dict[tuple[str, int], dict[int, int]] = {}
        self._next_offset: dict[tuple[str, int], int] = {}
        self._recent_ids = recent_ids
        # The batch being written while the next one is read and priced (one at a time).
        self._writing: asyncio.Task[None] | None = None
        self._writing_batch: Batch | None = None
        self.stats = ConsumerStats()
        self.metrics = ConsumerMetrics()
        self.breaker_opened = False
        self.idle = asyncio.Event()
        """Set while no batch is open: everything read so far is written and committed."""
        self.warehouse_down = asyncio.Event()
        """Set while writes to the warehouse fail and the partitions are paused."""
        self.stop_deadline_passed = False
        """Set when stopping took longer than ``consumer_stop_timeout_seconds``."""

    async def run(self, stop: asyncio.Event) -> None:
        """Consume until ``stop`` is set, then write and commit what is open, for at most
        ``consumer_stop_timeout_seconds``: past that (a warehouse or a broker that does not
        answer) the open batches are left uncommitted, to be read again by the next
        consumer and cut where the batch log says, and the source is stopped anyway, so a
        SIGTERM always ends the process within its grace period."""
        deadline = asyncio.create_task(self._stop_deadline(stop, asyncio.current_task()))
        try:
            await self._source.start()
            try:
                await self._consume(stop)
            finally:
                if self._writing is not None:
                    if deadline.done():
                        self._writing.cancel()
                    # Failing or cancelled: let the write under way end before the source goes.
                    await asyncio.wait([self._writing])
        except asyncio.CancelledError:
            if not self.stop_deadline_passed:
                raise
            # The cancellation was the deadline's own: this is the end it asked for.
            current = asyncio.current_task()
            if current is not None:
                current.uncancel()
            if self._writing is not None and not self._writing.done():
                self._writing.cancel()
                await asyncio.wait([self._writing])
            log.error(
                "stopping: the open batches were not written and committed within %.0fs; "
                "left uncommitted (%d events), they are read again by the next consumer",
                self._settings.consumer_stop_timeout_seconds,
                sum(len(batch.messages) for batch in self._open.values()),
            )
        finally:
            deadline.cancel()
            await self._source.stop()

    def assigned(self) -> bool:
        """Whether the source reads any partition (a source that cannot say: yes)."""
        source = self._source
        return not isinstance(source, ObservableSource) or bool(source.assignment())

    def assigned_partitions(self) -> int:
        source = self._source
        return len(source.assignment()) if isinstance(source, ObservableSource) else 0

    async def lag(self) -> Lag | None:
        """Per partition, what is left to write; None when the source cannot say."""
        source = self._source
        return await source.lag() if isinstance(source, ObservableSource) else None

    def _record_outcome(self, failed: bool, reason: str = "", successes: int = 0) -> None:
        try:
            if successes:
                self._breaker.record_successes(successes)
            else:
                self._breaker.record(failed, reason)
        except CircuitOpen:
            self.breaker_opened = True
            self.metrics.breaker_open.set(1)
            raise

    async def _stop_deadline(self, stop: asyncio.Event, run: asyncio.Task[None] | None) -> None:
        await stop.wait()
        await asyncio.sleep(self._settings.consumer_stop_timeout_seconds)
        self.stop_deadline_passed = True
        if run is not None:
            run.cancel()

    async def _consume(self, stop: asyncio.Event) -> None:
        poll_timeout = min(0.1, self._settings.max_batch_seconds)
        while not stop.is_set():
            messages = await self._source.poll(self._settings.max_batch_rows, poll_timeout)
            await self._accept_all(messages)
            await self._flush(only_ready=True)
            # Idle once nothing more arrives and the last write is done. While messages
            # keep arriving, the next batch is read during the write under way (waiting
            # for it here, when a poll happened to end a batch, would stop the reading).
            if not self._open and not messages:
                await self._drain()
                self.idle.set()
        # Stopping: take what the source already holds, without waiting for more, so an
        # in-process bus hands over everything the ingress published before it stopped.
        while messages := await self._source.poll(self._settings.max_batch_rows, 0):
            await self._accept_all(messages)
            await self._flush(only_ready=True)
        log.info(
            "stopping: writing and committing %d open batches (%d events)",
            len(self._open),
            sum(len(batch.messages) for batch in self._open.values()),
        )
        await self._flush(only_ready=False)
        await self._drain()
        log.info(
            "stopped: %d events written in %d batches, %d dead-lettered, %d repeats dropped",
            self.stats.events_written,
            self.stats.batches_written,
            self.stats.events_rejected,
            self.stats.duplicates_dropped,
        )

    async def _accept_all(self, messages: list[BusMessage]) -> None:
        for count, message in enumerate(messages, 1):
            await self._accept(message)
            if count % YIELD_EVERY == 0:
                await asyncio.sleep(0)

    async def _accept(self, message: BusMessage) -> None:
        self.idle.clear()
        key = (message.topic, message.partition)
        batch = self._open.get(key)
        if batch is not None and message.offset < self._next_offset[key]:
            # Read again from an earlier offset (a new Kafka consumer, a rebalance): the open
            # batch's messages come again after this one, so it is dropped unwritten, and
            # the batch log says where the batches are cut from here on.
            del self._open[key]
            batch = None
        if batch is not None and not batch.admits(message.offset):
            await self._write_and_commit(self._open.pop(key))
            batch = None
        if batch is None:
            batch = self._open[key] = await self._open_batch(message)
        self._next_offset[key] = message.offset + 1
        event_id = self._decoder.event_id(message)
        if isinstance(event_id, Rejected):
            await self._reject(event_id)
            batch.add(message.offset, None, None)
        elif self._is_repeat(event_id, batch):
            self.stats.duplicates_dropped += 1
            self.metrics.duplicates.inc()
            batch.add(message.offset, event_id, None)
        else:
            batch.add(message.offset, event_id, message)
        if batch.is_full(self._settings.max_batch_rows):
            await self._write_and_commit(self._open.pop(key))

    def _is_repeat(self, event_id: str, batch: Batch) -> bool:
        writing = self._writing_batch
        return (
            event_id in self._recent_ids
            or batch.holds(event_id)
            or (writing is not None and writing.holds(event_id))
        )

    async def _open_batch(self, message: BusMessage) -> Batch:
        key = (message.topic, message.partition)
        if self._next_offset.get(key) != message.offset:
            # First message of a partition, or a jump (restart, rebalance, seek): ask the
            # batch log which ranges were recorded from here on, possibly by another member.
            # The write under way first: the warehouse client serves one call at a time.
            await self._drain()
            recorded: dict[int, int] = {}

            async def read_log() -> None:
                recorded.update(
                    await self._batch_log.recorded(message.topic, message.partition, message.offset)
                )

            await self._retry(f"reading the batch log of {key[0]}/{key[1]}", read_log)
            self._planned[key] = recorded
        planned_last = self._planned.get(key, {}).get(message.offset)
        return Batch(message.topic, message.partition, message.offset, planned_last=planned_last)

    async def _reject(self, rejected: Rejected) -> None:
        self.stats.events_rejected += 1
        log.warning(
            "dead-lettering %s/%s/%s: %s",
            rejected.message.topic,
            rejected.message.partition,
            rejected.message.offset,
            rejected.reason,
        )
        await self._dead_letter.send(rejected)
        self.metrics.dead_letters.inc()
        self._record_outcome(True, rejected.reason)

    async def _flush(self, only_ready: bool) -> None:
        for key, batch in list(self._open.items()):
            if only_ready and not batch.is_ready(
                self._settings.max_batch_rows, self._settings.max_batch_seconds
            ):
                continue
            await self._write_and_commit(batch)
            del self._open[key]

    async def _write_and_commit(self, batch: Batch) -> None:
        """Hand the batch to the writer and go on reading: the insert runs in a thread,
        mostly inside ClickHouse, while this one reads the next batch. Only one
        batch is written at a time, so offsets are committed in order and at most two
        batches are in memory, whatever the warehouse does."""
        await self._drain()
        self.metrics.batch_rows.observe(batch.size)
        self.metrics.batch_age.observe(time.monotonic() - batch.opened_at)
        self._writing_batch = batch
        self._writing = asyncio.create_task(self._write_and_commit_now(batch))

    async def _drain(self) -> None:
        """Wait for the batch being written (and raise what its writing raised)."""
        if self._writing is None:
            return
        try:
            await self._writing
        finally:
            self._writing = None
            self._writing_batch = None

    async def _write_and_commit_now(self, batch: Batch) -> None:
        if not self._source.owns(batch.topic, batch.partition):
            self.stats.batches_dropped += 1
            log.warning(
                "dropping batch %s unwritten: its partition now belongs to another member, "
                "which reads it from the last commit",
                batch.deduplication_token,
            )
            return
        await self._dead_letter.flush()
        if batch.planned_last is None:
            await self._retry(
                f"recording batch {batch.deduplication_token}",
                lambda: self._batch_log.record(
                    batch.topic, batch.partition, batch.first_offset, batch.last_offset
                ),
            )
        rejected: list[Rejected] = []

        async def write() -> None:
            started = time.perf_counter()
            rejected[:] = await self._writer.write(batch.messages, batch.deduplication_token)
            self.metrics.insert_duration.observe(time.perf_counter() - started)

        await self._retry(f"inserting batch {batch.deduplication_token}", write)
        for each in rejected:
            if each.event_id is not None:
                batch.event_ids.discard(each.event_id)
            await self._reject(each)
        self._record_outcome(False, successes=len(batch.messages) - len(rejected))
        await self._dead_letter.flush()
        self._recent_ids.remember(batch.event_ids)
        started = time.perf_counter()
        try:
            await self._source.commit({(batch.topic, batch.partition): batch.last_offset + 1})
            self.metrics.commit_duration.observe(time.perf_counter() - started)
        except Exception as error:
            self.metrics.commit_failures.inc()
            # The group rebalanced and the partition may belong to another member now
            # (retriable errors are retried by the Kafka client itself). The batch is
            # written; whoever reads the partition next re-reads it from the last commit,
            # cuts it at the recorded range, and ClickHouse drops the repeat by its token.
            # Stopping the consumer here would only stop the counting.
            log.warning("committing %s failed (%r); carrying on", batch.deduplication_token, error)
        self.stats.batches_written += 1
        self.stats.events_written += len(batch.messages) - len(rejected)
        self.metrics.batches_written.inc()
        self.metrics.events_written.inc(amount=len(batch.messages) - len(rejected))

    async def _retry(self, what: str, attempt: Callable[[], Awaitable[None]]) -> None:
        """Retry a warehouse write with backoff until it succeeds.

        While the warehouse is down the batch is kept and nothing past it is committed
        (committing rows that are not written would lose them), the source's partitions
        are paused so that no more messages pile up in memory, and the consumer stays in
        its group; the first attempt that succeeds resumes the partitions."""
        delay = 0.1
        failed_at: float | None = None
        while True:
            try:
                await attempt()
                break
            except Exception as error:
                self.stats.insert_failures += 1
                self.metrics.write_failures.inc()
                if failed_at is None:
                    failed_at = time.monotonic()
                    self._source.pause()
                    self.warehouse_down.set()
                    self.metrics.warehouse_up.set(0)
                log.warning("%s failed (%s); retrying in %.1fs", what, error, delay)
                await self._wait_paused(delay)
                delay = min(delay * 2, self._settings.insert_retry_max_seconds)
        if failed_at is not None:
            self._source.resume()
            self.warehouse_down.clear()
            self.metrics.warehouse_up.set(1)
            log.warning(
                "warehouse writable again after %.1fs; partitions resumed",
                time.monotonic() - failed_at,
            )

    async def _wait_paused(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            await asyncio.sleep(min(left, KEEP_ALIVE_SECONDS))
            await self._source.keep_alive()
