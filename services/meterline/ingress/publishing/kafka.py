"""``KafkaPublisher``: the distributed mode's publisher, and ``kafka_publisher(settings)``.

Events wait in a bounded in-memory buffer that a background task drains into an idempotent
aiokafka producer (``acks=all``); failed sends go back to the front of the buffer and are
retried with back-off. When the buffer is full, or Kafka is down (a connection fails, a send
fails, or nothing was acknowledged for ``stall_seconds``: ``health.py``), events go to the
local spool (``spool.py``) instead: it survives a restart, is replayed when Kafka is back,
and only past its disk limit are events dropped, with an ERROR log and the ``dropped``
counter.

Delivery: at-least-once up to the spool's disk limit. A send whose acknowledgement was lost
is sent again, and a spool segment half sent before a restart is sent again from its start,
so Kafka may hold an event twice; the consumer drops repeats by event id. What a crash
loses: events in memory that were not yet spooled. While Kafka is healthy that is the few
milliseconds of events waiting for their acknowledgement; once it is seen down, new events
go to disk first. A graceful stop (SIGTERM) spools whatever Kafka did not take in time.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import partial

from aiokafka import AIOKafkaProducer
from aiokafka.errors import (
    InvalidProducerEpoch,
    OutOfOrderSequenceNumber,
    ProducerClosed,
    ProducerFenced,
    UnknownProducerId,
)

from meterline.common.codec import UsageEventCodec
from meterline.common.events import UsageEvent
from meterline.common.waiting import wait_event
from meterline.ingress.publishing.health import PublisherHealth
from meterline.ingress.publishing.protocol import Record, to_record
from meterline.ingress.settings import IngressSettings
from meterline.ingress.spool import Spool

# Every publisher logs under one name, whichever mode the ingress runs in.
log = logging.getLogger("meterline.ingress.publisher")

PRODUCER_BROKEN = (
    OutOfOrderSequenceNumber,
    UnknownProducerId,
    InvalidProducerEpoch,
    ProducerFenced,
    ProducerClosed,
)
"""Errors after which an idempotent producer cannot send again (for example a broker that
crashed lost the tail of its log, and with it the producer's sequence numbers): it is
replaced by a new one, with a new producer id."""


@dataclass(eq=False)
class _Item:
    """One record on its way to Kafka; ``segment`` is its spool segment when it was read
    from the spool (and must be acknowledged there once Kafka took it)."""

    record: Record
    segment: int | None = None
    attempt: int = 0
    """Which send the pending delivery callback belongs to: a replaced producer's late
    callbacks must not touch a record already sent again by its successor."""


class KafkaPublisher:
    """Publishes to a Kafka topic through a bounded buffer drained in the background, with
    the spool behind the buffer.

    Counters: ``sent`` (acknowledged by Kafka), ``failed`` (send attempts that failed and
    were put back for a retry, or events that could not be encoded), ``dropped`` (events
    lost: memory and spool full, or no spool); gauges ``buffered`` (in memory or in flight
    right now) and ``spooled`` (on disk, not yet acknowledged)."""

    def __init__(
        self,
        bootstrap_servers: str,
        topic: str,
        *,
        max_buffered: int = 100_000,
        linger_ms: int = 20,
        flush_timeout_seconds: float = 10.0,
        codec: UsageEventCodec | None = None,
        client_id: str = "meterline-ingress",
        min_backoff_seconds: float = 0.1,
        max_backoff_seconds: float = 30.0,
        spool: Spool | None = None,
        stall_seconds: float = 5.0,
        request_timeout_seconds: float = 15.0,
        metrics_log_seconds: float = 60.0,
    ):
        self._bootstrap_servers = bootstrap_servers
        self._topic = topic
        self._max_buffered = max_buffered
        self._linger_ms = linger_ms
        self._flush_timeout = flush_timeout_seconds
        self._codec = codec or UsageEventCodec()
        self._client_id = client_id
        self._min_backoff = min_backoff_seconds
        self._max_backoff = max_backoff_seconds
        self._backoff = min_backoff_seconds
        self._spool = spool
        self._request_timeout_ms = int(request_timeout_seconds * 1000)
        self._metrics_log_seconds = metrics_log_seconds
        # Records read from the spool at a time: enough to keep the producer busy, few
        # enough that replaying a large spool never holds much of it in memory.
        self._refill = max(1, min(max_buffered // 2, 2_000))

        self._pending: deque[_Item] = deque()
        self._in_flight: set[_Item] = set()
        self._wakeup = asyncio.Event()
        self._retry_at = 0.0
        self._closing = False
        self._stop_requested = asyncio.Event()
        self._producer: AIOKafkaProducer | None = None
        self._replace_producer = False
        self._retired: set[asyncio.Task[None]] = set()
        self._task: asyncio.Task[None] | None = None
        self._watcher: asyncio.Task[None] | None = None
        self._health = PublisherHealth(stall_seconds)

        self.sent = 0
        self.failed = 0
        self.dropped = 0

    @property
    def buffered(self) -> int:
        return len(self._pending) + len(self._in_flight)

    @property
    def memory_only(self) -> int:
        """Events held nowhere but in memory: what a crash right now would lose."""
        return sum(1 for item in (*self._pending, *self._in_flight) if item.segment is None)

    @property
    def spooled(self) -> int:
        return self._spool.waiting if self._spool is not None else 0

    @property
    def accepting(self) -> bool:
        """Whether a new event is kept: Kafka is connected and taking events, or the spool
        has room for it (readiness)."""
        if self._producer is not None and self._health.healthy:
            return True
        return self._spool is not None and self._spool.bytes < self._spool.max_bytes

    def metrics(self) -> Mapping[str, int]:
        return {
            "sent": self.sent,
            "buffered": self.memory_only,
            "spooled": self.spooled,
            "spooled_total": self._spool.appended if self._spool is not None else 0,
            "spool_bytes": self._spool.bytes if self._spool is not None else 0,
            "dropped": self.dropped,
            "failed": self.failed,
        }

    async def start(self) -> None:
        """Open the spool (what an earlier run left there is sent first) and start draining.
        Does not wait for Kafka: if it is down now, events wait in memory or on disk and the
        background task keeps trying to connect."""
        if self._task is not None:
            return
        if self._spool is not None:
            await asyncio.to_thread(self._spool.open)
        self._health.progress(asyncio.get_running_loop().time())
        self._task = asyncio.create_task(self._drain(), name="kafka-publisher")
        self._watcher = asyncio.create_task(self._watch(), name="kafka-publisher-watch")

    def publish(self, event: UsageEvent) -> None:
        try:
            record = to_record(self._codec, event)
        except Exception:
            self.failed += 1
            log.exception("usage event %s could not be encoded; dropped", event.event_id)
            return
        if self._closing:
            self._spill([record], "publish() after stop()")
        elif self._spool is not None and not self._health.healthy:
            self._spill([record], "Kafka is down")
        elif self.buffered >= self._max_buffered:
            self._spill([record], f"the buffer is full ({self._max_buffered} events)")
        else:
            self._pending.append(_Item(record))
            self._wakeup.set()

    async def stop(self) -> None:
        """Send what is buffered, waiting at most ``flush_timeout_seconds``; whatever is
        left after that goes to the spool (and stays there for the next start)."""
        self._closing = True
        self._stop_requested.set()
        self._wakeup.set()
        if self._task is not None:
            try:
                await asyncio.wait_for(asyncio.shield(self._task), self._flush_timeout)
            except TimeoutError:
                self._task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await self._task
            self._task = None
        producer = self._producer
        self._producer = None
        if producer is not None:
            try:
                # Flushes the producer's own batches; failed ones come back to _pending
                # through their delivery callbacks.
                await asyncio.wait_for(producer.stop(), self._flush_timeout)
            except Exception as error:
                log.warning("the Kafka producer did not stop cleanly: %r", error)
        if self._watcher is not None:
            self._watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watcher
            self._watcher = None
        # Records read from the spool are still in their segment; only memory needs saving.
        left = [i.record for i in (*self._pending, *self._in_flight) if i.segment is None]
        self._pending.clear()
        self._in_flight.clear()
        if left:
            self._spill(left, "Kafka did not take them before shutdown")
        if self._spool is not None:
            self._spool.close()
            if self._spool.waiting:
                log.warning(
                    "%d usage events stay in the spool %s until the next start",
                    self._spool.waiting,
                    self._spool.directory,
                )
        self._log_metrics()

    def _spill(self, records: Sequence[Record], reason: str) -> None:
        """Records that cannot wait in memory: to the spool, or dropped past its limit."""
        written = 0
        if self._spool is not None:
            try:
                written = self._spool.append(records)
            except OSError:
                log.exception("writing to the spool %s failed", self._spool.directory)
            if written:
                self._wakeup.set()
        if written < len(records):
            limit = "no spool" if self._spool is None else "the spool is full"
            self._drop(len(records) - written, f"{reason}, {limit}")

    def _drop(self, count: int, reason: str) -> None:
        # The first drop and then one line per thousand: loud, but an outage must not turn
        # into a log flood.
        if not self.dropped or self.dropped // 1000 != (self.dropped + count) // 1000:
            log.error("DROPPING usage events: %s (%d dropped so far)", reason, self.dropped + count)
        self.dropped += count

    def _set_unhealthy(self, reason: str) -> None:
        """Kafka is down or stuck: spool what waits in memory, and send new events there."""
        if not self._health.down():
            return
        log.warning(
            "Kafka at %s is not taking usage events (%s); %s",
            self._bootstrap_servers,
            reason,
            "spooling them to disk" if self._spool is not None else "buffering them in memory",
        )
        self._spool_memory()

    def _spool_memory(self) -> None:
        """Move the records waiting only in memory to the spool (as far as it has room)."""
        if self._spool is None:
            return
        memory = [item for item in self._pending if item.segment is None]
        if not memory:
            return
        try:
            written = self._spool.append([item.record for item in memory])
        except OSError:
            log.exception("writing to the spool %s failed", self._spool.directory)
            return
        # The spooled ones come back through the spool; the rest (spool full) stay here.
        spooled = {id(item) for item in memory[:written]}
        self._pending = deque(item for item in self._pending if id(item) not in spooled)

    async def _connect(self) -> AIOKafkaProducer:
        producer = AIOKafkaProducer(
            bootstrap_servers=self._bootstrap_servers,
            client_id=self._client_id,
            # Idempotence (which implies acks=all): the producer's own retries never write
            # a record twice, and an acknowledged record is on every in-sync replica.
            enable_idempotence=True,
            acks="all",
            compression_type="lz4",
            linger_ms=self._linger_ms,
            request_timeout_ms=self._request_timeout_ms,
        )
        try:
            await producer.start()
        except BaseException:
            # A producer that failed to start is not reusable; the next attempt builds a
            # new one.
            with contextlib.suppress(Exception):
                await producer.stop()
            raise
        return producer

    async def _wait_stop(self, seconds: float) -> None:
        """Sleep, but wake at once when stop() is called."""
        await wait_event(self._stop_requested, seconds)

    async def _drain(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            if self._closing and self._spool is not None and not self._health.healthy:
                # Kafka is down: stop() moves what is in memory to the spool at once.
                return
            if self._replace_producer and self._producer is not None:
                self._retire_producer()
            if self._producer is None:
                try:
                    self._producer = await self._connect()
                    self._backoff = self._min_backoff
                    self._health.progress(loop.time())
                except Exception as error:
                    if self._closing:
                        return
                    self._set_unhealthy(f"connecting failed: {error}")
                    log.warning(
                        "Kafka at %s unavailable (%s); %d usage events buffered, "
                        "%d spooled, retrying",
                        self._bootstrap_servers,
                        error,
                        self.buffered,
                        self.spooled,
                    )
                    # Woken early by stop(), which then gets one last connection attempt.
                    await self._wait_stop(self._next_backoff())
                    continue
            delay = self._retry_at - loop.time()
            if delay > 0:
                await self._wait_stop(delay)
                continue
            if (
                self._spool is not None
                and not self._closing
                and self.buffered < self._refill
                and self._spool.waiting
            ):
                for record, segment in self._spool.read(self._refill):
                    self._pending.append(_Item(record, segment))
            if not self._pending:
                if self._closing and not self._in_flight:
                    return
                self._wakeup.clear()
                await self._wakeup.wait()
                continue
            item = self._pending.popleft()
            if not self._in_flight:
                self._health.progress(loop.time())
            self._in_flight.add(item)
            item.attempt += 1
            try:
                # Returns once the record is in the producer's batch; the future resolves
                # when Kafka acknowledges it.
                delivery = await self._producer.send(
                    self._topic, key=item.record[0], value=item.record[1]
                )
            except asyncio.CancelledError as error:
                self._put_back(item, error)
                raise
            except Exception as error:  # no metadata for the topic, producer closed, ...
                self._put_back(item, error)
                continue
            delivery.add_done_callback(partial(self._delivered, item, item.attempt))

    def _retire_producer(self) -> None:
        """Drop a broken or stuck producer: what it had in flight is sent again by the next."""
        producer, self._producer = self._producer, None
        self._replace_producer = False
        if producer is not None:
            log.warning(
                "replacing the Kafka producer; its %d events in flight are sent again",
                len(self._in_flight),
            )
        self._pending.extendleft(self._in_flight)
        self._in_flight.clear()
        if producer is not None:
            task = asyncio.create_task(self._stop_quietly(producer))
            self._retired.add(task)
            task.add_done_callback(self._retired.discard)

    async def _stop_quietly(self, producer: AIOKafkaProducer) -> None:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(producer.stop(), self._flush_timeout)

    def _delivered(self, item: _Item, attempt: int, delivery: asyncio.Future[object]) -> None:
        if item not in self._in_flight or item.attempt != attempt:
            return  # stop() saved it already, or a new producer sent it again
        if delivery.cancelled():
            self._put_back(item, asyncio.CancelledError())
        elif (error := delivery.exception()) is not None:
            self._put_back(item, error)
        else:
            self._in_flight.discard(item)
            self.sent += 1
            if item.segment is not None and self._spool is not None:
                self._spool.acknowledge(item.segment)
            self._backoff = self._min_backoff
            if self._health.acknowledged(asyncio.get_running_loop().time()):
                log.info("Kafka at %s takes usage events again", self._bootstrap_servers)
            if not self.buffered or (self._spool is not None and self._spool.waiting):
                self._wakeup.set()

    def _put_back(self, item: _Item, error: BaseException) -> None:
        if item not in self._in_flight:
            return  # its producer was replaced, which put it back already
        self._in_flight.discard(item)
        self.failed += 1
        if isinstance(error, PRODUCER_BROKEN):
            self._replace_producer = True
        self._set_unhealthy(f"a send failed: {error!r}")
        if self._spool_instead(item):
            self._wakeup.set()
        else:
            self._pending.appendleft(item)
        loop = asyncio.get_running_loop()
        if self._retry_at <= loop.time():
            log.warning("sending a usage event to Kafka failed (%r); retrying", error)
            self._retry_at = loop.time() + self._next_backoff()
        self._wakeup.set()

    def _spool_instead(self, item: _Item) -> bool:
        """While Kafka is down, a memory-only record that failed goes to disk."""
        if self._spool is None or self._health.healthy or item.segment is not None:
            return False
        try:
            return self._spool.append([item.record]) == 1
        except OSError:
            log.exception("writing to the spool %s failed", self._spool.directory)
            return False

    def _next_backoff(self) -> float:
        backoff = self._backoff
        self._backoff = min(self._backoff * 2, self._max_backoff)
        return backoff

    async def _watch(self) -> None:
        """Notice a Kafka that stopped acknowledging (its sends only fail much later), and
        log the counters now and then while anything is buffered, spooled or dropped."""
        loop = asyncio.get_running_loop()
        next_log = loop.time() + self._metrics_log_seconds
        dropped_at_last_log = self.dropped
        while True:
            await asyncio.sleep(self._health.check_seconds)
            now = loop.time()
            if self._health.stalled(now, len(self._in_flight)):
                self._set_unhealthy(f"nothing acknowledged for {self._health.stall_seconds:g}s")
                # A producer keeps what it has in flight for as long as the broker is
                # away, in memory only. Replace it, so that those records go to the spool
                # too; the new producer sends them when Kafka is back. Should the old one
                # still deliver them, the consumer drops the repeats by event id.
                self._retire_producer()
                self._spool_memory()
                self._wakeup.set()
            if now >= next_log:
                next_log = now + self._metrics_log_seconds
                if self.buffered or self.spooled or self.dropped != dropped_at_last_log:
                    dropped_at_last_log = self.dropped
                    self._log_metrics()

    def _log_metrics(self) -> None:
        metrics = self.metrics()
        log.info("usage events: %s", ", ".join(f"{k}={v}" for k, v in metrics.items()))


def kafka_publisher(settings: IngressSettings) -> KafkaPublisher:
    """The publisher ``meterline ingress`` (and all-in-one on Kafka) runs with."""
    if not settings.kafka_bootstrap_servers:
        raise ValueError("a Kafka publisher needs KAFKA_BOOTSTRAP_SERVERS")
    spool = None
    if settings.ingress_spool_max_bytes:
        spool = Spool(settings.resolved_spool_dir(), settings.ingress_spool_max_bytes)
    return KafkaPublisher(
        settings.kafka_bootstrap_servers,
        settings.usage_topic,
        max_buffered=settings.publish_buffer_events,
        flush_timeout_seconds=settings.publish_flush_timeout_seconds,
        spool=spool,
        stall_seconds=settings.publish_stall_seconds,
        request_timeout_seconds=settings.publish_request_timeout_seconds,
        max_backoff_seconds=settings.publish_retry_max_seconds,
    )
