"""The Kafka side of the consumer's sources: a consumer group member that is replaced when
it fails or stops making progress, and what it takes to tell the two apart."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Mapping, Sequence
from typing import Any, Protocol, TypeVar

from meterline.common.bus import BusMessage
from meterline.consumer.settings import ConsumerSettings

log = logging.getLogger("meterline.consumer")

RESTART_BACKOFF_SECONDS = 1.0
"""Pause before a new Kafka consumer replaces one that failed, and between attempts."""

T = TypeVar("T")


async def bounded(awaitable: Awaitable[T], seconds: float) -> T:
    """Await for at most ``seconds`` (TimeoutError after). Not ``asyncio.wait_for``: before
    Python 3.12 it loses a cancellation that comes just as the awaited call ends
    (python/cpython#86296), and the stop deadline and the watch's own stop are
    cancellations."""
    async with asyncio.timeout(seconds):
        return await awaitable


def cancelled_from_outside() -> bool:
    """Whether a CancelledError caught in this task was asked for (``Task.cancel``), rather
    than let out of a library's own cancelled task."""
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0


class KafkaRecord(Protocol):
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes


class KafkaPartition(Protocol):
    topic: str
    partition: int


class KafkaConsumerClient(Protocol):
    """What this module calls on ``aiokafka.AIOKafkaConsumer`` (aiokafka has no type hints)."""

    def subscribe(self, topics: list[str], *, listener: Any) -> None: ...

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    async def getmany(
        self, *, timeout_ms: int, max_records: int
    ) -> Mapping[Any, Sequence[KafkaRecord]]: ...

    async def commit(self, offsets: dict[Any, int]) -> None: ...

    def assignment(self) -> set[KafkaPartition]: ...

    def pause(self, *partitions: KafkaPartition) -> None: ...

    def resume(self, *partitions: KafkaPartition) -> None: ...


class StallWatch:
    """Tells a Kafka consumer that makes no progress from one that has nothing to read.

    Stalled means: for ``stall_seconds`` on end, the pipeline kept polling (not paused by a
    warehouse outage), every poll came back empty, the broker answered, and a partition this
    member reads holds messages beyond both what it handed out and what its group
    committed. Each condition alone is normal (an idle topic, a broker outage, a rebalance,
    a long write); together they mean the client stopped fetching and will not start again
    by itself. Pure bookkeeping, fed by ``KafkaSource``: the clock is passed in."""

    POLL_GAP_SECONDS = 2.0
    """A pipeline that has not polled for this long is busy (a write), not starved."""

    def __init__(self, stall_seconds: float):
        self.stall_seconds = stall_seconds
        self.positions: dict[tuple[str, int], int] = {}
        """Per partition: the offset after the last message handed out."""
        self.assignment: set[tuple[str, int]] | None = None
        """The partitions last assigned to this member (kept when they are revoked: a
        member stuck in a rebalance still owes them); None until a first assignment."""
        self.paused = False
        self._last_poll = -float("inf")
        self._last_progress = -float("inf")
        self._lagging_since: float | None = None

    def reset(self, now: float) -> None:
        """A new client: it gets its own ``stall_seconds`` before it is judged."""
        self._last_progress = now
        self._lagging_since = None

    def polled(self, now: float, messages: list[BusMessage]) -> None:
        self._last_poll = now
        if messages:
            self._last_progress = now
            self._lagging_since = None
            for m in messages:
                key = (m.topic, m.partition)
                self.positions[key] = max(self.positions.get(key, 0), m.offset + 1)

    def worth_asking(self, now: float) -> bool:
        """Whether to ask the broker at all: not while messages flow, while paused, or
        while the pipeline is not polling."""
        if self.paused or now - self._last_poll > self.POLL_GAP_SECONDS:
            self._lagging_since = None
            return False
        return now - self._last_progress >= min(self.POLL_GAP_SECONDS, self.stall_seconds / 2)

    def beyond_positions(self, ends: dict[tuple[str, int], int]) -> set[tuple[str, int]]:
        """The partitions to watch whose end is past what this member handed out (before
        looking at the group's commits, which only lower that set)."""
        watched = set(ends) if self.assignment is None else self.assignment
        return {tp for tp in watched if ends.get(tp, 0) > self.positions.get(tp, 0)}

    def observe(
        self,
        now: float,
        ends: dict[tuple[str, int], int] | None,
        committed: dict[tuple[str, int], int | None] | None,
    ) -> bool:
        """What the broker said (``None``: it did not answer); True once stalled."""
        if ends is None or committed is None or not self.worth_asking(now):
            self._lagging_since = None
            return False
        lagging = {
            tp
            for tp in self.beyond_positions(ends)
            if ends[tp] > max(self.positions.get(tp, 0), committed.get(tp) or 0)
        }
        if not lagging:
            self._lagging_since = None
            return False
        if self._lagging_since is None or self._lagging_since < self._last_progress:
            self._lagging_since = now
        return now - self._lagging_since >= self.stall_seconds


class OffsetsProbe(Protocol):
    """Asks the broker, outside the group, where the topic ends and what the group
    committed."""

    async def end_offsets(self) -> dict[tuple[str, int], int]: ...

    async def committed(
        self, partitions: set[tuple[str, int]]
    ) -> dict[tuple[str, int], int | None]: ...

    async def close(self) -> None: ...


class KafkaOffsetsProbe:
    """A second client that never joins the group (no subscription), so the state that
    stalls the member's client is not shared with it. Started on first use, and thrown
    away after any failure (``close``), to start afresh next time."""

    def __init__(self, bootstrap_servers: str, topic: str, group_id: str):
        self._bootstrap = bootstrap_servers
        self._topic = topic
        self._group_id = group_id
        self._client: Any = None

    async def _started(self) -> Any:
        if self._client is None:
            from aiokafka import AIOKafkaConsumer

            client = AIOKafkaConsumer(
                bootstrap_servers=self._bootstrap,
                group_id=self._group_id,
                enable_auto_commit=False,
                request_timeout_ms=10_000,
            )
            self._client = client
            await client.start()
        return self._client

    async def end_offsets(self) -> dict[tuple[str, int], int]:
        from aiokafka import TopicPartition

        client = await self._started()
        partitions = client.partitions_for_topic(self._topic)
        if partitions is None:
            raise LookupError(f"no metadata for {self._topic}")
        ends = await client.end_offsets([TopicPartition(self._topic, p) for p in partitions])
        return {(tp.topic, tp.partition): offset for tp, offset in ends.items()}

    async def end_offsets_of(self, partitions: set[tuple[str, int]]) -> dict[tuple[str, int], int]:
        """Where these partitions end (no metadata needed: they are named)."""
        from aiokafka import TopicPartition

        client = await self._started()
        ends = await client.end_offsets([TopicPartition(*tp) for tp in partitions])
        return {(tp.topic, tp.partition): offset for tp, offset in ends.items()}

    async def committed(
        self, partitions: set[tuple[str, int]]
    ) -> dict[tuple[str, int], int | None]:
        from aiokafka import TopicPartition

        client = await self._started()
        return {tp: await client.committed(TopicPartition(*tp)) for tp in partitions}

    async def close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            await client.stop()


class KafkaSource:
    """An aiokafka consumer group member with auto-commit off: offsets are committed by
    the pipeline only after ClickHouse accepted the rows they cover.

    The client is replaced by a new one (which reads on from the group's commits: the
    pipeline takes that as a jump back, as after a rebalance) when it raises, and when it
    stops making progress without raising (``StallWatch``). Whatever the client does,
    no call into it waits for ever: a poll, a commit, a start or a stop that runs past its
    bound is given up, so the pipeline always comes back to see its stop signal.

    Why a client can stall without an error. aiokafka's group member runs in background
    tasks, and two of its waits have no bound:

    - ``getmany(timeout_ms=...)`` first waits, without its timeout, for a rebalance under
      way to end (``Fetcher.fetched_records``: ``if reassignment_in_progress: await
      wait_for_assignment()``), and ``start()`` waits the same way for the first
      assignment. A broker that goes away starts such a rebalance (the heartbeat's
      session expires, the coordinator is marked dead), and when the rejoin does not
      complete, nothing is ever fetched again and the poll never returns;
    - ``commit()`` retries until a coordinator is found (``commit_offsets`` ->
      ``ensure_coordinator_known``, an unbounded loop): with the broker gone it logs
      ``Unable connect to node with id 1`` every retry backoff and never returns.

    A member in that state goes on heartbeating and logging, is still in its group, and
    raises nothing: aio-libs/aiokafka#1154 (a consumer stuck after a broker restart, whose
    only sign is the private ``_coordinator._rejoin_needed_fut``), #625 and #399 describe
    it from users' side, #992 the endless ``Unable connect`` loop that keeps ``stop()``
    from being reached. The cure that works for all of them is outside the library:
    noticing there is no progress, and starting a new client."""

    def __init__(
        self,
        bootstrap_servers: str,
        topic: str,
        group_id: str,
        session_timeout_ms: int = 10_000,
        *,
        stall_seconds: float = 10.0,
        stall_check_seconds: float = 2.0,
        client_timeout_seconds: float = 15.0,
        **options: Any,
    ):
        """``options`` go to ``AIOKafkaConsumer`` as they are (e.g. ``max_poll_interval_ms``)."""
        self._bootstrap = bootstrap_servers
        self._topic = topic
        self._group_id = group_id
        self._session_timeout_ms = session_timeout_ms
        self._options = options
        self._consumer: KafkaConsumerClient | None = None
        self._paused = False
        # Records that a keep-alive poll returned while paused, handed out by the next poll.
        self._held: list[BusMessage] = []
        self._client_timeout = client_timeout_seconds
        # A first join waits for the members of an earlier generation (a crashed one's
        # session must run out) before the group settles.
        self._start_timeout = client_timeout_seconds + 2 * session_timeout_ms / 1000
        self.watch = StallWatch(stall_seconds)
        self._stall_check_seconds = stall_check_seconds
        self._probe: OffsetsProbe | None = None
        self._watching: asyncio.Task[None] | None = None
        self._stalled = False
        self.restarts = 0
        # For the lag: the offsets this member committed, and a probe of its own (the stall
        # watch throws its probe away on any failure).
        self._committed: dict[tuple[str, int], int] = {}
        self._lag_probe: KafkaOffsetsProbe | None = None

    @classmethod
    def from_settings(cls, settings: ConsumerSettings) -> KafkaSource:
        if not settings.kafka_bootstrap_servers:
            raise ValueError("KafkaSource needs KAFKA_BOOTSTRAP_SERVERS")
        return cls(
            settings.kafka_bootstrap_servers,
            settings.usage_topic,
            settings.consumer_group,
            settings.kafka_session_timeout_ms,
            stall_seconds=settings.kafka_stall_seconds,
            stall_check_seconds=settings.kafka_stall_check_seconds,
            client_timeout_seconds=settings.kafka_client_timeout_seconds,
        )

    async def start(self) -> None:
        consumer = self._new_consumer()
        try:
            await bounded(consumer.start(), self._start_timeout)
        except BaseException:
            await self._abandon(consumer)
            raise
        self._consumer = consumer
        self._stalled = False
        self.watch.reset(time.monotonic())
        if self._paused:
            self.pause()
        if self._watching is None:
            self._watching = asyncio.create_task(self._watch(), name="kafka-stall-watch")

    def _new_consumer(self) -> KafkaConsumerClient:
        from aiokafka import AIOKafkaConsumer

        consumer: KafkaConsumerClient = AIOKafkaConsumer(
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
        consumer.subscribe([self._topic], listener=_assignment_listener(self.watch))
        return consumer

    def _new_probe(self) -> OffsetsProbe:
        return KafkaOffsetsProbe(self._bootstrap, self._topic, self._group_id)

    async def _abandon(self, consumer: KafkaConsumerClient | None) -> None:
        """Stop a client, but for no longer than the client timeout: a stuck one may never
        finish stopping (leaving the group needs the coordinator it cannot find)."""
        if consumer is None:
            return
        try:
            await bounded(consumer.stop(), self._client_timeout)
        except asyncio.CancelledError:
            # aiokafka's stop cancels its fetcher's pending tasks and awaits them without
            # catching their CancelledError (aio-libs/aiokafka#647), which then looks like a
            # cancellation of this task. It is one only if someone asked for it.
            if cancelled_from_outside():
                raise
            log.warning("the Kafka consumer's stop was cut short by its own tasks; abandoned")
            await self._close_connections(consumer)
        except Exception as error:
            log.warning("the Kafka consumer did not stop cleanly (%r); abandoned", error)
            await self._close_connections(consumer)

    async def _close_connections(self, consumer: KafkaConsumerClient) -> None:
        """What a stop cut short skips last: the client's connections and metadata task,
        which would otherwise reconnect to a dead broker ten times a second for as long as
        the process lives (aiokafka's private client: the consumer has no public way)."""
        client = getattr(consumer, "_client", None)
        if client is None:
            return
        try:
            await bounded(client.close(), self._client_timeout)
        except asyncio.CancelledError:
            if cancelled_from_outside():
                raise
        except Exception as error:
            log.warning("the Kafka consumer's connections did not close (%r)", error)

    async def _restart(self, reason: str) -> None:
        """Replace the client. A new one joins the group and reads on from the committed
        offsets: the pipeline takes that as a jump back (batch log, recent ids), as after a
        rebalance. Also the way out of aiokafka's group coordination dying for good when
        the broker closes a connection just as it writes to it under uvloop (a RuntimeError
        it does not catch, aio-libs/aiokafka#1038), after which every poll raises again."""
        log.error("%s; starting a new Kafka consumer", reason)
        self.restarts += 1
        failed, self._consumer = self._consumer, None
        await self._abandon(failed)
        while True:
            await asyncio.sleep(RESTART_BACKOFF_SECONDS)
            try:
                await self.start()
                return
            except Exception as again:
                log.error("starting a new Kafka consumer failed (%r); retrying", again)

    def _kafka(self) -> KafkaConsumerClient:
        if self._consumer is None:
            raise RuntimeError("KafkaSource.start() was not called")
        return self._consumer

    async def poll(self, max_messages: int, timeout: float) -> list[BusMessage]:
        if self._stalled:
            await self._restart(
                f"the Kafka consumer fetched nothing for {self.watch.stall_seconds:.0f}s while "
                "the broker answered and its partitions held messages beyond its position "
                f"({_client_state(self._consumer)})"
            )
            return []
        if self._held:
            held, self._held = self._held[:max_messages], self._held[max_messages:]
            return held
        messages = await self._getmany(max_messages, timeout)
        self.watch.polled(time.monotonic(), messages)
        return messages

    async def _getmany(self, max_messages: int, timeout: float) -> list[BusMessage]:
        from aiokafka.errors import KafkaError

        consumer = self._kafka()
        try:
            # Bounded from outside: during a rebalance getmany waits without its timeout.
            records = await bounded(
                consumer.getmany(timeout_ms=int(timeout * 1000), max_records=max_messages),
                timeout + self._client_timeout,
            )
        except TimeoutError:
            return []
        except KafkaError as error:
            await self._restart(f"the Kafka consumer failed ({error!r})")
            return []
        return [
            BusMessage(r.topic, r.partition, r.offset, r.key, r.value)
            for partition_records in records.values()
            for r in partition_records
        ]

    async def commit(self, offsets: dict[tuple[str, int], int]) -> None:
        """Raises after the client timeout: aiokafka retries a commit until it finds a
        coordinator, for ever while the broker is away. The pipeline carries on after a
        failed commit (whoever reads the partition next reads the batch again, and drops
        it as a repeat)."""
        from aiokafka import TopicPartition

        if offsets:
            self._committed.update(offsets)
            await bounded(
                self._kafka().commit(
                    {
                        TopicPartition(topic, partition): offset
                        for (topic, partition), offset in offsets.items()
                    }
                ),
                self._client_timeout,
            )

    # Pausing and resuming also hold while a failed consumer is being replaced: the new one
    # starts paused if the pipeline paused meanwhile.
    def pause(self) -> None:
        self._paused = self.watch.paused = True
        if self._consumer is not None:
            self._consumer.pause(*self._consumer.assignment())

    def resume(self) -> None:
        self._paused = self.watch.paused = False
        if self._consumer is not None:
            self._consumer.resume(*self._consumer.assignment())

    def owns(self, topic: str, partition: int) -> bool:
        # The client's own assignment, not the stall watch's (which keeps revoked ones).
        if self._consumer is None:
            return False
        return any(
            tp.topic == topic and tp.partition == partition for tp in self._consumer.assignment()
        )

    def assignment(self) -> set[tuple[str, int]]:
        if self._consumer is None:
            return set()
        return {(tp.topic, tp.partition) for tp in self._consumer.assignment()}

    async def lag(self) -> dict[tuple[str, int], int]:
        """Per assigned partition, the broker's end offset less the committed offset (this
        member's last commit, else the group's): what is left to write. Asked of the broker
        each time, since the client's own high-water mark stops moving while it is paused."""
        assigned = self.assignment()
        if not assigned:
            return {}
        if self._lag_probe is None:
            self._lag_probe = KafkaOffsetsProbe(self._bootstrap, self._topic, self._group_id)
        probe = self._lag_probe
        try:
            ends = await bounded(probe.end_offsets_of(assigned), self._client_timeout)
            # A partition that left and came back may have been committed by another member.
            self._committed = {tp: o for tp, o in self._committed.items() if tp in assigned}
            missing = assigned - self._committed.keys()
            group = await bounded(probe.committed(missing), self._client_timeout) if missing else {}
        except Exception:
            # A cancelled read (a scrape's timeout) keeps the probe, which may be starting.
            self._lag_probe = None
            with contextlib.suppress(Exception):
                await bounded(probe.close(), self._client_timeout)
            raise
        committed = {**{tp: o or 0 for tp, o in group.items()}, **self._committed}
        return {tp: max(0, ends.get(tp, 0) - committed.get(tp, 0)) for tp in assigned}

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

    async def _watch(self) -> None:
        """Every ``stall_check_seconds``, while polls come back empty: ask the broker."""
        while True:
            await asyncio.sleep(self._stall_check_seconds)
            # Not while a replacement is under way (no client) or already asked for.
            if (
                self._stalled
                or self._consumer is None
                or not self.watch.worth_asking(time.monotonic())
            ):
                continue
            ends, committed = await self._ask_broker()
            if self.watch.observe(time.monotonic(), ends, committed):
                # Replaced by the next poll, never under a getmany or commit under way.
                self._stalled = True

    async def _ask_broker(
        self,
    ) -> tuple[dict[tuple[str, int], int] | None, dict[tuple[str, int], int | None] | None]:
        if self._probe is None:
            self._probe = self._new_probe()
        probe = self._probe
        try:
            ends = await bounded(probe.end_offsets(), self._client_timeout)
            beyond = self.watch.beyond_positions(ends)
            committed = (
                await bounded(probe.committed(beyond), self._client_timeout) if beyond else {}
            )
        except Exception as error:
            # The broker away (the usual case) or the probe in trouble: a fresh one next time.
            log.debug("asking the broker for the topic's offsets failed (%r)", error)
            self._probe = None
            with contextlib.suppress(Exception):
                await bounded(probe.close(), self._client_timeout)
            return None, None
        return ends, committed

    async def stop(self) -> None:
        if self._watching is not None:
            self._watching.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watching
            self._watching = None
        for probe in (self._probe, self._lag_probe):
            if probe is not None:
                with contextlib.suppress(Exception):
                    await bounded(probe.close(), self._client_timeout)
        self._probe = self._lag_probe = None
        consumer, self._consumer = self._consumer, None
        await self._abandon(consumer)


def _client_state(consumer: Any) -> str:
    """What a stalled aiokafka client was doing, for the log (its private state: the
    library offers no public view of it, aio-libs/aiokafka#1154)."""
    try:
        coordinator = consumer._coordinator
        subscription = consumer._subscription
        fetcher = consumer._fetcher
        return (
            f"coordinator {coordinator.coordinator_id}, "
            f"rejoin needed {coordinator._rejoin_needed_fut.done()}, "
            f"rebalance under way {subscription.reassignment_in_progress}, "
            f"assignment {sorted(p.partition for p in consumer.assignment())}, "
            f"fetches in flight to {sorted(fetcher._in_flight)}, "
            f"buffered {sorted(tp.partition for tp in fetcher._records)}"
        )
    except Exception as error:
        return f"state unknown: {error!r}"


def _assignment_listener(watch: StallWatch) -> object:
    """Tells the stall watch which partitions this member reads."""
    from aiokafka.abc import ConsumerRebalanceListener

    class Listener(ConsumerRebalanceListener):  # type: ignore[misc]
        def on_partitions_revoked(self, revoked: set[Any]) -> None:
            return None

        def on_partitions_assigned(self, assigned: set[Any]) -> None:
            watch.assignment = {(tp.topic, tp.partition) for tp in assigned}

    return Listener()
