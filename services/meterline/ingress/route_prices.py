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

import logging
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal

from meterline.common.config import GatewayConfig
from meterline.common.pricing import (
    GenaiPrices,
    MarketRates,
    PerMillionRates,
    PriceSource,
    TokenCounts,
)

SECONDS_PER_DAY = 86_400

log = logging.getLogger("meterline.ingress.routing")


class ListPrices:
    """The blended list price of routes, looked up once a day per provider and model.

    The price source is loaded on the first lookup, in a thread of its own: genai-prices'
    snapshot takes about half a second to read, which must not stall the event loop and
    every request on it. Until it is loaded no route has a price, so the first requests that
    sort by price keep the configuration order. A gateway whose requests never sort by price
    never loads it. Callers ask only about routes they compare, which are configured
    providers and model names (``Router`` ranks only when more than one provider lists the
    name), so the cache stays as small as the configuration."""

    def __init__(self, load: Callable[[], PriceSource]) -> None:
        self._load = load
        self._source: PriceSource | None = None
        self._loader: threading.Thread | None = None
        self._day_rates: dict[tuple[str, str], tuple[int, MarketRates]] = {}

    def ready(self) -> bool:
        """Whether the price source is loaded; starts loading it when it is not."""
        if self._source is None:
            self._start_loading()
            return False
        return True

    def wait_loaded(self, timeout: float | None = None) -> bool:
        """Start loading the price source if need be and wait for it; whether it is loaded."""
        self._start_loading()
        assert self._loader is not None
        self._loader.join(timeout)
        return self._source is not None

    def _start_loading(self) -> None:
        if self._loader is None:
            self._loader = threading.Thread(
                target=self._load_source, name="meterline-list-prices", daemon=True
            )
            self._loader.start()

    def _load_source(self) -> None:
        try:
            self._source = self._load()
        except Exception:  # a price list that cannot be read leaves every route unpriced
            log.exception("the price list for sort: price could not be loaded")

    @classmethod
    def from_config(cls, config: GatewayConfig) -> ListPrices:
        return cls(lambda: GenaiPrices(config.price_aliases()))

    def rates(self, provider: str, model: str, at: datetime) -> MarketRates | None:
        """The list price's rates at ``at``; None until the price source is loaded. Resolving
        a model's price the first time in an hour costs milliseconds: call it off the event
        loop for more than a few models."""
        source = self._source
        return None if source is None else source.market_rates(provider, model, at)

    def day_rates(self, provider: str, model: str, now: datetime) -> MarketRates | None:
        """The list price's rates at the start of ``now``'s day, cached for the day: cheap
        enough for the request path once a model was asked about. None until the price
        source is loaded."""
        day = int(now.timestamp()) // SECONDS_PER_DAY
        cached = self._day_rates.get((provider, model))
        if cached is not None and cached[0] == day:
            return cached[1]
        if self._source is None:
            self._start_loading()
            return None
        # Asked at the start of the day: genai-prices' price changes fall on day boundaries,
        # and its own cache keeps one entry per hour asked about.
        start = datetime.fromtimestamp(day * SECONDS_PER_DAY, tz=UTC)
        rates = self._source.market_rates(provider, model, start)
        self._day_rates[(provider, model)] = (day, rates)
        return rates

    def market_cost(
        self, provider: str, model: str, at: datetime, tokens: TokenCounts
    ) -> Decimal | None:
        """The list price of ``tokens`` (for prices tiered by the prompt's size); None:
        unknown, or the price source is not loaded."""
        source = self._source
        return None if source is None else source.market_cost(provider, model, at, tokens)

    def blended(self, provider: str, model: str, now: datetime) -> Decimal | None:
        """Input plus output USD per million tokens at list price; None: unknown or tiered."""
        rates = self.day_rates(provider, model, now)
        return rates.input + rates.output if isinstance(rates, PerMillionRates) else None
