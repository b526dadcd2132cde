"""``Router.plan``: which routes a request tries, in which order, with which credentials; and
``first_success``, the loop that walks them."""

from __future__ import annotations

import asyncio

import pytest
from starlette.responses import Response

from meterline.common.config import GatewayConfig
from meterline.ingress.credentials import Credential
from meterline.ingress.errors import BadRequest
from meterline.ingress.routing import Route, Router, first_success, should_try_next
from meterline.ingress.tagging import RoutingOptions
from tests.support.events import request_record

CONFIG = GatewayConfig.model_validate(
    {
        "providers": [
            {
                "slug": "openai",
                "base_url": "http://o/v1",
                "api_key_env": "RP_OPENAI",
                "models": ["gpt-4o"],
            },
            {
                "slug": "azure",
                "base_url": "http://a/v1",
                "api_key_env": "RP_AZURE",
                "models": ["gpt-4o"],
            },
            {"slug": "groq", "base_url": "http://g/v1", "models": ["llama-3.3-70b", "gpt-4o"]},
            {
                "slug": "anthropic",
                "wire": "anthropic",
                "base_url": "http://an",
                "api_key_env": "RP_ANTHROPIC",
            },
        ],
        "teams": [
            {"id": "plain"},
            {
                "id": "owns-keys",
                "byok": [
                    {"provider": "openai", "api_key_env": "RP_TEAM_OPENAI_1"},
                    {"provider": "openai", "api_key_env": "RP_TEAM_OPENAI_2"},
                    {"provider": "groq", "api_key_env": "RP_TEAM_GROQ_UNSET"},
                ],
            },
            {
                "id": "byok-only",
                "byok_fallback_to_system": False,
                "byok": [{"provider": "openai", "api_key_env": "RP_TEAM_OPENAI_1"}],
            },
        ],
    }
)
PLAIN, OWNS_KEYS, BYOK_ONLY = CONFIG.teams


@pytest.fixture
def router(monkeypatch: pytest.MonkeyPatch) -> Router:
    for name, value in {
        "RP_OPENAI": "sys-openai",
        "RP_AZURE": "sys-azure",
        "RP_ANTHROPIC": "sys-anthropic",
        "RP_TEAM_OPENAI_1": "team-openai-1",
        "RP_TEAM_OPENAI_2": "team-openai-2",
    }.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("RP_TEAM_GROQ_UNSET", raising=False)
    return Router(CONFIG, wire="openai", translated=("anthropic",))


def steps(routes: list[Route]) -> list[tuple[str, str, str, str | None]]:
    return [(r.provider.slug, r.model, r.credential.type, r.credential.api_key) for r in routes]


def byok(*keys: str) -> list[Credential]:
    return [Credential("byok", key) for key in keys]


def test_without_options_the_named_provider_with_the_system_key(router: Router) -> None:
    assert steps(router.plan("openai/gpt-4o", team=PLAIN)) == [
        ("openai", "gpt-4o", "system", "sys-openai")
    ]
    assert router.resolve("openai/gpt-4o", PLAIN).credential.api_key == "sys-openai"


def test_order_puts_providers_serving_the_model_first(router: Router) -> None:
    routes = router.plan("openai/gpt-4o", RoutingOptions(order=("azure", "groq")), PLAIN)
    assert [r.provider.slug for r in routes] == ["azure", "groq", "openai"]
    # A provider named in ``order`` that does not serve the model is skipped.
    routes = router.plan("groq/llama-3.3-70b", RoutingOptions(order=("azure",)), PLAIN)
    assert [r.provider.slug for r in routes] == ["groq"]


def test_only_restricts_the_providers(router: Router) -> None:
    routes = router.plan("openai/gpt-4o", RoutingOptions(only=("azure", "groq")), PLAIN)
    assert [r.provider.slug for r in routes] == ["azure", "groq"]
    routes = router.plan(
        "openai/gpt-4o", RoutingOptions(only=("azure", "groq"), order=("groq",)), PLAIN
    )
    assert [r.provider.slug for r in routes] == ["groq", "azure"]


def test_only_that_leaves_nothing_is_a_400_naming_it(router: Router) -> None:
    with pytest.raises(BadRequest) as caught:
        router.plan("groq/llama-3.3-70b", RoutingOptions(only=("azure",)), PLAIN)
    assert caught.value.param == "providerOptions.gateway.only"


def test_fallback_models_come_after_the_primary(router: Router) -> None:
    routes = router.plan(
        "openai/gpt-4o",
        RoutingOptions(models=("anthropic/claude-sonnet-4-6", "groq/llama-3.3-70b")),
        PLAIN,
    )
    assert steps(routes) == [
        ("openai", "gpt-4o", "system", "sys-openai"),
        ("anthropic", "claude-sonnet-4-6", "system", "sys-anthropic"),
        ("groq", "llama-3.3-70b", "system", None),
    ]


def test_team_byok_keys_first_then_the_system_key(router: Router) -> None:
    assert steps(router.plan("openai/gpt-4o", team=OWNS_KEYS)) == [
        ("openai", "gpt-4o", "byok", "team-openai-1"),
        ("openai", "gpt-4o", "byok", "team-openai-2"),
        ("openai", "gpt-4o", "system", "sys-openai"),
    ]
    # A BYOK key whose variable is unset is skipped, not sent empty.
    assert steps(router.plan("groq/gpt-4o", team=OWNS_KEYS)) == [("groq", "gpt-4o", "system", None)]
    assert router.resolve("openai/gpt-4o", OWNS_KEYS).credential.api_key == "team-openai-1"


def test_no_system_fallback_when_the_team_says_so(router: Router) -> None:
    assert steps(router.plan("openai/gpt-4o", team=BYOK_ONLY)) == [
        ("openai", "gpt-4o", "byok", "team-openai-1")
    ]
    # Providers without BYOK keys still use the system key.
    assert steps(router.plan("azure/gpt-4o", team=BYOK_ONLY)) == [
        ("azure", "gpt-4o", "system", "sys-azure")
    ]


def test_request_keys_replace_the_team_keys_for_their_provider(router: Router) -> None:
    options = RoutingOptions(byok={"openai": byok("req-1", "req-2")}, order=("openai", "azure"))
    assert steps(router.plan("openai/gpt-4o", options, OWNS_KEYS)) == [
        ("openai", "gpt-4o", "byok", "req-1"),
        ("openai", "gpt-4o", "byok", "req-2"),
        ("openai", "gpt-4o", "system", "sys-openai"),
        ("azure", "gpt-4o", "system", "sys-azure"),
        ("groq", "gpt-4o", "system", None),  # not in ``order``: after those that are
    ]
    assert steps(router.plan("openai/gpt-4o", options, BYOK_ONLY))[:3] == [
        ("openai", "gpt-4o", "byok", "req-1"),
        ("openai", "gpt-4o", "byok", "req-2"),
        ("azure", "gpt-4o", "system", "sys-azure"),
    ]


@pytest.mark.parametrize(
    ("options", "param"),
    [
        (RoutingOptions(order=("nope",)), "providerOptions.gateway.order"),
        (RoutingOptions(only=("nope",)), "providerOptions.gateway.only"),
        (RoutingOptions(byok={"nope": byok("k")}), "providerOptions.gateway.byok"),
        (RoutingOptions(models=("gpt-4o",)), "providerOptions.gateway.models"),
        (RoutingOptions(models=("nope/x",)), "providerOptions.gateway.models"),
    ],
)
def test_unknown_names_are_a_400_naming_the_parameter(
    router: Router, options: RoutingOptions, param: str
) -> None:
    with pytest.raises(BadRequest) as caught:
        router.plan("openai/gpt-4o", options, PLAIN)
    assert caught.value.param == param


def test_no_repr_shows_a_key(router: Router) -> None:
    options = RoutingOptions(byok={"openai": byok("req-secret")})
    text = repr(router.plan("openai/gpt-4o", options, OWNS_KEYS)) + repr(options) + str(options)
    for secret in ("req-secret", "team-openai-1", "sys-openai"):
        assert secret not in text


def test_the_messages_router_does_not_route_to_openai_providers(router: Router) -> None:
    messages = Router(CONFIG, wire="anthropic")
    with pytest.raises(BadRequest) as caught:
        messages.plan("openai/gpt-4o")
    assert "openai wire format" in caught.value.message


def route(slug: str, kind: str = "system") -> Route:
    provider = next(p for p in CONFIG.providers if p.slug == slug)
    return Route(provider, "gpt-4o", Credential(kind, "k"))  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("kind", "status", "expected"),
    [
        ("system", 500, True),
        ("system", 503, True),
        ("system", 429, True),
        ("system", 502, True),
        ("system", 400, False),
        ("system", 401, False),
        ("byok", 401, True),
        ("byok", 403, True),
        ("byok", 400, False),
        ("system", 200, False),
    ],
)
def test_which_answers_give_way(kind: str, status: int, expected: bool) -> None:
    assert should_try_next(route("openai", kind), status) is expected


def test_first_success_stops_at_the_first_answer_worth_giving() -> None:
    statuses = {"openai": 503, "azure": 429, "groq": 200}
    tried: list[str] = []

    async def send(r: Route) -> Response:
        tried.append(r.provider.slug)
        return Response(status_code=statuses[r.provider.slug])

    rec = request_record()
    routes = [route("openai", "byok"), route("azure"), route("groq")]
    response = asyncio.run(first_success(routes, rec, send))
    assert response.status_code == 200 and tried == ["openai", "azure", "groq"]
    assert (rec.provider, rec.credential_type) == ("groq", "system")

    # A 400 is the request's fault: the next route would say the same.
    statuses["openai"] = 400
    tried.clear()
    rec = request_record()
    assert asyncio.run(first_success(routes, rec, send)).status_code == 400
    assert tried == ["openai"] and (rec.provider, rec.credential_type) == ("openai", "byok")

    # The last route's answer is the answer, whatever it is.
    statuses.update(openai=500, azure=500, groq=503)
    assert asyncio.run(first_success(routes, request_record(), send)).status_code == 503
