"""Messages that cannot become rows go to the dead-letter topic with the reason and the
original bytes, and the consumer carries on; unless most messages suddenly fail, which
means something upstream is broken (a foreign producer, a schema nobody deployed), and
then the circuit breaker stops the consumer with the reason rather than quietly moving a
whole stream into the dead-letter topic."""

from __future__ import annotations

from collections import deque
from typing import Any, Protocol

from meterline.consumer.decode import Rejected


class DeadLetterSink(Protocol):
    async def send(self, rejected: Rejected) -> None: ...

    async def flush(self) -> None:
        """Return once everything sent is durable (called before offsets are committed)."""
        ...


class CircuitOpen(RuntimeError):
    """Too many messages failed: stop and let a person look."""


class CircuitBreaker:
    def __init__(self, max_failure_ratio: float, window: int):
        self._max_ratio = max_failure_ratio
        self._outcomes: deque[bool] = deque(maxlen=window)
        self._failures = 0

    def record(self, failed: bool, reason: str = "") -> None:
        if len(self._outcomes) == self._outcomes.maxlen and self._outcomes[0]:
            self._failures -= 1
        self._outcomes.append(failed)
        self._failures += failed
        if (
            len(self._outcomes) == self._outcomes.maxlen
            and self._failures / len(self._outcomes) > self._max_ratio
        ):
            raise CircuitOpen(
                f"{self._failures} of the last {len(self._outcomes)} messages failed "
                f"(last reason: {reason}); stopping instead of dead-lettering the stream"
            )

    def record_successes(self, count: int) -> None:
        """``record(False)`` ``count`` times, as for a batch written whole."""
        window = self._outcomes.maxlen or 0
        if count >= window:
            self._outcomes.extend([False] * window)
            self._failures = 0
            return
        for _ in range(count):
            self.record(False)


class KafkaProducerClient(Protocol):
    """What this module calls on ``aiokafka.AIOKafkaProducer`` (aiokafka has no type hints)."""

    async def start(self) -> None: ...

    async def send(
        self,
        topic: str,
        *,
        value: bytes,
        key: bytes | None,
        headers: list[tuple[str, bytes]],
    ) -> Any: ...

    async def flush(self) -> None: ...

    async def stop(self) -> None: ...


class KafkaDeadLetter:
    """Produces to the dead-letter topic: same key, original bytes, the reason and the
    source position in headers."""

    def __init__(self, bootstrap_servers: str, topic: str):
        self._bootstrap = bootstrap_servers
        self._topic = topic
        self._producer: KafkaProducerClient | None = None

    async def start(self) -> None:
        from aiokafka import AIOKafkaProducer

        producer: KafkaProducerClient = AIOKafkaProducer(
            bootstrap_servers=self._bootstrap, enable_idempotence=True, acks="all"
        )
        await producer.start()
        self._producer = producer

    async def send(self, rejected: Rejected) -> None:
        if self._producer is None:
            raise RuntimeError("KafkaDeadLetter.start() was not called")
        message = rejected.message
        await self._producer.send(
            self._topic,
            value=message.value,
            key=message.key,
            headers=[
                ("reason", rejected.reason.encode()),
                ("source", f"{message.topic}/{message.partition}/{message.offset}".encode()),
            ],
        )

    async def flush(self) -> None:
        if self._producer is not None:
            await self._producer.flush()

    async def stop(self) -> None:
        if self._producer is not None:
            await self._producer.stop()
            self._producer = None


class MemoryDeadLetter:
    """For the embedded default and unit tests: keeps rejected messages in memory."""

    def __init__(self, keep: int = 10_000) -> None:
        self.rejected: deque[Rejected] = deque(maxlen=keep)
        self.count = 0

    async def send(self, rejected: Rejected) -> None:
        self.rejected.append(rejected)
        self.count += 1

    async def flush(self) -> None:
        return None
