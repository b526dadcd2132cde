"""``GET /v1/models``: the models the gateway can route, as ``provider/model`` ids.

Only what the configuration lists (each provider's ``models``): a provider without a list
contributes nothing rather than a guess, although requests for its models are still
forwarded. OpenAI's list format by default; Anthropic's (``data``, ``has_more``,
``first_id``, ``last_id``) when the request carries ``anthropic-version``, which is what the
Anthropic SDK sends."""

from __future__ import annotations

import json
from typing import Any, Final

from fastapi import APIRouter, Request
from starlette.responses import Response

from meterline.common.config import GatewayConfig
from meterline.ingress.deps import gateway_of
from meterline.ingress.errors import GatewayError
from meterline.ingress.routers.messages import authenticate_anthropic

router = APIRouter()

CREATED: Final = 0
"""Model entries need a creation time; the gateway does not know one, and a fixed value keeps
the listing stable."""


class ModelNotFound(GatewayError):
    status = 404
    type = "invalid_request_error"


def routable(config: GatewayConfig) -> list[tuple[str, str]]:
    """(``provider/model`` id, provider slug), in configuration order, without repeats."""
    seen: dict[str, str] = {}
    for provider in config.providers:
        for model in provider.models:
            seen.setdefault(f"{provider.slug}/{model}", provider.slug)
    return list(seen.items())


def _openai_entry(model_id: str, slug: str) -> dict[str, Any]:
    return {"id": model_id, "object": "model", "created": CREATED, "owned_by": slug}


def _anthropic_entry(model_id: str) -> dict[str, Any]:
    return {
        "type": "model",
        "id": model_id,
        "display_name": model_id,
        "created_at": "1970-01-01T00:00:00Z",
    }


def _json(value: object) -> Response:
    return Response(json.dumps(value).encode(), media_type="application/json")


async def list_models(request: Request) -> Response:
    gateway = gateway_of(request)
    authenticate_anthropic(request, gateway)
    models = routable(gateway.config)
    if request.headers.get("anthropic-version"):
        data = [_anthropic_entry(model_id) for model_id, _ in models]
        return _json(
            {
                "data": data,
                "has_more": False,
                "first_id": data[0]["id"] if data else None,
                "last_id": data[-1]["id"] if data else None,
            }
        )
    return _json(
        {"object": "list", "data": [_openai_entry(model_id, slug) for model_id, slug in models]}
    )


async def retrieve_model(request: Request) -> Response:
    gateway = gateway_of(request)
    authenticate_anthropic(request, gateway)
    wanted = request.path_params["model_id"]
    for model_id, slug in routable(gateway.config):
        if model_id == wanted:
            if request.headers.get("anthropic-version"):
                return _json(_anthropic_entry(model_id))
            return _json(_openai_entry(model_id, slug))
    raise ModelNotFound(
        f"the model {wanted!r} is not in the gateway's model list",
        param="model",
        code="model_not_found",
    )


router.add_route("/v1/models", list_models, methods=["GET"])
# Model ids contain a slash (provider/model), hence the path converter.
router.add_route("/v1/models/{model_id:path}", retrieve_model, methods=["GET"])
