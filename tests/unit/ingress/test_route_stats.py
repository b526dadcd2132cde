"""``route_stats``: the recent latency and throughput of each provider and model, measured
from the events of successful answers, and the publisher that feeds it."""

from __future__ import annotations

import asyncio

import pytest

from meterline.ingress.publishing.memory import MemoryPublisher
from meterline.ingress.route_stats import WEIGHT, MeasuringPublisher, RouteStats
from tests.support.events import usage_event


def test_nothing_measured_is_none() -> None:
    stats = RouteStats()
    assert stats.latency_ms("openai", "gpt-x") is None
    assert stats.tokens_per_second("openai", "gpt-x") is None


def test_a_whole_answer_measures_its_duration() -> None:
    stats = RouteStats()
    stats.observe(usage_event(duration_ms=400, output_tokens=100))
    assert stats.latency_ms("openai", "gpt-x") == 400
    assert stats.tokens_per_second("openai", "gpt-x") == 250  # 100 tokens in 0.4 s


def test_a_stream_measures_its_first_token_and_what_came_after() -> None:
    stats = RouteStats()
    stats.observe(
        usage_event(streamed=True, duration_ms=1200, time_to_first_token_ms=200, output_tokens=50)
    )
    assert stats.latency_ms("openai", "gpt-x") == 200
    assert stats.tokens_per_second("openai", "gpt-x") == 50  # 50 tokens in the last second


def test_each_answer_moves_the_average_by_its_weight() -> None:
    stats = RouteStats()
    stats.observe(usage_event(duration_ms=100))
    stats.observe(usage_event(duration_ms=600))
    assert stats.latency_ms("openai", "gpt-x") == pytest.approx(100 + WEIGHT * 500)
    for _ in range(50):
        stats.observe(usage_event(duration_ms=600))
    assert stats.latency_ms("openai", "gpt-x") == pytest.approx(600, abs=0.01)


def test_routes_are_measured_apart() -> None:
    stats = RouteStats()
    stats.observe(usage_event(provider="a", model="m", duration_ms=100))
    stats.observe(usage_event(provider="b", model="m", duration_ms=300))
    stats.observe(usage_event(provider="a", model="n", duration_ms=500))
    assert [stats.latency_ms(*key) for key in (("a", "m"), ("b", "m"), ("a", "n"))] == [
        100,
        300,
        500,
    ]


@pytest.mark.parametrize("status", ["error", "client_disconnected"])
def test_only_successful_answers_count(status: str) -> None:
    stats = RouteStats()
    stats.observe(usage_event(status=status, http_status=500, duration_ms=5))
    assert stats.latency_ms("openai", "gpt-x") is None
    assert stats.tokens_per_second("openai", "gpt-x") is None


def test_an_answer_without_output_measures_latency_only() -> None:
    stats = RouteStats()
    stats.observe(usage_event(duration_ms=80, output_tokens=0))
    stats.observe(usage_event(provider="b", duration_ms=0, output_tokens=10))
    assert stats.latency_ms("openai", "gpt-x") == 80
    assert stats.tokens_per_second("openai", "gpt-x") is None
    assert stats.tokens_per_second("b", "gpt-x") is None  # no time to divide by


def test_the_least_recently_measured_route_is_dropped_past_the_limit() -> None:
    stats = RouteStats(max_routes=2)
    stats.observe(usage_event(model="first"))
    stats.observe(usage_event(model="second"))
    stats.observe(usage_event(model="first"))  # measured again: now the most recent
    stats.observe(usage_event(model="third"))
    assert stats.latency_ms("openai", "second") is None
    assert stats.latency_ms("openai", "first") is not None
    assert stats.latency_ms("openai", "third") is not None


def test_the_measuring_publisher_publishes_and_measures() -> None:
    inner = MemoryPublisher()
    stats = RouteStats()
    publisher = MeasuringPublisher(inner, stats)
    event = usage_event(duration_ms=300)

    async def run() -> None:
        await publisher.start()
        publisher.publish(event)
        await publisher.stop()

    asyncio.run(run())
    assert inner.events == [event] and inner.started and inner.stopped
    assert stats.latency_ms("openai", "gpt-x") == 300
    assert publisher.metrics() == inner.metrics()
