"""``meterline consumer``: the Kafka consumer group member, as its own process."""

from __future__ import annotations

import asyncio
import logging
import signal

from meterline.common.clickhouse import connect
from meterline.common.codec import UsageEventCodec
from meterline.common.config import load_config
from meterline.common.migrations import migrate
from meterline.common.pricing import GenaiPrices
from meterline.consumer.batch_log import ClickHouseBatchLog
from meterline.consumer.dead_letter import KafkaDeadLetter
from meterline.consumer.engine_write import EngineWriter
from meterline.consumer.enrich import Enricher
from meterline.consumer.pipeline import Pipeline
from meterline.consumer.settings import ConsumerSettings
from meterline.consumer.source import KafkaSource


async def run_consumer(settings: ConsumerSettings, stop: asyncio.Event) -> None:
    if not settings.kafka_bootstrap_servers:
        raise SystemExit("meterline consumer needs KAFKA_BOOTSTRAP_SERVERS")
    config = load_config(settings.config_file)
    client = connect(settings.resolved_clickhouse_url(), settings.clickhouse_database)
    migrate(client)
    dead_letter = KafkaDeadLetter(settings.kafka_bootstrap_servers, settings.dead_letter_topic)
    await dead_letter.start()
    codec = UsageEventCodec()
    try:
        pipeline = Pipeline(
            source=KafkaSource(
                settings.kafka_bootstrap_servers,
                settings.usage_topic,
                settings.consumer_group,
                settings.kafka_session_timeout_ms,
            ),
            codec=codec,
            writer=EngineWriter(
                client, codec, Enricher(GenaiPrices(config.price_aliases()), config)
            ),
            dead_letter=dead_letter,
            batch_log=ClickHouseBatchLog(client, settings.consumer_group),
            settings=settings,
        )
        await pipeline.run(stop)
    finally:
        await dead_letter.stop()


def main() -> None:
    settings = ConsumerSettings()
    logging.basicConfig(
        level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s %(message)s"
    )

    async def serve() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        # SIGTERM: finish the open batch, write it, commit it, then exit.
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await run_consumer(settings, stop)

    asyncio.run(serve())
