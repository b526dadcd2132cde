"""The consumer pipeline, assembled in one place.

Steps, in order, for every message:

1. ``source``      poll a batch of messages (Kafka consumer group, or the in-process bus)
2. ``decode``      Avro single-object bytes -> validated UsageEvent, or a rejection
3. ``enrich``      price it (market cost, team cost, credential type) -> raw-table row
4. ``batch``       gather rows per partition until ``max_batch_rows`` or ``max_batch_seconds``
5. ``dead_letter`` rejected messages -> dead-letter topic, with a circuit breaker
6. ``write``       insert the batch into ClickHouse with its deduplication token
7. commit          the batch's offsets, only after the insert returned

Delivery guarantee: at-least-once from Kafka, each event counted once in the rollups.
What a crash between two steps leads to:

- before the insert (steps 1-5): nothing was committed; the messages are read again.
- during or after the insert, before the commit: the batch is read again and inserted
  again with the same deduplication token (topic/partition/first-last offset), which
  ClickHouse drops from the raw table and every rollup. This holds while the re-read
  batch has the same boundaries; a batch cut differently after a restart is the open
  problem that recording batch ranges before the insert solves.
- after the commit: nothing is read again.
- dead letters are flushed before the commit, so a rejected message is never lost.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

from meterline.common.bus import BusMessage
from meterline.common.codec import UsageEventCodec
from meterline.consumer.batch import Batch
from meterline.consumer.dead_letter import CircuitBreaker, DeadLetterSink
from meterline.consumer.decode import Rejected, decode
from meterline.consumer.enrich import Enricher
from meterline.consumer.settings import ConsumerSettings
from meterline.consumer.source import MessageSource
from meterline.consumer.write import Writer

log = logging.getLogger("meterline.consumer")


@dataclass
class ConsumerStats:
    events_written: int = 0
    events_rejected: int = 0
    batches_written: int = 0
    insert_failures: int = 0


class Pipeline:
    def __init__(
        self,
        source: MessageSource,
        codec: UsageEventCodec,
        enricher: Enricher,
        writer: Writer,
        dead_letter: DeadLetterSink,
        settings: ConsumerSettings,
    ):
        self._source = source
        self._codec = codec
        self._enricher = enricher
        self._writer = writer
        self._dead_letter = dead_letter
        self._settings = settings
        self._breaker = CircuitBreaker(
            settings.dead_letter_breaker_ratio, settings.dead_letter_breaker_min_messages
        )
        self._open: dict[tuple[str, int], Batch] = {}
        self.stats = ConsumerStats()
        self.idle = asyncio.Event()
        """Set while no batch is open: everything read so far is written and committed."""

    async def run(self, stop: asyncio.Event) -> None:
        """Consume until ``stop`` is set, then write and commit what is open."""
        await self._source.start()
        try:
            poll_timeout = min(0.1, self._settings.max_batch_seconds)
            while not stop.is_set():
                messages = await self._source.poll(self._settings.max_batch_rows, poll_timeout)
                for message in messages:
                    await self._accept(message)
                await self._flush(only_ready=True)
                if not self._open:
                    self.idle.set()
            # Stopping: take what the source already holds, without waiting for more, so an
            # in-process bus hands over everything the ingress published before it stopped.
            while messages := await self._source.poll(self._settings.max_batch_rows, 0):
                for message in messages:
                    await self._accept(message)
                await self._flush(only_ready=True)
            await self._flush(only_ready=False)
        finally:
            await self._source.stop()

    async def _accept(self, message: BusMessage) -> None:
        self.idle.clear()
        key = (message.topic, message.partition)
        batch = self._open.get(key)
        if batch is None:
            batch = self._open[key] = Batch(message.topic, message.partition, message.offset)
        result = decode(self._codec, message)
        if isinstance(result, Rejected):
            await self._reject(result)
            batch.add(message.offset, None)
            return
        try:
            row = self._enricher.row(result)
        except Exception as error:  # a pricing bug must not stop the stream: dead-letter it
            log.exception("enriching event %s failed", result.event_id)
            await self._reject(Rejected(message, f"enrich failed: {error}"))
            batch.add(message.offset, None)
            return
        self._breaker.record(False)
        batch.add(message.offset, row)

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
        self._breaker.record(True, rejected.reason)

    async def _flush(self, only_ready: bool) -> None:
        for key, batch in list(self._open.items()):
            if only_ready and not batch.is_ready(
                self._settings.max_batch_rows, self._settings.max_batch_seconds
            ):
                continue
            await self._write_and_commit(batch)
            del self._open[key]

    async def _write_and_commit(self, batch: Batch) -> None:
        await self._dead_letter.flush()
        delay = 0.1
        while True:
            try:
                await self._writer.insert(batch.rows, batch.deduplication_token)
                break
            except Exception as error:
                # Keep the batch and retry: committing past rows that are not written
                # would lose them. Paused partitions stop the fetcher from buffering more.
                self.stats.insert_failures += 1
                log.warning(
                    "insert of %s failed (%s); retrying in %.1fs",
                    batch.deduplication_token,
                    error,
                    delay,
                )
                self._source.pause()
                await asyncio.sleep(delay)
                delay = min(delay * 2, self._settings.insert_retry_max_seconds)
        self._source.resume()
        await self._source.commit({(batch.topic, batch.partition): batch.last_offset + 1})
        self.stats.batches_written += 1
        self.stats.events_written += len(batch.rows)
