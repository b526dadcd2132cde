"""List prices for ``sort: "price"`` (``routing.py``): one number per provider and model to
rank routes by. The ingress still prices no event; the consumer does.

The number is the per-million input rate plus the per-million output rate, from the same
genai-prices snapshot and provider aliases (``prices_as``) the consumer prices with. One
number, because a ranking needs one; the plain sum, because it needs no guess at how a
request splits into input and output tokens. Cache rates do not count: whether a prompt is
cached depends on the provider's cache, not on its price list. It is the list price: a
team's price overrides and BYOK do not change the order. A model whose price is unknown or
tiered (long-context prices depend on the prompt's size) has no number.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal

from meterline.common.config import GatewayConfig
from meterline.common.pricing import GenaiPrices, PerMillionRates, PriceSource

SECONDS_PER_DAY = 86_400


class ListPrices:
    """The blended list price of routes, looked up once a day per provider and model.

    The price source is loaded on the first lookup (genai-prices' snapshot takes about half
    a second to read), so a gateway whose requests never sort by price never loads it; after
    that it is the one source of the process. Callers ask only about routes they compare,
    which are configured providers and model names (``Router`` ranks only when more than one
    provider lists the name), so the cache stays as small as the configuration."""

    def __init__(self, load: Callable[[], PriceSource]) -> None:
        self._load = load
        self._source: PriceSource | None = None
        self._blended: dict[tuple[str, str], tuple[int, Decimal | None]] = {}

    @classmethod
    def from_config(cls, config: GatewayConfig) -> ListPrices:
        return cls(lambda: GenaiPrices(config.price_aliases()))

    def blended(self, provider: str, model: str, now: datetime) -> Decimal | None:
        """Input plus output USD per million tokens at list price; None: unknown or tiered."""
        day = int(now.timestamp()) // SECONDS_PER_DAY
        cached = self._blended.get((provider, model))
        if cached is not None and cached[0] == day:
            return cached[1]
        if self._source is None:
            self._source = self._load()
        # Asked at the start of the day: genai-prices' price changes fall on day boundaries,
        # and its own cache keeps one entry per hour asked about.
        start = datetime.fromtimestamp(day * SECONDS_PER_DAY, tz=UTC)
        rates = self._source.market_rates(provider, model, start)
        value = rates.input + rates.output if isinstance(rates, PerMillionRates) else None
        self._blended[(provider, model)] = (day, value)
        return value
