"""``meterline consumer``: the Kafka consumer group member, as its own process."""

from __future__ import annotations

import asyncio
import gc
import logging
import signal
import sys

from meterline.common.config import load_config
from meterline.consumer.assemble import open_consumer
from meterline.consumer.observe import serve_http
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
    thread goes in and out of the engine, and each time it comes back it waits for the lock,
    up to a whole switch interval: a step of a few calls (recording a batch) took over ten
    times longer at the default.

    BENCHMARKS.md (consumer throughput) has the numbers."""
    gc.freeze()
    gc.set_threshold(GC_YOUNG_THRESHOLD)
    sys.setswitchinterval(GIL_SWITCH_INTERVAL_SECONDS)


async def run_consumer(settings: ConsumerSettings, stop: asyncio.Event) -> None:
    if not settings.kafka_bootstrap_servers:
        raise SystemExit("meterline consumer needs KAFKA_BOOTSTRAP_SERVERS")
    async with open_consumer(settings, load_config(settings.config_file)) as pipeline:
        tune_interpreter()
        finished = asyncio.Event()
        async with serve_http(
            pipeline,
            settings.consumer_http_host,
            settings.consumer_http_port,
            alive=lambda: not finished.is_set(),
        ):
            try:
                await pipeline.run(stop)
            finally:
                finished.set()


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
