"""``meterline consumer``: the Kafka consumer group member, as its own process."""

from __future__ import annotations

import asyncio
import gc
import logging
import signal
import sys

from meterline.common.clickhouse import connect
from meterline.common.codec import UsageEventCodec
from meterline.common.config import load_config
from meterline.common.migrations import migrate
from meterline.common.pricing import GenaiPrices
from meterline.consumer.batch_log import ClickHouseBatchLog
from meterline.consumer.dead_letter import KafkaDeadLetter
from meterline.consumer.engine_write import EngineWriter
from meterline.consumer.enrich import Enricher
from meterline.consumer.kafka_source import KafkaSource, bounded
from meterline.consumer.pipeline import Pipeline
from meterline.consumer.settings import ConsumerSettings

log = logging.getLogger("meterline.consumer")

GC_YOUNG_THRESHOLD = 50_000
"""Allocations between two young-generation collections (Python's default: 700)."""

GIL_SWITCH_INTERVAL_SECONDS = 0.0005
"""How long a thread may hold the interpreter lock while another waits (default 5 ms)."""


def tune_interpreter() -> None:
    """Once everything is built, just before consuming.

    The garbage collector: the consumer holds up to two batches of messages (hundreds of
    thousands of small objects, none in a reference cycle) and every batch allocates as
    many again. With Python's defaults the collector runs every 700 allocations and, every
    so often, walks the whole heap: those messages, and everything built at start-up,
    genai-prices' price snapshot included. Freezing the start-up objects takes them out of
    every collection; a higher threshold runs far fewer.

    The interpreter lock: the event loop accepts messages without pause while the writer's
    thread goes in and out of the engine, and each time it comes back it waits for the lock.
    At the default 5 ms a step of a few calls (recording a batch: one insert) took 0.3 s;
    at 0.5 ms, 0.02 s.

    Measured with bench.consumer_throughput: BENCHMARKS.md, consumer throughput."""
    gc.freeze()
    gc.set_threshold(GC_YOUNG_THRESHOLD)
    sys.setswitchinterval(GIL_SWITCH_INTERVAL_SECONDS)


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
            source=KafkaSource.from_settings(settings),
            codec=codec,
            writer=EngineWriter(
                client, codec, Enricher(GenaiPrices(config.price_aliases()), config)
            ),
            dead_letter=dead_letter,
            batch_log=ClickHouseBatchLog(client, settings.consumer_group),
            settings=settings,
        )
        tune_interpreter()
        await pipeline.run(stop)
    finally:
        await stop_dead_letter(dead_letter, settings)


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
