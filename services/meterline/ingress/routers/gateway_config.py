"""``GET /v3/ai/config``: the models the AI SDK's gateway provider may ask for
(``getAvailableModels()`` with ``baseURL`` ``…/v3/ai``), in the shape it parses: every
configured ``provider/model`` (the list ``GET /v1/models`` gives), with its list price.

``pricing`` is genai-prices' list price now (with the provider's ``prices_as``), in USD per
token as decimal strings: input, output, cache reads and cache writes (the 5-minute ones),
the rates the consumer prices a request with before the team's overrides. A model whose
price is unknown, or tiered by the prompt's size, has ``pricing: null``; so has every model
when the price list could not be read. ``specification`` names the provider as configured
and the model as that provider calls it, like the report's ``provider`` and ``model``.

A missing or wrong gateway key is a 401 in the gateway provider's error format, which the
SDK raises as ``GatewayAuthenticationError``."""

from __future__ import annotations

import asyncio
import json
import logging
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, Final

from fastapi import APIRouter, Request
from starlette.responses import Response

from meterline.common.config import GatewayConfig
from meterline.common.pricing import MILLION, MarketRates, PerMillionRates
from meterline.ingress.deps import authenticate, gateway_of
from meterline.ingress.errors import Unauthorized, error_response
from meterline.ingress.route_prices import ListPrices
from meterline.ingress.routers.models import routable

log = logging.getLogger(__name__)

router = APIRouter()

PRICE_LIST_WAIT_SECONDS: Final = 30.0
"""How long a listing waits for the price list to load (it takes about half a second)."""


async def gateway_config(request: Request) -> Response:
    gateway = gateway_of(request)
    try:
        authenticate(request, gateway)
    except Unauthorized as error:
        return error_response(
            error.status,
            error.message,
            "authentication_error",
            code=error.code,
            headers={"www-authenticate": "Bearer"},
        )
    # The price list loads in a thread of its own, and each model's price takes
    # milliseconds to resolve the first time in an hour: both are waited for in a worker
    # thread, so the event loop goes on serving requests meanwhile.
    listing = await asyncio.to_thread(
        _listing, gateway.config, gateway.responses_router.prices, datetime.now(UTC)
    )
    return Response(json.dumps(listing).encode(), media_type="application/json")


def _listing(config: GatewayConfig, prices: ListPrices, now: datetime) -> dict[str, Any]:
    if not prices.wait_loaded(PRICE_LIST_WAIT_SECONDS):
        log.warning("no price list: GET /v3/ai/config lists the models without prices")
    models = []
    for model_id, slug in routable(config):
        model = model_id.removeprefix(f"{slug}/")
        models.append(
            {
                "id": model_id,
                "name": model_id,
                "description": None,
                "pricing": _pricing(prices.rates(slug, model, now)),
                "specification": {
                    "specificationVersion": "v3",
                    "provider": slug,
                    "modelId": model,
                },
                "modelType": "language",
            }
        )
    return {"models": models}


def _pricing(rates: MarketRates | None) -> dict[str, str] | None:
    if not isinstance(rates, PerMillionRates):
        return None
    return {
        "input": _per_token(rates.input),
        "output": _per_token(rates.output),
        "input_cache_read": _per_token(rates.cache_read),
        "input_cache_write": _per_token(rates.cache_write),
    }


def _per_token(per_million: Decimal) -> str:
    # Positional notation, exactly: str() would write 2.5E-6.
    text = format(per_million / MILLION, "f")
    return text.rstrip("0").rstrip(".") if "." in text else text


router.add_route("/v3/ai/config", gateway_config, methods=["GET"])
