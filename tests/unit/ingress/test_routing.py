"""``provider/model`` routing for the Chat Completions surface."""

from __future__ import annotations

import pytest

from meterline.common.config import GatewayConfig
from meterline.ingress.errors import BadRequest
from meterline.ingress.routing import Router

CONFIG = GatewayConfig.model_validate(
    {
        "providers": [
            {"slug": "openai", "base_url": "https://api.openai.com/v1", "api_key_env": "RT_KEY"},
            {"slug": "openrouter", "base_url": "https://openrouter.ai/api/v1"},
            {"slug": "anthropic", "wire": "anthropic", "base_url": "https://api.anthropic.com"},
        ]
    }
)


@pytest.fixture
def router(monkeypatch: pytest.MonkeyPatch) -> Router:
    monkeypatch.setenv("RT_KEY", "sk-from-env")
    return Router(CONFIG, wire="openai")


def test_provider_prefix_selects_the_provider_and_is_stripped(router: Router) -> None:
    route = router.resolve("openai/gpt-4o")
    assert (route.provider.slug, route.model) == ("openai", "gpt-4o")
    assert (route.credential.type, route.credential.api_key) == ("system", "sk-from-env")


def test_model_names_may_contain_slashes(router: Router) -> None:
    route = router.resolve("openrouter/meta-llama/llama-3.1-8b")
    assert (route.provider.slug, route.model) == ("openrouter", "meta-llama/llama-3.1-8b")
    assert route.credential.api_key is None


def test_the_key_never_shows_in_a_repr(router: Router) -> None:
    assert "sk-from-env" not in repr(router.resolve("openai/gpt-4o"))


@pytest.mark.parametrize("model", ["gpt-4o", "/gpt-4o", "openai/", ""])
def test_a_model_without_a_provider_is_a_400_listing_the_providers(
    router: Router, model: str
) -> None:
    with pytest.raises(BadRequest) as caught:
        router.resolve(model)
    assert "'provider/model'" in caught.value.message
    assert "openai, openrouter" in caught.value.message
    assert caught.value.param == "model"


def test_an_unknown_provider_is_a_400_listing_the_providers(router: Router) -> None:
    with pytest.raises(BadRequest) as caught:
        router.resolve("mistral/large")
    assert "unknown provider 'mistral'" in caught.value.message
    assert "routable providers: openai, openrouter" in caught.value.message


def test_a_provider_of_another_wire_format_is_not_routable(router: Router) -> None:
    with pytest.raises(BadRequest) as caught:
        router.resolve("anthropic/claude-sonnet-4-5")
    assert "anthropic wire format" in caught.value.message
    assert router.slugs == ["openai", "openrouter"]
