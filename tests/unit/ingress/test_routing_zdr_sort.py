"""``Router.plan`` with zero data retention (the request's or the team's) and with ``sort``
by price, latency and throughput, alone and with ``order``, ``only`` and fallback models;
and the record of the route that answered."""

from __future__ import annotations

import asyncio
from datetime import datetime
from decimal import Decimal

import pytest
from starlette.responses import Response

from meterline.common.config import GatewayConfig
from meterline.common.pricing import MarketRates, PerMillionRates, TokenCounts
from meterline.ingress.errors import BadRequest
from meterline.ingress.route_prices import ListPrices
from meterline.ingress.route_stats import RouteStats
from meterline.ingress.routing import Route, Router, first_success
from meterline.ingress.tagging import RoutingOptions
from tests.support.events import request_record, usage_event

CONFIG = GatewayConfig.model_validate(
    {
        "providers": [
            {"slug": "openai", "base_url": "http://o/v1", "models": ["gpt-4o"]},
            {
                "slug": "azure",
                "base_url": "http://a/v1",
                "models": ["gpt-4o"],
                "zero_data_retention": True,
            },
            {
                "slug": "groq",
                "base_url": "http://g/v1",
                "models": ["gpt-4o", "llama-3.3-70b"],
                "zero_data_retention": True,
            },
            # Lists nothing: it serves what a request names it for, and nothing else.
            {"slug": "local", "base_url": "http://l/v1", "zero_data_retention": True},
            {
                "slug": "anthropic",
                "wire": "anthropic",
                "base_url": "http://an",
                "models": ["claude-sonnet-4-6"],
                "zero_data_retention": True,
            },
        ],
        "teams": [{"id": "plain"}, {"id": "private", "zero_data_retention": True}],
    }
)
PLAIN, PRIVATE = CONFIG.teams


def rates(input_: str, output: str) -> PerMillionRates:
    i, o = Decimal(input_), Decimal(output)
    return PerMillionRates.text(input=i, output=o, cache_read=i, cache_write=i)


class Prices:
    name = "test"

    def __init__(self, rates: dict[tuple[str, str], MarketRates]) -> None:
        self.rates = rates

    def market_cost(
        self, provider: str, model: str, at: datetime, tokens: TokenCounts
    ) -> Decimal | None:
        raise AssertionError("not used for routing")

    def market_rates(self, provider: str, model: str, at: datetime) -> MarketRates:
        return self.rates.get((provider, model), "unknown")


PRICES = Prices(
    {
        ("openai", "gpt-4o"): rates("2.50", "10.00"),  # 12.50
        ("azure", "gpt-4o"): rates("2.00", "9.00"),  # 11.00: the cheapest
        ("groq", "gpt-4o"): "tiered",
        ("groq", "llama-3.3-70b"): rates("0.59", "0.79"),
        ("local", "llama-3.3-70b"): rates("0.10", "0.10"),
    }
)


@pytest.fixture
def stats() -> RouteStats:
    return RouteStats()


@pytest.fixture
def loads() -> list[int]:
    return []


@pytest.fixture
def prices(loads: list[int]) -> ListPrices:
    def load() -> Prices:
        loads.append(1)
        return PRICES

    return ListPrices(load)


@pytest.fixture
def router(stats: RouteStats, prices: ListPrices) -> Router:
    return Router(CONFIG, wire="openai", translated=("anthropic",), prices=prices, stats=stats)


@pytest.fixture
def priced(prices: ListPrices) -> ListPrices:
    """The price list, loaded: the router's first price lookup only starts loading it."""
    assert prices.wait_loaded(timeout=10)
    return prices


def slugs(routes: list[Route]) -> list[str]:
    return [r.provider.slug for r in routes]


def answered(stats: RouteStats, provider: str, model: str = "gpt-4o", **fields: object) -> None:
    stats.observe(usage_event(provider=provider, model=model, **fields))


ZDR = RoutingOptions(zero_data_retention=True)


def test_zero_data_retention_goes_to_the_marked_providers_serving_the_model(
    router: Router,
) -> None:
    assert slugs(router.plan("openai/gpt-4o", team=PLAIN)) == ["openai"]
    assert slugs(router.plan("openai/gpt-4o", ZDR, PLAIN)) == ["azure", "groq"]
    assert slugs(router.plan("groq/gpt-4o", ZDR, PLAIN)) == ["groq", "azure"]


def test_a_team_that_requires_it_needs_no_option(router: Router) -> None:
    assert slugs(router.plan("openai/gpt-4o", team=PRIVATE)) == ["azure", "groq"]
    assert router.plan("openai/gpt-4o", ZDR, PRIVATE) == router.plan("openai/gpt-4o", team=PRIVATE)
    # A request cannot opt out of its team's requirement.
    off = RoutingOptions(zero_data_retention=False, order=("openai",))
    assert slugs(router.plan("openai/gpt-4o", off, PRIVATE)) == ["azure", "groq"]


def test_a_marked_provider_named_by_the_request_serves_any_name(router: Router) -> None:
    assert slugs(router.plan("local/my-finetune", ZDR, PLAIN)) == ["local"]


def test_zero_data_retention_within_only_and_order(router: Router) -> None:
    only = RoutingOptions(zero_data_retention=True, only=("openai", "groq"))
    assert slugs(router.plan("openai/gpt-4o", only, PLAIN)) == ["groq"]
    order = RoutingOptions(zero_data_retention=True, order=("openai", "groq"))
    assert slugs(router.plan("openai/gpt-4o", order, PLAIN)) == ["groq", "azure"]


def test_zero_data_retention_applies_to_fallback_models(router: Router) -> None:
    options = RoutingOptions(
        zero_data_retention=True, models=("openai/gpt-4o-mini", "anthropic/claude-sonnet-4-6")
    )
    routes = router.plan("openai/o3", options, PLAIN)
    assert [(r.provider.slug, r.model) for r in routes] == [("anthropic", "claude-sonnet-4-6")]


def test_no_marked_provider_is_a_400_naming_the_option(router: Router) -> None:
    with pytest.raises(BadRequest) as caught:
        router.plan("openai/gpt-4o-mini", ZDR, PLAIN)
    error = caught.value
    assert error.param == "providerOptions.gateway.zeroDataRetention"
    assert error.message.startswith("no zero-data-retention provider serves 'openai/gpt-4o-mini'")
    assert "the request sets providerOptions.gateway.zeroDataRetention" in error.message

    with pytest.raises(BadRequest) as caught:
        router.plan("openai/gpt-4o-mini", team=PRIVATE)
    assert caught.value.param == "providerOptions.gateway.zeroDataRetention"
    assert "team 'private' requires zero data retention" in caught.value.message

    with pytest.raises(BadRequest) as caught:
        router.plan("openai/gpt-4o", RoutingOptions(zero_data_retention=True, only=("openai",)))
    assert caught.value.param == "providerOptions.gateway.zeroDataRetention"
    assert "in providerOptions.gateway.only (openai)" in caught.value.message


def test_sort_by_price_cheapest_first_unknown_and_tiered_last(
    router: Router, prices: ListPrices, loads: list[int]
) -> None:
    assert slugs(router.plan("openai/gpt-4o", team=PLAIN)) == ["openai"]
    assert loads == []  # nothing sorted by price: the price list is not even loaded
    price = RoutingOptions(sort="price")
    # The first lookup starts loading the list and does not wait for it: until it is in,
    # no route has a price and the configuration order holds.
    assert slugs(router.plan("openai/gpt-4o", price, PLAIN)) == ["openai", "azure", "groq"]
    assert prices.wait_loaded(timeout=10)
    assert slugs(router.plan("openai/gpt-4o", price, PLAIN)) == ["azure", "openai", "groq"]
    assert slugs(router.plan("groq/llama-3.3-70b", price, PLAIN)) == ["groq"]
    router.plan("openai/gpt-4o", price, PLAIN)
    assert loads == [1]


def test_unranked_providers_keep_the_configuration_order(router: Router) -> None:
    # The named provider has no place of its own among them.
    latency = RoutingOptions(sort="latency")
    assert slugs(router.plan("groq/gpt-4o", latency, PLAIN)) == ["openai", "azure", "groq"]
    price = RoutingOptions(sort="price")
    tied = Router(CONFIG, wire="openai", prices=ListPrices(lambda: Prices({})))
    assert slugs(tied.plan("groq/gpt-4o", price, PLAIN)) == ["openai", "azure", "groq"]


def test_sort_by_latency_fastest_first_unmeasured_last(router: Router, stats: RouteStats) -> None:
    answered(stats, "openai", duration_ms=900)
    answered(stats, "groq", duration_ms=800, streamed=True, time_to_first_token_ms=90)
    answered(stats, "azure", model="llama-3.3-70b", duration_ms=10)  # another model
    latency = RoutingOptions(sort="latency")
    assert slugs(router.plan("openai/gpt-4o", latency, PLAIN)) == ["groq", "openai", "azure"]
    # Failed answers are not measured.
    answered(stats, "azure", duration_ms=1, status="error", http_status=503)
    assert slugs(router.plan("openai/gpt-4o", latency, PLAIN)) == ["groq", "openai", "azure"]
    answered(stats, "azure", duration_ms=50)
    assert slugs(router.plan("openai/gpt-4o", latency, PLAIN)) == ["azure", "groq", "openai"]


def test_sort_by_throughput_most_tokens_per_second_first(router: Router, stats: RouteStats) -> None:
    answered(stats, "openai", duration_ms=1000, output_tokens=50)  # 50/s
    answered(stats, "azure", duration_ms=500, output_tokens=100)  # 200/s
    throughput = RoutingOptions(sort="throughput")
    assert slugs(router.plan("openai/gpt-4o", throughput, PLAIN)) == ["azure", "openai", "groq"]


def test_order_wins_over_sort_for_the_slugs_it_names(router: Router, priced: ListPrices) -> None:
    options = RoutingOptions(sort="price", order=("groq",))
    assert slugs(router.plan("openai/gpt-4o", options, PLAIN)) == ["groq", "azure", "openai"]


def test_sort_within_only_and_zero_data_retention(
    router: Router, stats: RouteStats, priced: ListPrices
) -> None:
    only = RoutingOptions(sort="price", only=("openai", "groq"))
    assert slugs(router.plan("azure/gpt-4o", only, PLAIN)) == ["openai", "groq"]
    answered(stats, "groq", duration_ms=100)
    answered(stats, "azure", duration_ms=300)
    answered(stats, "openai", duration_ms=10)
    zdr = RoutingOptions(sort="latency", zero_data_retention=True)
    assert slugs(router.plan("openai/gpt-4o", zdr, PLAIN)) == ["groq", "azure"]


def test_sort_ranks_each_model_apart_and_keeps_the_models_in_order(
    router: Router, priced: ListPrices
) -> None:
    options = RoutingOptions(sort="price", models=("local/llama-3.3-70b", "groq/llama-3.3-70b"))
    routes = router.plan("openai/gpt-4o", options, PLAIN)
    assert [(r.provider.slug, r.model) for r in routes] == [
        ("azure", "gpt-4o"),
        ("openai", "gpt-4o"),
        ("groq", "gpt-4o"),
        # The fallback's own providers, ranked for it: local is the cheaper one.
        ("local", "llama-3.3-70b"),
        ("groq", "llama-3.3-70b"),
    ]


def test_the_record_says_whether_the_answering_provider_keeps_no_data(router: Router) -> None:
    statuses = {"openai": 503, "azure": 200}

    async def send(route: Route) -> Response:
        return Response(status_code=statuses[route.provider.slug])

    routes = router.plan("openai/gpt-4o", RoutingOptions(order=("openai", "azure")), PLAIN)
    record = request_record()
    assert asyncio.run(first_success(routes, record, send)).status_code == 200
    assert (record.provider, record.zero_data_retention) == ("azure", True)

    statuses.update(openai=200)
    record = request_record(zero_data_retention=True)
    asyncio.run(first_success(routes, record, send))
    assert (record.provider, record.zero_data_retention) == ("openai", False)
