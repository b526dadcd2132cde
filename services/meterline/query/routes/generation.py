"""``GET /v1/generation?id=<event id>``: one request's facts and computed costs, so a
report row can be reconciled with the requests behind it. Team-scoped: another team's id is
a 404, exactly like an id that does not exist."""

from __future__ import annotations

import json
from datetime import datetime
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
            "description": "the request's facts and costs",
            "content": {"application/json": {"schema": {"type": "object"}}},
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
    return Response(to_json(_body(facts)), media_type="application/json")


def _body(facts: dict[str, Any]) -> dict[str, Any]:
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
