"""``route_prices.ListPrices``: the blended list price ``sort: "price"`` ranks routes by,
from genai-prices with the configuration's ``prices_as`` aliases."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

from meterline.common.config import GatewayConfig
from meterline.common.pricing import GenaiPrices, MarketRates, PerMillionRates, TokenCounts
from meterline.ingress.route_prices import ListPrices

NOW = datetime(2026, 3, 2, 15, 30, tzinfo=UTC)


class CountingPrices:
    """A price source that counts the lookups made of it."""

    name = "counting"

    def __init__(self, rates: dict[tuple[str, str], MarketRates]) -> None:
        self.rates = rates
        self.lookups: list[tuple[str, str, datetime]] = []

    def market_cost(
        self, provider: str, model: str, at: datetime, tokens: TokenCounts
    ) -> Decimal | None:
        raise AssertionError("routes are ranked by rates, never by a cost")

    def market_rates(self, provider: str, model: str, at: datetime) -> MarketRates:
        self.lookups.append((provider, model, at))
        return self.rates.get((provider, model), "unknown")


def rates(input_: str, output: str) -> PerMillionRates:
    i, o = Decimal(input_), Decimal(output)
    return PerMillionRates.text(input=i, output=o, cache_read=i / 10, cache_write=i)


def test_the_blend_is_the_input_rate_plus_the_output_rate() -> None:
    source = CountingPrices({("a", "m"): rates("2.50", "10.00"), ("t", "m"): "tiered"})
    prices = ListPrices(lambda: source)
    assert prices.blended("a", "m", NOW) is None  # the list is being loaded: no price yet
    assert prices.wait_loaded(timeout=10)
    assert prices.blended("a", "m", NOW) == Decimal("12.50")
    assert prices.blended("t", "m", NOW) is None
    assert prices.blended("u", "m", NOW) is None


def test_the_source_is_loaded_on_first_use_and_asked_once_a_day() -> None:
    source = CountingPrices({("a", "m"): rates("1", "2")})
    loads: list[int] = []

    def load() -> CountingPrices:
        loads.append(1)
        return source

    prices = ListPrices(load)
    assert loads == []
    assert not prices.ready()
    assert prices.wait_loaded(timeout=10)
    assert prices.ready()
    for hours in range(5):
        prices.blended("a", "m", NOW + timedelta(hours=hours))
    prices.blended("u", "m", NOW)
    prices.blended("u", "m", NOW)
    assert loads == [1]
    midnight = datetime(2026, 3, 2, tzinfo=UTC)
    assert source.lookups == [("a", "m", midnight), ("u", "m", midnight)]
    prices.blended("a", "m", NOW + timedelta(hours=9))  # the next day
    assert source.lookups[-1] == ("a", "m", midnight + timedelta(days=1))


def test_a_price_list_that_cannot_load_leaves_every_route_unpriced() -> None:
    def fail() -> CountingPrices:
        raise OSError("no snapshot")

    prices = ListPrices(fail)
    assert not prices.wait_loaded(timeout=10)
    assert prices.blended("a", "m", NOW) is None
    assert not prices.ready()


def test_genai_prices_with_the_providers_aliases() -> None:
    config = GatewayConfig.model_validate(
        {
            "providers": [
                {"slug": "openai", "base_url": "http://o/v1"},
                {"slug": "vllm", "base_url": "http://v/v1", "prices_as": "openai"},
            ]
        }
    )
    prices = ListPrices.from_config(config)
    assert prices.wait_loaded(timeout=30)
    listed = GenaiPrices().market_rates("openai", "gpt-4o", NOW)
    assert isinstance(listed, PerMillionRates)
    assert prices.blended("openai", "gpt-4o", NOW) == listed.input + listed.output
    assert prices.blended("vllm", "gpt-4o", NOW) == listed.input + listed.output
    assert GenaiPrices().market_rates("vllm", "gpt-4o", NOW) == "unknown"  # the alias counts
    assert prices.blended("openai", "no-such-model-anywhere", NOW) is None
