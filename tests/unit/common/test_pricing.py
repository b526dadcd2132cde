"""Market prices must equal genai-prices' own numbers, cache reads, cache writes (5 minute and
one hour) and reasoning tokens included; unknown models are None, never 0."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest
from genai_prices import Usage, calc_price

from meterline.common.config import PriceOverride
from meterline.common.pricing import (
    GenaiPrices,
    PerMillionRates,
    TokenCounts,
    team_cost,
    team_rates,
)

WHEN = datetime(2026, 11, 1, 12, tzinfo=UTC)

CASES = [
    ("openai", "gpt-4o", TokenCounts(5_000, 700, cached_input_tokens=4_096)),
    ("openai", "o4-mini", TokenCounts(2_000, 3_000, reasoning_tokens=2_500)),
    ("openai", "gpt-4o-mini", TokenCounts(1, 1)),
    (
        "anthropic",
        "claude-sonnet-4-6",
        TokenCounts(
            9_000,
            400,
            cached_input_tokens=3_000,
            cache_creation_input_tokens=2_000,
            cache_creation_1h_input_tokens=500,
        ),
    ),
    ("anthropic", "claude-sonnet-4-6", TokenCounts(3_000, 10, cache_creation_input_tokens=3_000)),
    ("google", "gemini-2.5-pro", TokenCounts(300_000, 1_000, cached_input_tokens=100_000)),
]


def _reference(provider: str, model: str, tokens: TokenCounts) -> Decimal:
    values = {
        "input_tokens": tokens.input_tokens,
        "output_tokens": tokens.output_tokens,
        "cache_read_tokens": tokens.cached_input_tokens,
        "cache_write_tokens": tokens.cache_creation_input_tokens,
    }
    if tokens.cache_creation_1h_input_tokens:
        values["cache_write_1h_tokens"] = tokens.cache_creation_1h_input_tokens
    result = calc_price(
        Usage(**values), model_ref=model, provider_id=provider, genai_request_timestamp=WHEN
    )
    return Decimal(result.total_price)


@pytest.mark.parametrize(("provider", "model", "tokens"), CASES)
def test_market_cost_equals_genai_prices(provider: str, model: str, tokens: TokenCounts) -> None:
    assert GenaiPrices().market_cost(provider, model, WHEN, tokens) == _reference(
        provider, model, tokens
    )


def test_known_anthropic_list_prices() -> None:
    prices = GenaiPrices()
    million = 1_000_000
    reads = TokenCounts(million, 0, cached_input_tokens=million)
    writes = TokenCounts(million, 0, cache_creation_input_tokens=million)
    writes_1h = TokenCounts(
        million, 0, cache_creation_input_tokens=million, cache_creation_1h_input_tokens=million
    )
    output = TokenCounts(0, million, reasoning_tokens=million // 2)
    sonnet = ("anthropic", "claude-sonnet-4-6")
    assert prices.market_cost(*sonnet, WHEN, reads) == Decimal("0.30")
    assert prices.market_cost(*sonnet, WHEN, writes) == Decimal("3.75")
    assert prices.market_cost(*sonnet, WHEN, writes_1h) == Decimal("6")
    assert prices.market_cost(*sonnet, WHEN, output) == Decimal("15")


def test_unknown_model_is_none_not_zero() -> None:
    assert GenaiPrices().market_cost("openai", "no-such-model", WHEN, TokenCounts(10, 10)) is None
    assert GenaiPrices().market_cost("nobody", "gpt-4o", WHEN, TokenCounts(10, 10)) is None


def test_provider_alias_prices_a_self_hosted_slug() -> None:
    prices = GenaiPrices({"my-vllm": "openai"})
    tokens = TokenCounts(1_000, 100)
    assert prices.market_cost("my-vllm", "gpt-4o", WHEN, tokens) == _reference(
        "openai", "gpt-4o", tokens
    )


def test_team_cost_rules() -> None:
    tokens = TokenCounts(1_000_000, 1_000_000, cached_input_tokens=500_000)
    market = Decimal("12.5")
    assert team_cost(market, tokens, "byok", None) == 0
    assert team_cost(market, tokens, "byok", PriceOverride(multiplier=Decimal("2"))) == 0
    assert team_cost(market, tokens, "system", None) == market
    assert team_cost(market, tokens, "system", PriceOverride(multiplier=Decimal("0.8"))) == Decimal(
        "10.0"
    )
    custom = PriceOverride(input_per_mtok=Decimal("1"), output_per_mtok=Decimal("2"))
    # Cache reads fall back to the custom input price when the override names none.
    assert team_cost(None, tokens, "system", custom) == Decimal("3")
    assert team_cost(None, tokens, "system", PriceOverride(multiplier=Decimal("0.8"))) is None


def test_price_override_needs_exactly_one_kind() -> None:
    with pytest.raises(ValueError):
        PriceOverride()
    with pytest.raises(ValueError):
        PriceOverride(multiplier=Decimal("1"), input_per_mtok=Decimal("1"))


def test_market_rates_are_what_market_cost_applies() -> None:
    prices = GenaiPrices()
    at = datetime(2026, 3, 2, 9, 30, tzinfo=UTC)
    tokens = TokenCounts(7_000, 900, 1_000, 2_000, 500)
    rates = prices.market_rates("openai", "gpt-4o", at)
    assert isinstance(rates, PerMillionRates)
    assert rates.cost(tokens) == prices.market_cost("openai", "gpt-4o", at, tokens)
    assert prices.market_rates("anthropic", "claude-sonnet-4-5", at) == "tiered"
    assert prices.market_rates("openai", "no-such-model", at) == "unknown"


@pytest.mark.parametrize(
    ("credential_type", "override"),
    [
        ("system", None),
        ("byok", None),
        ("byok", PriceOverride(multiplier=Decimal("0.8"))),
        ("system", PriceOverride(multiplier=Decimal("0.85"))),
        ("system", PriceOverride(input_per_mtok=Decimal("1.1"), output_per_mtok=Decimal("3"))),
        (
            "system",
            PriceOverride(
                input_per_mtok=Decimal("1.1"),
                output_per_mtok=Decimal("3"),
                cache_read_per_mtok=Decimal("0.11"),
                cache_write_per_mtok=Decimal("1.375"),
            ),
        ),
    ],
)
@pytest.mark.parametrize("market_known", [True, False])
def test_team_rates_charge_what_team_cost_charges(
    credential_type: str, override: PriceOverride | None, market_known: bool
) -> None:
    market = PerMillionRates(
        *map(Decimal, ("2.5", "10", "1.25", "3.125", "5", "40", "80", "10000"))
    )
    tokens = TokenCounts(123_457, 8_765, 20_000, 3_000, 1_000, 400, 5_000, 700, 3)
    market_cost = market.cost(tokens) if market_known else None
    rates = team_rates(market if market_known else None, credential_type, override)
    expected = team_cost(market_cost, tokens, credential_type, override)
    assert (None if rates is None else rates.cost(tokens)) == expected
