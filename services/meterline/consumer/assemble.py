"""The one place that puts a consumer together: ``meterline consumer``, the all-in-one, the
benchmarks and the tests all build their pipeline here, so that a new collaborator is
wired once.

``build_pipeline`` joins parts that already exist (a test hands in its in-memory ones);
``open_consumer`` opens the real ones from the settings and closes them after the
pipeline's last commit."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

from meterline.common.bus import Bus
from meterline.common.clickhouse import connect
from meterline.common.codec import UsageEventCodec
from meterline.common.config import GatewayConfig
from meterline.common.migrations import migrate
from meterline.common.pricing import GenaiPrices
from meterline.consumer.batch_log import BatchLog, ClickHouseBatchLog
from meterline.consumer.dead_letter import (
    CircuitBreaker,
    DeadLetterSink,
    KafkaDeadLetter,
    MemoryDeadLetter,
)
from meterline.consumer.decode import Decoder
from meterline.consumer.dedupe import RecentIds
from meterline.consumer.engine_write import EngineWriter
from meterline.consumer.enrich import Enricher
from meterline.consumer.kafka_source import KafkaSource, bounded
from meterline.consumer.pipeline import Pipeline
from meterline.consumer.settings import ConsumerSettings
from meterline.consumer.source import BusSource, MessageSource
from meterline.consumer.write import BatchWriter

log = logging.getLogger("meterline.consumer")


def build_pipeline(
    settings: ConsumerSettings,
    *,
    source: MessageSource,
    writer: BatchWriter,
    dead_letter: DeadLetterSink,
    batch_log: BatchLog,
    codec: UsageEventCodec | None = None,
) -> Pipeline:
    return Pipeline(
        source=source,
        decoder=Decoder(codec or UsageEventCodec()),
        writer=writer,
        dead_letter=dead_letter,
        batch_log=batch_log,
        breaker=CircuitBreaker(
            settings.dead_letter_breaker_ratio, settings.dead_letter_breaker_min_messages
        ),
        recent_ids=RecentIds(settings.dedupe_window_events),
        settings=settings,
    )


def enricher(config: GatewayConfig) -> Enricher:
    """Prices from genai-prices, with the configuration's provider aliases and overrides."""
    return Enricher(GenaiPrices(config.price_aliases()), config)


@contextlib.asynccontextmanager
async def open_consumer(
    settings: ConsumerSettings,
    config: GatewayConfig,
    *,
    bus: Bus | None = None,
    parallel_views: bool = True,
) -> AsyncIterator[Pipeline]:
    """The pipeline on the warehouse the settings name (migrated first), reading Kafka when
    the settings name brokers, else ``bus``. Kafka's dead letters go to their topic; the
    bus's stay in memory, logged (an embedded default has no topic to send them to)."""
    client = connect(settings.resolved_clickhouse_url(), settings.clickhouse_database)
    await asyncio.to_thread(migrate, client)
    source: MessageSource
    dead_letter: DeadLetterSink
    kafka_dead_letter: KafkaDeadLetter | None = None
    if settings.kafka_bootstrap_servers:
        source = KafkaSource.from_settings(settings)
        kafka_dead_letter = KafkaDeadLetter(
            settings.kafka_bootstrap_servers, settings.dead_letter_topic
        )
        await kafka_dead_letter.start()
        dead_letter = kafka_dead_letter
    elif bus is not None:
        source = BusSource(bus)
        dead_letter = MemoryDeadLetter()
    else:
        raise ValueError("a consumer needs KAFKA_BOOTSTRAP_SERVERS or a bus")
    codec = UsageEventCodec()
    try:
        yield build_pipeline(
            settings,
            source=source,
            writer=EngineWriter(client, codec, enricher(config), parallel_views=parallel_views),
            dead_letter=dead_letter,
            batch_log=ClickHouseBatchLog(client, settings.consumer_group),
            codec=codec,
        )
    finally:
        if kafka_dead_letter is not None:
            await stop_dead_letter(kafka_dead_letter, settings)


async def stop_dead_letter(dead_letter: KafkaDeadLetter, settings: ConsumerSettings) -> None:
    """Its producer's stop sends what it still holds, and with the broker gone it would
    wait for ever: bounded, so that a SIGTERM still ends the process (a dead letter not
    sent is sent again, since its batch was not committed)."""
    try:
        await bounded(dead_letter.stop(), settings.kafka_client_timeout_seconds)
    except TimeoutError:
        log.error(
            "the dead-letter producer did not stop within %.0fs; abandoned",
            settings.kafka_client_timeout_seconds,
        )
