"""``GET /v1/generation?id=<event id>``: one request's facts and computed costs, so a
report row can be reconciled with the requests behind it. Team-scoped: another team's id is
a 404, exactly like an id that does not exist.

The body has the request's fields at the top level, and again under ``data`` together with
the fields the AI SDK's gateway provider reads (``getGenerationInfo()``, whose schema reads
``data`` only and drops the keys it does not know). Where both name a field (``id``,
``total_cost``, ``model``, ``streamed``, ``finish_reason``) it has one value."""

from __future__ import annotations

import json
from datetime import datetime
from decimal import Decimal
from typing import Any
from uuid import UUID

from fastapi import APIRouter, Request, Response

from meterline.query.builders import build_generation_query
from meterline.query.deps import AuthenticatedTeam, WarehouseDep
from meterline.query.errors import BadParameter, NotFound, error_responses
from meterline.query.render import to_json

router = APIRouter()


@router.get(
    "/v1/generation",
    responses={
        200: {
            "description": "the request's facts and costs; under data, again, with the"
            " fields of the AI SDK gateway provider's generation info",
            "content": {
                "application/json": {
                    "schema": {
                        "type": "object",
                        "required": ["id", "data"],
                        "properties": {"data": {"type": "object"}},
                    }
                }
            },
        },
        **error_responses(400, 401, 404, 503),
    },
    # For the OpenAPI description: the handler reads ``id`` itself (400 naming it).
    openapi_extra={
        "parameters": [
            {
                "name": "id",
                "in": "query",
                "required": True,
                "schema": {"type": "string", "format": "uuid"},
                "description": "the event id (the response header of the proxied request)",
            }
        ]
    },
)
async def generation(
    request: Request, team: AuthenticatedTeam, warehouse: WarehouseDep
) -> Response:
    for name in request.query_params:
        if name != "id":
            raise BadParameter(name, "unknown parameter")
    values = request.query_params.getlist("id")
    if len(values) != 1 or not values[0]:
        raise BadParameter("id", "required, exactly once: the event id of one request")
    try:
        event_id = UUID(values[0])
    except ValueError:
        raise BadParameter("id", f"{values[0]!r} is not an event id (a UUID)") from None

    columns, rows = await warehouse.query(build_generation_query(team.id, event_id))
    if not rows:
        raise NotFound(f"no generation with id {event_id} for this team")
    facts = dict(zip(columns, rows[0], strict=True))
    body = _body(facts)
    return Response(
        to_json({**body, "data": {**body, **_gateway_fields(facts)}}),
        media_type="application/json",
    )


def _gateway_fields(facts: dict[str, Any]) -> dict[str, Any]:
    byok = facts["credential_type"] == "byok"
    first_token = facts["time_to_first_token_ms"]
    return {
        "total_cost": facts["total_cost"],
        # What the provider bills the key's owner; the gateway's own keys are paid through
        # total_cost, so nothing is upstream of it.
        "upstream_inference_cost": facts["market_cost"] if byok else Decimal(0),
        "usage": facts["total_cost"],
        "created_at": _utc_text(facts["started_at"]),
        "model": facts["model"],
        "is_byok": byok,
        "provider_name": facts["provider"],
        "streamed": facts["streamed"],
        "finish_reason": facts["finish_reason"],
        # An answer that was not streamed has its first token when it is all there.
        "latency": facts["duration_ms"] if first_token is None else first_token,
        "generation_time": facts["duration_ms"],
        # In Meterline's convention: the prompt counts the cache reads and writes, the
        # completion the reasoning.
        "native_tokens_prompt": facts["input_tokens"],
        "native_tokens_completion": facts["output_tokens"],
        "native_tokens_reasoning": facts["reasoning_tokens"],
        "native_tokens_cached": facts["cached_input_tokens"],
        "native_tokens_cache_creation": facts["cache_creation_input_tokens"],
        "billable_web_search_calls": facts["web_search_requests"],
    }


def _body(facts: dict[str, Any]) -> dict[str, Any]:
    facts = dict(facts)
    body: dict[str, Any] = {"id": str(facts.pop("event_id"))}
    for name, value in facts.items():
        if name == "user_id":
            body["user"] = value or None
        elif name == "tags":
            body["tags"] = list(value)
        elif name == "raw_usage":
            body["provider_usage"] = _json_or_text(value)
        elif isinstance(value, datetime):
            body[name] = _utc_text(value)
        else:
            body[name] = value
    return body


def _utc_text(value: datetime) -> str:
    # The columns are UTC; written with millisecond precision and a Z, like the event.
    return value.strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}Z"


def _json_or_text(value: str) -> Any:
    if not value:
        return None
    try:
        return json.loads(value)
    except ValueError:
        return value
