"""The consumer's readiness and breaker gauge: an open dead-letter breaker makes it
unready, and says so in ``/metrics``, as the consumer stops."""

from __future__ import annotations

import asyncio

import pytest

from meterline.common.bus import InProcessBus
from meterline.common.codec import UsageEventCodec
from meterline.common.config import GatewayConfig
from meterline.common.pricing import StaticPrices
from meterline.consumer.assemble import build_pipeline
from meterline.consumer.batch_log import MemoryBatchLog
from meterline.consumer.dead_letter import CircuitOpen, MemoryDeadLetter
from meterline.consumer.enrich import Enricher
from meterline.consumer.observe import readiness
from meterline.consumer.settings import ConsumerSettings
from meterline.consumer.source import BusSource
from meterline.consumer.write import MemoryWriter, PythonBatchWriter
from tests.support.prometheus import value


async def test_an_open_breaker_makes_the_consumer_unready() -> None:
    bus = InProcessBus()
    pipeline = build_pipeline(
        ConsumerSettings(max_batch_seconds=0.05, dead_letter_breaker_min_messages=5),
        source=BusSource(bus),
        writer=PythonBatchWriter(
            UsageEventCodec(), Enricher(StaticPrices({}), GatewayConfig()), MemoryWriter()
        ),
        dead_letter=MemoryDeadLetter(),
        batch_log=MemoryBatchLog(),
    )
    assert readiness(pipeline) is None
    assert value(pipeline.metrics.registry.render(), "meterline_consumer_breaker_open") == 0
    for _ in range(10):
        bus.publish_nowait(None, b"no usage event")
    with pytest.raises(CircuitOpen):
        await asyncio.wait_for(pipeline.run(asyncio.Event()), 10)
    assert readiness(pipeline) == "the dead-letter circuit breaker is open"
    text = pipeline.metrics.registry.render()
    assert value(text, "meterline_consumer_breaker_open") == 1
    assert value(text, "meterline_consumer_dead_letters_total") == 5
