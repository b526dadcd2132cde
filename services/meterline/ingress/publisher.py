"""Where usage events go once a request is finished.

``publish()`` is synchronous and cheap on purpose: it runs after the response has been sent
and must never block, fail or slow the caller. Every implementation keeps that promise.

- ``KafkaPublisher``: the distributed mode. Events wait in a bounded in-memory buffer that a
  background task drains into an idempotent aiokafka producer; failed sends go back to the
  front of the buffer and are retried with back-off, so a Kafka outage costs memory, not
  requests. Beyond the bound events are dropped and counted (``dropped``); spooling them to
  a local file instead is the job of ``_overflow`` (a later issue).
- ``BusPublisher``: the embedded mode's in-process bus.
- ``MemoryPublisher``: a list, for tests.

Delivery: at-least-once up to the bound. A send whose acknowledgement was lost is sent
again, so Kafka may hold an event twice; the consumer drops repeats by event id.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Sequence
from functools import partial
from typing import Protocol

from aiokafka import AIOKafkaProducer

from meterline.common.bus import InProcessBus
from meterline.common.codec import UsageEventCodec
from meterline.common.events import UsageEvent

log = logging.getLogger("meterline.ingress.publisher")

Record = tuple[bytes, bytes]
"""(key, value) as they go to Kafka: the team id and the Avro single-object encoding."""


class UsagePublisher(Protocol):
    async def start(self) -> None: ...

    def publish(self, event: UsageEvent) -> None:
        """Hand one event over. Never blocks, never raises."""
        ...

    async def stop(self) -> None:
        """Deliver what is buffered (within the implementation's time limit), then close."""
        ...


def _record(codec: UsageEventCodec, event: UsageEvent) -> Record:
    # Keyed by team so one team's events stay ordered within a partition.
    return event.team_id.encode(), codec.encode(event)


class MemoryPublisher:
    """Keeps every event in ``events``; for tests."""

    def __init__(self) -> None:
        self.events: list[UsageEvent] = []
        self.started = False
        self.stopped = False

    async def start(self) -> None:
        self.started = True

    def publish(self, event: UsageEvent) -> None:
        self.events.append(event)

    async def stop(self) -> None:
        self.stopped = True


class BusPublisher:
    """The embedded mode: encoded events into the in-process bus the consumer reads."""

    def __init__(self, bus: InProcessBus, codec: UsageEventCodec | None = None):
        self._bus = bus
        self._codec = codec or UsageEventCodec()
        self.sent = 0
        self.failed = 0

    async def start(self) -> None:
        pass

    def publish(self, event: UsageEvent) -> None:
        try:
            key, value = _record(self._codec, event)
        except Exception:
            self.failed += 1
            log.exception("usage event %s could not be encoded; dropped", event.event_id)
            return
        if self._bus.publish_nowait(key, value):
            self.sent += 1
        else:
            # The bus counts its own drops (InProcessBus.dropped).
            self.failed += 1

    async def stop(self) -> None:
        pass


class KafkaPublisher:
    """Publishes to a Kafka topic through a bounded buffer drained in the background.

    Counters: ``sent`` (acknowledged by Kafka), ``failed`` (send attempts that failed and
    were put back for a retry, or events that could not be encoded), ``dropped`` (events
    lost: the buffer was full, or still held when ``stop()`` gave up), and ``buffered``
    (waiting or in flight right now)."""

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

        self._pending: deque[Record] = deque()
        self._in_flight = 0
        self._wakeup = asyncio.Event()
        self._retry_at = 0.0
        self._closing = False
        self._stop_requested = asyncio.Event()
        self._producer: AIOKafkaProducer | None = None
        self._task: asyncio.Task[None] | None = None

        self.sent = 0
        self.failed = 0
        self.dropped = 0

    @property
    def buffered(self) -> int:
        return len(self._pending) + self._in_flight

    async def start(self) -> None:
        """Start draining. Does not wait for Kafka: if it is down now, events wait in the
        buffer and the background task keeps trying to connect."""
        if self._task is None:
            self._task = asyncio.create_task(self._drain(), name="kafka-publisher")

    def publish(self, event: UsageEvent) -> None:
        try:
            record = _record(self._codec, event)
        except Exception:
            self.failed += 1
            log.exception("usage event %s could not be encoded; dropped", event.event_id)
            return
        if self._closing:
            self._overflow([record], "publish() after stop()")
            return
        if self.buffered >= self._max_buffered:
            self._overflow([record], f"the buffer is full ({self._max_buffered} events)")
            return
        self._pending.append(record)
        self._wakeup.set()

    async def stop(self) -> None:
        """Send what is buffered, waiting at most ``flush_timeout_seconds``; whatever is
        left after that goes to ``_overflow``."""
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
            except Exception:
                log.exception("the Kafka producer did not stop cleanly")
        if self._pending:
            left = list(self._pending)
            self._pending.clear()
            self._overflow(left, "Kafka did not take them before shutdown")

    def _overflow(self, records: Sequence[Record], reason: str) -> None:
        """Events that cannot wait in memory. Disk spooling (append them to a local file,
        replay it when Kafka is back) goes here; until then they are counted as lost."""
        # Once per thousand: an outage must not turn into a log flood.
        if self.dropped // 1000 != (self.dropped + len(records)) // 1000 or not self.dropped:
            log.error("dropping usage events: %s (%d dropped so far)", reason, self.dropped)
        self.dropped += len(records)

    async def _connect(self) -> AIOKafkaProducer:
        producer = AIOKafkaProducer(
            bootstrap_servers=self._bootstrap_servers,
            client_id=self._client_id,
            enable_idempotence=True,
            acks="all",
            compression_type="lz4",
            linger_ms=self._linger_ms,
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

    async def _drain(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            if self._producer is None:
                try:
                    self._producer = await self._connect()
                    self._backoff = self._min_backoff
                except Exception as error:
                    if self._closing:
                        return
                    log.warning(
                        "Kafka at %s unavailable (%s); %d usage events buffered, retrying",
                        self._bootstrap_servers,
                        error,
                        self.buffered,
                    )
                    # Woken early by stop(), which then gets one last connection attempt.
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._stop_requested.wait(), self._next_backoff())
                    continue
            if not self._pending:
                if self._closing and self._in_flight == 0:
                    return
                self._wakeup.clear()
                await self._wakeup.wait()
                continue
            delay = self._retry_at - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
                continue
            record = self._pending.popleft()
            self._in_flight += 1
            try:
                # Returns once the record is in the producer's batch; the future resolves
                # when Kafka acknowledges it.
                delivery = await self._producer.send(self._topic, key=record[0], value=record[1])
            except asyncio.CancelledError as error:
                self._put_back(record, error)
                raise
            except Exception as error:  # no metadata for the topic, producer closed, ...
                self._put_back(record, error)
                continue
            delivery.add_done_callback(partial(self._delivered, record))

    def _delivered(self, record: Record, delivery: asyncio.Future[object]) -> None:
        if delivery.cancelled():
            self._put_back(record, asyncio.CancelledError())
        elif (error := delivery.exception()) is not None:
            self._put_back(record, error)
        else:
            self._in_flight -= 1
            self.sent += 1
            self._backoff = self._min_backoff
            if self._closing and not self.buffered:
                self._wakeup.set()

    def _put_back(self, record: Record, error: BaseException) -> None:
        self._in_flight -= 1
        self.failed += 1
        self._pending.appendleft(record)
        loop = asyncio.get_running_loop()
        if self._retry_at <= loop.time():
            log.warning("sending a usage event to Kafka failed (%r); retrying", error)
            self._retry_at = loop.time() + self._next_backoff()
        self._wakeup.set()

    def _next_backoff(self) -> float:
        backoff = self._backoff
        self._backoff = min(self._backoff * 2, self._max_backoff)
        return backoff
