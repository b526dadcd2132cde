"""``GET /v3/ai/config``: the AI SDK gateway provider's model list, from the providers'
configured models, priced per token by genai-prices (checked here against genai-prices'
own ``calc_price``), behind the gateway key, and never holding up the event loop while the
price list loads."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from genai_prices import Usage, calc_price

from meterline.common.config import GatewayConfig, hash_key, new_key
from meterline.common.pricing import GenaiPrices, PriceSource
from meterline.ingress.app import create_app
from meterline.ingress.publishing.memory import MemoryPublisher
from meterline.ingress.route_prices import ListPrices
from meterline.ingress.settings import IngressSettings
from tests.support.gateway import ServerThread

KEY = new_key()
CONFIG = GatewayConfig.model_validate(
    {
        "providers": [
            {"slug": "openai", "base_url": "http://openai.invalid/v1", "models": ["gpt-4o"]},
            {
                "slug": "anthropic",
                "wire": "anthropic",
                "base_url": "http://anthropic.invalid",
                "models": ["claude-sonnet-4-6", "claude-haiku-4-5"],
            },
            # A self-hosted server of a model genai-prices knows under another provider.
            {
                "slug": "vllm",
                "base_url": "http://vllm.invalid/v1",
                "prices_as": "openai",
                "models": ["gpt-4o-mini", "mystery-7b"],
            },
            # Tiered by prompt size: no price per token.
            {"slug": "google", "base_url": "http://google.invalid", "models": ["gemini-2.5-pro"]},
            {"slug": "unlisted", "base_url": "http://unlisted.invalid/v1"},
        ],
        "teams": [{"id": "acme", "keys": [{"name": "sdk", "sha256": hash_key(KEY)}]}],
    }
)
# (id, provider, model, genai-prices provider or None when unpriced)
LISTED = [
    ("openai/gpt-4o", "openai", "gpt-4o", "openai"),
    ("anthropic/claude-sonnet-4-6", "anthropic", "claude-sonnet-4-6", "anthropic"),
    ("anthropic/claude-haiku-4-5", "anthropic", "claude-haiku-4-5", "anthropic"),
    ("vllm/gpt-4o-mini", "vllm", "gpt-4o-mini", "openai"),
    ("vllm/mystery-7b", "vllm", "mystery-7b", None),
    ("google/gemini-2.5-pro", "google", "gemini-2.5-pro", None),
]
MILLION = 1_000_000


def per_token(model: str, provider: str, **counts: int) -> Decimal:
    """genai-prices' price of a million tokens of one kind, per token."""
    price = calc_price(Usage(**counts), model_ref=model, provider_id=provider)
    return Decimal(price.total_price) / MILLION


def expected_entry(model_id: str, slug: str, model: str, priced_as: str | None) -> Any:
    pricing = None
    if priced_as is not None:
        pricing = {
            "input": per_token(model, priced_as, input_tokens=MILLION),
            "output": per_token(model, priced_as, output_tokens=MILLION),
            "input_cache_read": per_token(
                model, priced_as, input_tokens=MILLION, cache_read_tokens=MILLION
            ),
            "input_cache_write": per_token(
                model, priced_as, input_tokens=MILLION, cache_write_tokens=MILLION
            ),
        }
    return {
        "id": model_id,
        "name": model_id,
        "description": None,
        "pricing": pricing,
        "specification": {"specificationVersion": "v3", "provider": slug, "modelId": model},
        "modelType": "language",
    }


def as_decimals(entry: dict[str, Any]) -> dict[str, Any]:
    pricing = entry["pricing"]
    if pricing is None:
        return entry
    assert all(isinstance(v, str) and "e" not in v.lower() for v in pricing.values()), pricing
    return {**entry, "pricing": {k: Decimal(v) for k, v in pricing.items()}}


@pytest.fixture
def client() -> Iterator[TestClient]:
    with TestClient(create_app(IngressSettings(), CONFIG, MemoryPublisher())) as served:
        yield served


def test_lists_the_configured_models_at_genai_prices_per_token(client: TestClient) -> None:
    # The first request of the process: the price list is not loaded yet, and is waited for.
    response = client.get("/v3/ai/config", headers={"Authorization": f"Bearer {KEY}"})
    assert response.status_code == 200, response.text
    models = response.json()["models"]
    assert [as_decimals(m) for m in models] == [expected_entry(*listed) for listed in LISTED]
    # The same models, in the same order, as GET /v1/models.
    listed = client.get("/v1/models", headers={"Authorization": f"Bearer {KEY}"}).json()
    assert [m["id"] for m in models] == [m["id"] for m in listed["data"]]
    # Cache reads cost less than fresh input, where genai-prices says so.
    sonnet = as_decimals(models[1])["pricing"]
    assert sonnet["input_cache_read"] < sonnet["input"] < sonnet["input_cache_write"]


@pytest.mark.parametrize("authorization", [None, "Bearer ml_not_a_key", "Basic abc"])
def test_a_missing_or_wrong_key_is_the_gateway_providers_authentication_error(
    client: TestClient, authorization: str | None
) -> None:
    headers = {"Authorization": authorization} if authorization else {}
    response = client.get("/v3/ai/config", headers=headers)
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"
    error = response.json()["error"]
    assert error["type"] == "authentication_error"
    assert error["message"]


def test_the_event_loop_serves_requests_while_the_price_list_loads(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    loading, release = threading.Event(), threading.Event()

    def slow_load() -> PriceSource:
        loading.set()
        assert release.wait(30), "never released"
        return GenaiPrices(CONFIG.price_aliases())

    monkeypatch.setattr(ListPrices, "from_config", classmethod(lambda cls, _: cls(slow_load)))
    app = create_app(IngressSettings(), CONFIG, MemoryPublisher())
    with ServerThread(app) as server, ThreadPoolExecutor(1) as pool:
        listing = pool.submit(
            httpx.get,
            f"{server.url}/v3/ai/config",
            headers={"Authorization": f"Bearer {KEY}"},
            timeout=30,
        )
        # While the listing waits for the price list, the gateway answers.
        assert loading.wait(10)
        for _ in range(3):
            assert httpx.get(f"{server.url}/healthz", timeout=2).status_code == 200
        assert not listing.done()
        release.set()
        response = listing.result(timeout=30)
    assert response.status_code == 200
    models = response.json()["models"]
    assert [as_decimals(m) for m in models] == [expected_entry(*listed) for listed in LISTED]
