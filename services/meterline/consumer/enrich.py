"""Prices for the write: an event's price and its raw-table row, or the rates of every
event of one price key.

Prices come from a PriceSource at the time the request started (price history matters);
the team's override applies to system credentials only; BYOK costs the team nothing."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from operator import attrgetter
from typing import Any, Final

from meterline.common import usage_row
from meterline.common.config import GatewayConfig, PriceOverride
from meterline.common.events import UsageEvent
from meterline.common.pricing import (
    NO_CHARGE,
    TOKEN_FIELDS,
    ZERO,
    PerMillionRates,
    PriceSource,
    TokenCounts,
    quantize_money,
    team_cost,
    team_rates,
)
from meterline.common.usage_row import Costs

MAX_CACHED_DEALS: Final = 100_000

# The event's token counts go by TokenCounts' names.
_token_counts: Final = attrgetter(*TOKEN_FIELDS)


@dataclass(frozen=True, slots=True)
class KeyRates:
    """How every event of one (team, provider, model, hour, credential type) is priced,
    when its price is linear in the tokens: the raw table's costs are ``market.cost`` and
    ``charged.cost`` of the event's tokens, rounded to the money quantum."""

    market: PerMillionRates
    charged: PerMillionRates
    price_known: bool
    price_source: str


class Enricher:
    def __init__(self, prices: PriceSource, config: GatewayConfig):
        self._prices = prices
        self._config = config
        # Per (team, provider, model): the team's override and the price source's name.
        # Looking them up walks the config's lists, which costs more than pricing the event.
        self._deals: dict[tuple[str, str, str], tuple[PriceOverride | None, str]] = {}

    def _deal(self, team_id: str, provider: str, model: str) -> tuple[PriceOverride | None, str]:
        key = (team_id, provider, model)
        deal = self._deals.get(key)
        if deal is None:
            if len(self._deals) >= MAX_CACHED_DEALS:
                self._deals.clear()
            team = self._config.team(team_id)
            override = team.price_override(provider, model) if team else None
            source = self._prices.name if override is None else f"{self._prices.name} + override"
            deal = self._deals[key] = (override, source)
        return deal

    def costs(
        self,
        team_id: str,
        provider: str,
        model: str,
        started_at: datetime,
        credential_type: str,
        tokens: TokenCounts,
    ) -> Costs:
        market = self._prices.market_cost(provider, model, started_at, tokens)
        override, source = self._deal(team_id, provider, model)
        charged = team_cost(market, tokens, credential_type, override)
        price_known = market is not None and charged is not None
        return Costs(
            quantize_money(market) if market is not None else ZERO,
            quantize_money(charged) if charged is not None else ZERO,
            price_known,
            source if price_known else "unknown",
        )

    def key_rates(
        self, team_id: str, provider: str, model: str, hour: datetime, credential_type: str
    ) -> KeyRates | None:
        """The rates ``costs`` applies to every event of this key; None when the price is
        not linear (long-context tiers), and each event must go through ``costs``."""
        market = self._prices.market_rates(provider, model, hour)
        if market == "tiered":
            return None
        known_market = None if market == "unknown" else market
        override, source = self._deal(team_id, provider, model)
        charged = team_rates(known_market, credential_type, override)
        price_known = known_market is not None and charged is not None
        return KeyRates(
            known_market or NO_CHARGE,
            charged or NO_CHARGE,
            price_known,
            source if price_known else "unknown",
        )

    def row(self, event: UsageEvent) -> list[Any]:
        """The event's raw-table row (``usage_row.COLUMNS``), priced."""
        costs = self.costs(
            event.team_id,
            event.provider,
            event.model,
            event.started_at,
            event.credential_type,
            TokenCounts(*_token_counts(event)),
        )
        return usage_row.row(event, costs)
