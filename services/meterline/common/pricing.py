"""Market prices from genai-prices, and the team's charge after its price overrides.

``market_cost`` is the provider's list price when the request ran (BYOK included);
``total_cost`` is what the gateway charges the team: the market cost after the team's
override for system credentials, and 0 for BYOK (the provider bills the key's owner).
A model with no known price yields ``None``, never a silent 0: the row is stored with
``price_known = false`` and can be re-priced later from its raw usage.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from datetime import UTC, datetime
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any, Final, Literal, Protocol, TypeAlias

from meterline.common.config import PriceOverride

MILLION: Final = Decimal(1_000_000)
MONEY_SCALE: Final = 12
"""Decimal places of money in the warehouse (``usage_row.MONEY``)."""
MONEY_QUANTUM: Final = Decimal(1).scaleb(-MONEY_SCALE)

ZERO: Final = Decimal(0)


@dataclass(frozen=True, slots=True)
class TokenCounts:
    """Usage under Meterline's convention: the input includes cache reads, cache writes and
    audio; the output includes reasoning and audio. Web searches are counted, not tokens."""

    input_tokens: int
    output_tokens: int
    cached_input_tokens: int = 0
    cache_creation_input_tokens: int = 0
    cache_creation_1h_input_tokens: int = 0
    reasoning_tokens: int = 0
    input_audio_tokens: int = 0
    output_audio_tokens: int = 0
    web_search_requests: int = 0


TOKEN_FIELDS: Final = tuple(field.name for field in fields(TokenCounts))
"""The event's usage counts, as ``TokenCounts`` takes them (positionally too)."""

USAGE_KINDS: Final = (
    "input",
    "cache_read",
    "cache_write",
    "cache_write_1h",
    "input_audio",
    "output",
    "output_audio",
    "web_search",
)
"""The kinds of usage a price tells apart, each with its own rate (``PerMillionRates``):
tokens, and web searches (per million searches, so every rate has the same unit)."""


def usage_by_kind(tokens: TokenCounts) -> tuple[int, int, int, int, int, int, int, int]:
    """How much of each kind, in ``USAGE_KINDS`` order: the input counts every input token,
    so the cache reads, the cache writes and the audio come out of it; the one-hour writes
    come out of the writes; the output's audio comes out of the output (reasoning is priced
    as output). ``USAGE_BY_KIND_SQL`` is the same over the raw table's columns."""
    return (
        tokens.input_tokens
        - tokens.cached_input_tokens
        - tokens.cache_creation_input_tokens
        - tokens.input_audio_tokens,
        tokens.cached_input_tokens,
        tokens.cache_creation_input_tokens - tokens.cache_creation_1h_input_tokens,
        tokens.cache_creation_1h_input_tokens,
        tokens.input_audio_tokens,
        tokens.output_tokens - tokens.output_audio_tokens,
        tokens.output_audio_tokens,
        tokens.web_search_requests,
    )


USAGE_BY_KIND_SQL: Final = {
    "input": "(input_tokens - cached_input_tokens - cache_creation_input_tokens"
    " - input_audio_tokens)",
    "cache_read": "cached_input_tokens",
    "cache_write": "(cache_creation_input_tokens - cache_creation_1h_input_tokens)",
    "cache_write_1h": "cache_creation_1h_input_tokens",
    "input_audio": "input_audio_tokens",
    "output": "(output_tokens - output_audio_tokens)",
    "output_audio": "output_audio_tokens",
    "web_search": "web_search_requests",
}
"""``usage_by_kind`` in ClickHouse SQL, for the warehouse engine's pricing."""


class PriceSource(Protocol):
    """Where market prices come from."""

    name: str

    def market_cost(
        self, provider: str, model: str, at: datetime, tokens: TokenCounts
    ) -> Decimal | None:
        """USD at list price, or None when the model's price is unknown."""
        ...

    def market_rates(self, provider: str, model: str, at: datetime) -> MarketRates:
        """The per-million rates ``market_cost`` applies at ``at``: "unknown" when it would
        return None, "tiered" when the price depends on the request's size."""
        ...


@dataclass(frozen=True, slots=True)
class PerMillionRates:
    """USD per million of each kind (``USAGE_KINDS``). Prices without tiers are linear in
    the counts, so one rate per kind reproduces genai-prices exactly at a fraction of its
    cost."""

    input: Decimal
    output: Decimal
    cache_read: Decimal
    cache_write: Decimal
    cache_write_1h: Decimal
    input_audio: Decimal
    output_audio: Decimal
    web_search: Decimal

    @classmethod
    def text(
        cls,
        input: Decimal,
        output: Decimal,
        cache_read: Decimal,
        cache_write: Decimal,
        cache_write_1h: Decimal | None = None,
        web_search: Decimal = Decimal(0),
    ) -> PerMillionRates:
        """A price list that tells no audio apart: audio at the text rates, one-hour writes
        at the write rate unless given."""
        return cls(
            input=input,
            output=output,
            cache_read=cache_read,
            cache_write=cache_write,
            cache_write_1h=cache_write if cache_write_1h is None else cache_write_1h,
            input_audio=input,
            output_audio=output,
            web_search=web_search,
        )

    def cost(self, tokens: TokenCounts) -> Decimal:
        """USD, exactly: rate times count of each kind, summed in ``USAGE_KINDS`` order.
        ``quantize_money`` rounds it for the warehouse."""
        (
            input_,
            cache_read,
            cache_write,
            cache_write_1h,
            input_audio,
            output,
            output_audio,
            web_search,
        ) = usage_by_kind(tokens)
        micro = (
            self.input * input_
            + self.cache_read * cache_read
            + self.cache_write * cache_write
            + self.cache_write_1h * cache_write_1h
            + self.input_audio * input_audio
            + self.output * output
            + self.output_audio * output_audio
            + self.web_search * web_search
        )
        return micro / MILLION


MarketRates: TypeAlias = "PerMillionRates | Literal['unknown', 'tiered']"


def quantize_money(amount: Decimal) -> Decimal:
    """Half to even, to the warehouse's money scale (in SQL: ``roundBankers(amount, 12)``)."""
    return amount.quantize(MONEY_QUANTUM, rounding=ROUND_HALF_EVEN)


class GenaiPrices:
    """genai-prices' bundled snapshot (works offline), with its model lookup and price-history
    resolution cached per provider, model and hour: a full ``calc_price`` costs about 300 µs,
    too slow for a consumer that prices tens of thousands of events a second."""

    def __init__(self, provider_aliases: dict[str, str] | None = None) -> None:
        from genai_prices import __version__, data_snapshot

        self.name = f"genai-prices {__version__}"
        self._snapshot = data_snapshot.get_snapshot()
        self._aliases = provider_aliases or {}
        self._resolved: dict[tuple[str, str, int], tuple[Any, PerMillionRates | None] | None] = {}

    def market_cost(
        self, provider: str, model: str, at: datetime, tokens: TokenCounts
    ) -> Decimal | None:
        resolved = self._resolved_at(provider, model, at)
        if resolved is None:
            return None
        model_price, rates = resolved
        if rates is not None:
            return rates.cost(tokens)
        return Decimal(model_price.calc_price(_genai_usage(tokens))["total_price"])

    def market_rates(self, provider: str, model: str, at: datetime) -> MarketRates:
        resolved = self._resolved_at(provider, model, at)
        if resolved is None:
            return "unknown"
        _, rates = resolved
        return "tiered" if rates is None else rates

    def _resolved_at(
        self, provider: str, model: str, at: datetime
    ) -> tuple[Any, PerMillionRates | None] | None:
        # Resolved at the start of the hour, so that every event of an hour gets the same
        # price whichever came first (genai-prices' price changes fall on day boundaries).
        hour = int(at.timestamp()) // 3600
        key = (provider, model, hour)
        if key not in self._resolved:
            start = datetime.fromtimestamp(hour * 3600, tz=UTC)
            self._resolved[key] = self._resolve(provider, model, start)
        return self._resolved[key]

    def _resolve(
        self, provider: str, model: str, at: datetime
    ) -> tuple[Any, PerMillionRates | None] | None:
        from genai_prices.types import TieredPrices

        try:
            _, model_info = self._snapshot.find_provider_model(
                model, None, self._aliases.get(provider, provider), None
            )
        except LookupError:
            return None
        model_price = model_info.get_prices(at)
        if any(isinstance(value, TieredPrices) for value in vars(model_price).values()):
            # Long-context tiers make the price depend on the prompt size: no shortcut.
            return model_price, None
        return model_price, _linear_rates(model_price)


def _genai_usage(tokens: TokenCounts) -> Any:
    from genai_prices import Usage

    values: dict[str, int] = {
        "input_tokens": tokens.input_tokens,
        "output_tokens": tokens.output_tokens,
        "cache_read_tokens": tokens.cached_input_tokens,
        "cache_write_tokens": tokens.cache_creation_input_tokens,
    }
    if tokens.cache_creation_1h_input_tokens:
        values["cache_write_1h_tokens"] = tokens.cache_creation_1h_input_tokens
    if tokens.input_audio_tokens:
        values["input_audio_tokens"] = tokens.input_audio_tokens
    if tokens.output_audio_tokens:
        values["output_audio_tokens"] = tokens.output_audio_tokens
    if tokens.web_search_requests:
        values["web_searches"] = tokens.web_search_requests
    return Usage(**values)


def _linear_rates(model_price: Any) -> PerMillionRates:
    """Ask genai-prices for one million tokens of each kind: its own numbers, read once."""
    million = 1_000_000

    def price(**counts: int) -> Decimal:
        return Decimal(model_price.calc_price(_genai_usage(TokenCounts(**counts)))["total_price"])

    return PerMillionRates(
        input=price(input_tokens=million, output_tokens=0),
        output=price(input_tokens=0, output_tokens=million),
        cache_read=price(input_tokens=million, output_tokens=0, cached_input_tokens=million),
        cache_write=price(
            input_tokens=million, output_tokens=0, cache_creation_input_tokens=million
        ),
        cache_write_1h=price(
            input_tokens=million,
            output_tokens=0,
            cache_creation_input_tokens=million,
            cache_creation_1h_input_tokens=million,
        ),
        input_audio=price(input_tokens=million, output_tokens=0, input_audio_tokens=million),
        output_audio=price(input_tokens=0, output_tokens=million, output_audio_tokens=million),
        web_search=price(input_tokens=0, output_tokens=0, web_search_requests=million),
    )


class StaticPrices:
    """Fixed per-million rates by (provider, model): for unit tests and air-gapped installs
    that publish their own price list."""

    def __init__(self, rates: dict[tuple[str, str], PerMillionRates], name: str = "static"):
        self.name = name
        self._rates = rates

    def market_cost(
        self, provider: str, model: str, at: datetime, tokens: TokenCounts
    ) -> Decimal | None:
        rates = self._rates.get((provider, model))
        return None if rates is None else rates.cost(tokens)

    def market_rates(self, provider: str, model: str, at: datetime) -> MarketRates:
        return self._rates.get((provider, model), "unknown")


def team_cost(
    market_cost: Decimal | None,
    tokens: TokenCounts,
    credential_type: str,
    override: PriceOverride | None,
) -> Decimal | None:
    """What the gateway charges the team; None when it cannot be known (no market price and
    no custom price)."""
    if credential_type == "byok":
        return ZERO
    if override is None:
        return market_cost
    if override.multiplier is not None:
        return None if market_cost is None else market_cost * override.multiplier
    return _custom_rates(override).cost(tokens)


NO_CHARGE: Final = PerMillionRates(ZERO, ZERO, ZERO, ZERO, ZERO, ZERO, ZERO, ZERO)


def team_rates(
    market: PerMillionRates | None, credential_type: str, override: PriceOverride | None
) -> PerMillionRates | None:
    """``team_cost`` as rates, for a linear market price (``market`` None: unknown). With a
    multiplier, ``team_cost`` scales the cost and this scales each rate: the same amount,
    since Decimal multiplies exactly at these magnitudes."""
    if credential_type == "byok":
        return NO_CHARGE
    if override is None:
        return market
    if override.multiplier is not None:
        if market is None:
            return None
        m = override.multiplier
        return PerMillionRates(**{kind: getattr(market, kind) * m for kind in USAGE_KINDS})
    return _custom_rates(override)


def _custom_rates(override: PriceOverride) -> PerMillionRates:
    """A custom price: cache reads and writes at the input price unless it names theirs,
    audio at the text prices, web searches at ``web_search_per_thousand`` (none: free)."""
    input_rate = override.input_per_mtok or ZERO
    write_rate = (
        override.cache_write_per_mtok if override.cache_write_per_mtok is not None else input_rate
    )
    return PerMillionRates.text(
        input=input_rate,
        output=override.output_per_mtok or ZERO,
        cache_read=override.cache_read_per_mtok
        if override.cache_read_per_mtok is not None
        else input_rate,
        cache_write=write_rate,
        web_search=(override.web_search_per_thousand or ZERO) * 1000,
    )
