"""Step 2: price the event and turn it into a raw-table row.

Prices come from a PriceSource at the time the request started (price history matters);
the team's override applies to system credentials only; BYOK costs the team nothing."""

from __future__ import annotations

from typing import Any, Final

from meterline.common.config import GatewayConfig, PriceOverride
from meterline.common.events import UsageEvent
from meterline.common.pricing import (
    ZERO,
    PriceSource,
    TokenCounts,
    quantize_money,
    team_cost,
)

MAX_CACHED_DEALS: Final = 100_000


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

    def row(self, event: UsageEvent) -> list[Any]:
        tokens = TokenCounts(
            input_tokens=event.input_tokens,
            output_tokens=event.output_tokens,
            cached_input_tokens=event.cached_input_tokens,
            cache_creation_input_tokens=event.cache_creation_input_tokens,
            cache_creation_1h_input_tokens=event.cache_creation_1h_input_tokens,
            reasoning_tokens=event.reasoning_tokens,
        )
        market = self._prices.market_cost(event.provider, event.model, event.started_at, tokens)
        override, source = self._deal(event.team_id, event.provider, event.model)
        charged = team_cost(market, tokens, event.credential_type, override)
        price_known = market is not None and charged is not None
        return [
            event.event_id,
            event.team_id,
            event.api_key_name,
            event.api_surface,
            event.started_at,
            event.duration_ms,
            event.time_to_first_token_ms,
            event.user_id or "",
            sorted(set(event.tags)),
            event.model_requested,
            event.model,
            event.provider,
            event.credential_type,
            event.streamed,
            event.status,
            event.http_status,
            event.finish_reason or "",
            event.error_type or "",
            event.input_tokens,
            event.output_tokens,
            event.cached_input_tokens,
            event.cache_creation_input_tokens,
            event.cache_creation_1h_input_tokens,
            event.reasoning_tokens,
            quantize_money(market) if market is not None else ZERO,
            quantize_money(charged) if charged is not None else ZERO,
            price_known,
            source if price_known else "unknown",
            event.raw_usage,
        ]
