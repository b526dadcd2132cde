"""``GET /v1/models``: what the gateway can route, from the providers' configured lists."""

from __future__ import annotations

import anthropic
import httpx
import openai
import pytest

from meterline.common.config import GatewayConfig
from meterline.ingress.routers.models import routable
from tests.support.gateway import Gateway

CONFIGURED = [
    "sim/gpt-4o",
    "sim/o4-mini",
    "anthropic/claude-sonnet-4-6",
    "anthropic/claude-haiku-4-5",
]


def test_openai_sdk_lists_the_configured_models(gw: Gateway) -> None:
    client = openai.OpenAI(base_url=f"{gw.url}/v1", api_key=gw.key, max_retries=0)
    models = list(client.models.list())
    # The "down" provider has no model list: it contributes nothing rather than a guess.
    assert [m.id for m in models] == CONFIGURED
    assert {m.id: m.owned_by for m in models}["anthropic/claude-haiku-4-5"] == "anthropic"
    assert client.models.retrieve("sim/o4-mini").id == "sim/o4-mini"
    assert gw.upstream.received == []  # listing never calls a provider


def test_anthropic_sdk_gets_anthropics_list_format(gw: Gateway) -> None:
    client = anthropic.Anthropic(base_url=gw.url, api_key=gw.key, max_retries=0)
    page = client.models.list()
    assert [m.id for m in page.data] == CONFIGURED
    assert page.first_id == CONFIGURED[0] and page.last_id == CONFIGURED[-1]
    assert client.models.retrieve("anthropic/claude-sonnet-4-6").type == "model"


def test_unknown_model_is_a_404_and_a_key_is_required(gw: Gateway) -> None:
    client = openai.OpenAI(base_url=f"{gw.url}/v1", api_key=gw.key, max_retries=0)
    with pytest.raises(openai.NotFoundError) as caught:
        client.models.retrieve("sim/not-listed")
    assert caught.value.code == "model_not_found"
    response = httpx.get(f"{gw.url}/v1/models")
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "invalid_api_key"


def test_repeated_names_are_listed_once_in_configuration_order() -> None:
    config = GatewayConfig.model_validate(
        {
            "providers": [
                {"slug": "b", "base_url": "http://b", "models": ["m2", "m1", "m2"]},
                {"slug": "a", "base_url": "http://a", "models": ["m1"]},
                {"slug": "c", "base_url": "http://c"},
            ]
        }
    )
    assert routable(config) == [("b/m2", "b"), ("b/m1", "b"), ("a/m1", "a")]
