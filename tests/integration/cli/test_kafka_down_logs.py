"""While Kafka is down, aiokafka's repeated errors reach the log once, then once per
interval: a real broker, started, then stopped under a connected producer."""

from __future__ import annotations

import asyncio
import io
import logging

from aiokafka import AIOKafkaProducer

from meterline.common.logs import RepeatFilter, TextFormatter
from tests.support.kafka_broker import LocalKafkaBroker


def test_a_stopped_broker_does_not_flood_the_log() -> None:
    broker = LocalKafkaBroker()
    broker.start()
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(TextFormatter())
    handler.addFilter(RepeatFilter(interval=3600))
    unfiltered: list[logging.LogRecord] = []

    class Count(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if record.levelno >= logging.WARNING:
                unfiltered.append(record)

    aiokafka = logging.getLogger("aiokafka")
    aiokafka.addHandler(handler)
    aiokafka.addHandler(Count())

    async def run() -> None:
        producer = AIOKafkaProducer(
            bootstrap_servers=broker.bootstrap_servers, retry_backoff_ms=50, metadata_max_age_ms=100
        )
        await producer.start()
        try:
            await producer.send_and_wait("down-logs", b"x")
            broker.kill()
            await asyncio.sleep(4)
        finally:
            await asyncio.wait_for(producer.stop(), 10)

    try:
        asyncio.run(run())
    finally:
        aiokafka.handlers = [
            h for h in aiokafka.handlers if h is not handler and not isinstance(h, Count)
        ]
        broker.stop()
    written = stream.getvalue().splitlines()
    templates = {(r.name, str(r.msg)) for r in unfiltered}
    # The client did repeat itself, and each repeating template was written once.
    assert len(unfiltered) > len(templates), [r.getMessage() for r in unfiltered]
    assert len(written) == len(templates)
