"""Where messages come from: a Kafka consumer group, or the in-process bus.

Both hand out ``BusMessage`` batches and take commits of "next offset to read" per
partition, which is all the pipeline needs to know about either."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any, Protocol

from meterline.common.bus import Bus, BusMessage

log = logging.getLogger("meterline.consumer")

RESTART_BACKOFF_SECONDS = 1.0
"""Pause before a new Kafka consumer replaces one that failed, and between attempts."""


class MessageSource(Protocol):
    async def start(self) -> None: ...

    async def poll(self, max_messages: int, timeout: float) -> list[BusMessage]: ...

    async def commit(self, offsets: dict[tuple[str, int], int]) -> None:
        """Mark everything before ``offsets[(topic, partition)]`` as durably written."""
        ...

    def pause(self) -> None:
        """Stop fetching while the warehouse cannot keep up (no unbounded buffering)."""
        ...

    def resume(self) -> None: ...

    async def keep_alive(self) -> None:
        """Called every few seconds while paused: stay a live member of the consumer group
        without taking more messages in."""
        ...

    async def stop(self) -> None: ...


class BusSource:
    """The embedded default's source: the bus's one partition (the local log, or memory)."""

    def __init__(self, bus: Bus):
        self._bus = bus
        self._paused = False

    async def start(self) -> None:
        return None

    async def poll(self, max_messages: int, timeout: float) -> list[BusMessage]:
        if self._paused:
            return []
        return await self._bus.get_batch(max_messages, timeout)

    async def commit(self, offsets: dict[tuple[str, int], int]) -> None:
        for offset in offsets.values():
            await self._bus.commit(offset)

    def pause(self) -> None:
        self._paused = True

    def resume(self) -> None:
        self._paused = False

    async def keep_alive(self) -> None:
        return None

    async def stop(self) -> None:
        return None


class KafkaSource:
    """An aiokafka consumer group member with auto-commit off: offsets are committed by
    the pipeline only after ClickHouse accepted the rows they cover."""

    def __init__(
        self,
        bootstrap_servers: str,
        topic: str,
        group_id: str,
        session_timeout_ms: int = 10_000,
        **options: Any,
    ):
        """``options`` go to ``AIOKafkaConsumer`` as they are (e.g. ``max_poll_interval_ms``)."""
        self._bootstrap = bootstrap_servers
        self._topic = topic
        self._group_id = group_id
        self._session_timeout_ms = session_timeout_ms
        self._options = options
        self._consumer: object | None = None
        self._paused = False
        # Records that a keep-alive poll returned while paused, handed out by the next poll.
        self._held: list[BusMessage] = []

    async def start(self) -> None:
        consumer = self._new_consumer()
        await consumer.start()  # type: ignore[attr-defined]
        self._consumer = consumer
        if self._paused:
            self.pause()

    def _new_consumer(self) -> object:
        from aiokafka import AIOKafkaConsumer

        return AIOKafkaConsumer(
            self._topic,
            bootstrap_servers=self._bootstrap,
            group_id=self._group_id,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            session_timeout_ms=self._session_timeout_ms,
            heartbeat_interval_ms=max(100, self._session_timeout_ms // 3),
            # Large fetches: the consumer's throughput comes from big batches.
            max_partition_fetch_bytes=8 * 1024 * 1024,
            fetch_max_bytes=64 * 1024 * 1024,
            **self._options,
        )

    async def _restart(self, error: Exception) -> None:
        """Replace a consumer that cannot go on. aiokafka's group coordination dies for good
        when the broker closes a connection just as it writes to it under uvloop (a
        RuntimeError it does not catch, aio-libs/aiokafka#1038); every later poll raises it
        again. A new consumer joins the group and reads on from the committed offsets: the
        pipeline takes that as a jump back (batch log, recent ids), as after a rebalance."""
        log.error("the Kafka consumer failed (%r); starting a new one", error)
        failed, self._consumer = self._consumer, None
        with contextlib.suppress(Exception):
            await failed.stop()  # type: ignore[union-attr]
        while True:
            await asyncio.sleep(RESTART_BACKOFF_SECONDS)
            try:
                await self.start()
                return
            except Exception as again:
                log.error("starting a new Kafka consumer failed (%r); retrying", again)

    def _kafka(self) -> object:
        if self._consumer is None:
            raise RuntimeError("KafkaSource.start() was not called")
        return self._consumer

    async def poll(self, max_messages: int, timeout: float) -> list[BusMessage]:
        if self._held:
            held, self._held = self._held[:max_messages], self._held[max_messages:]
            return held
        return await self._getmany(max_messages, timeout)

    async def _getmany(self, max_messages: int, timeout: float) -> list[BusMessage]:
        from aiokafka.errors import KafkaError

        consumer = self._kafka()
        try:
            records = await consumer.getmany(  # type: ignore[attr-defined]
                timeout_ms=int(timeout * 1000), max_records=max_messages
            )
        except KafkaError as error:
            await self._restart(error)
            return []
        return [
            BusMessage(r.topic, r.partition, r.offset, r.key, r.value)
            for partition_records in records.values()
            for r in partition_records
        ]

    async def commit(self, offsets: dict[tuple[str, int], int]) -> None:
        from aiokafka import TopicPartition

        if offsets:
            await self._kafka().commit(  # type: ignore[attr-defined]
                {
                    TopicPartition(topic, partition): offset
                    for (topic, partition), offset in offsets.items()
                }
            )

    # Pausing and resuming also hold while a failed consumer is being replaced: the new one
    # starts paused if the pipeline paused meanwhile.
    def pause(self) -> None:
        self._paused = True
        if self._consumer is not None:
            self._consumer.pause(*self._consumer.assignment())  # type: ignore[attr-defined]

    def resume(self) -> None:
        self._paused = False
        if self._consumer is not None:
            self._consumer.resume(*self._consumer.assignment())  # type: ignore[attr-defined]

    @property
    def paused_partitions(self) -> set[tuple[str, int]]:
        if self._consumer is None:
            return set()
        paused = self._consumer.paused()  # type: ignore[attr-defined]
        return {(tp.topic, tp.partition) for tp in paused}

    async def keep_alive(self) -> None:
        """A consumer that has not asked for records for ``max_poll_interval_ms`` (5 minutes
        by default) leaves the group, and its later commit fails: a warehouse outage longer
        than that would crash the consumer. A poll of the paused partitions keeps it in,
        and returns nothing new; a partition assigned meanwhile (a rebalance) is paused
        too, and whatever it already returned is held for the next poll, never dropped."""
        if not self._paused:
            return
        self.pause()
        self._held.extend(await self._getmany(10_000, 0))

    async def stop(self) -> None:
        if self._consumer is not None:
            await self._consumer.stop()  # type: ignore[attr-defined]
            self._consumer = None
