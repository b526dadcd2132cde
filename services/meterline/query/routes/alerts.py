"""``GET /v1/alerts``: the team's alerts (budget thresholds, budget resets, spikes), newest
first, each with its delivery to each webhook. Team-scoped by the gateway key like every
query route. Parameters: ``kind`` (comma-separated kinds), ``since`` (a date, or a date and
time, UTC unless it names an offset), ``limit`` (default 100, at most 1000)."""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any, Final

from fastapi import APIRouter, Request, Response

from meterline.common.alerts.model import KINDS, alert_fields, utc_text
from meterline.common.alerts.store import Delivery, alert_from_row, delivery_from_row
from meterline.query.builders import build_alert_deliveries_query, build_alerts_query
from meterline.query.deps import AuthenticatedTeam, WarehouseDep
from meterline.query.errors import BadParameter, error_responses
from meterline.query.render import to_json

router = APIRouter()

DEFAULT_LIMIT: Final = 100
MAX_LIMIT: Final = 1000
"""Alerts are a handful per budget and period: a page of a thousand is months of them."""
PARAMETERS: Final = ("kind", "since", "limit")
_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)

_NULLABLE_TEXT = {"type": ["string", "null"]}
ALERT_SCHEMA: Final[dict[str, Any]] = {
    "type": "object",
    "required": [
        "alert_id",
        "team_id",
        "kind",
        "subject",
        "scope",
        "period_start",
        "spend_usd",
        "message",
        "raised_at",
        "deliveries",
    ],
    "properties": {
        "alert_id": {"type": "string", "description": "the Meterline-Idempotency-Key"},
        "kind": {"type": "string", "enum": list(KINDS)},
        "scope": {"type": "array", "items": {"type": "object"}},
        "threshold_percent": {"type": ["integer", "null"]},
        "spend_usd": {"type": "string", "description": "USD, a decimal number as text"},
        "limit_usd": _NULLABLE_TEXT,
        "baseline_usd": _NULLABLE_TEXT,
        "deliveries": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["webhook", "status", "attempts"],
                "properties": {
                    "status": {"type": "string", "enum": ["pending", "delivered", "failed"]},
                    "attempts": {"type": "integer"},
                },
            },
        },
    },
}


@router.get(
    "/v1/alerts",
    responses={
        200: {
            "description": "the team's alerts, newest first",
            "content": {
                "application/json": {
                    "schema": {
                        "type": "object",
                        "required": ["results"],
                        "properties": {"results": {"type": "array", "items": ALERT_SCHEMA}},
                    }
                }
            },
        },
        **error_responses(400, 401, 503),
    },
    # For the OpenAPI description: the handler reads the query string itself (400s naming
    # the parameter).
    openapi_extra={
        "parameters": [
            {
                "name": "kind",
                "in": "query",
                "schema": {"type": "string"},
                "description": f"comma-separated: {', '.join(KINDS)}",
            },
            {
                "name": "since",
                "in": "query",
                "schema": {"type": "string"},
                "description": "raised at or after: a date, or a date and time (UTC unless"
                " it names an offset)",
            },
            {
                "name": "limit",
                "in": "query",
                "schema": {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT},
                "description": f"at most this many, default {DEFAULT_LIMIT}",
            },
        ]
    },
)
async def alerts(request: Request, team: AuthenticatedTeam, warehouse: WarehouseDep) -> Response:
    values: dict[str, str] = {}
    for name in request.query_params:
        if name not in PARAMETERS:
            raise BadParameter(name, f"unknown parameter; /v1/alerts takes {', '.join(PARAMETERS)}")
        given = request.query_params.getlist(name)
        if len(given) != 1:
            raise BadParameter(name, "give it once")
        values[name] = given[0]
    kinds = _kinds(values.get("kind"))
    since = _since(values.get("since"))
    limit = _limit(values.get("limit"))

    columns, rows = await warehouse.query(build_alerts_query(team.id, kinds, since, limit))
    found = [alert_from_row(dict(zip(columns, row, strict=True))) for row in rows]
    deliveries: dict[str, list[Delivery]] = {}
    if found:
        built = build_alert_deliveries_query(team.id, [a.alert_id for a in found])
        columns, rows = await warehouse.query(built)
        for row in rows:
            delivery = delivery_from_row(dict(zip(columns, row, strict=True)))
            deliveries.setdefault(delivery.alert_id, []).append(delivery)
    results = [
        {**alert_fields(a), "deliveries": [_delivery(d) for d in deliveries.get(a.alert_id, [])]}
        for a in found
    ]
    return Response(to_json({"results": results}), media_type="application/json")


def _kinds(value: str | None) -> list[str]:
    if value is None:
        return []
    kinds = [kind.strip() for kind in value.split(",")]
    for kind in kinds:
        if kind not in KINDS:
            raise BadParameter("kind", f"{kind!r} is not a kind; one of {', '.join(KINDS)}")
    return kinds


def _since(value: str | None) -> datetime | None:
    if value is None:
        return None
    try:
        if len(value) == 10:
            day = date.fromisoformat(value)
            moment = datetime(day.year, day.month, day.day, tzinfo=UTC)
        else:
            moment = datetime.fromisoformat(value)
    except ValueError:
        raise BadParameter(
            "since", f"{value!r} is not a date (YYYY-MM-DD) or an ISO 8601 date and time"
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    try:
        moment = moment.astimezone(UTC)
    except OverflowError:
        raise BadParameter("since", f"{value!r} is out of range") from None
    # No alert is older than the epoch, and the engine refuses years before 1000 as
    # parameters: an earlier since means all of them.
    return max(moment, _EPOCH)


def _limit(value: str | None) -> int:
    if value is None:
        return DEFAULT_LIMIT
    if not value.isdigit() or not 1 <= int(value) <= MAX_LIMIT:
        raise BadParameter("limit", f"a whole number from 1 to {MAX_LIMIT}")
    return int(value)


def _delivery(delivery: Delivery) -> dict[str, Any]:
    def moment(value: datetime | None) -> str | None:
        return None if value is None else utc_text(value)

    return {
        "webhook": delivery.webhook,
        "status": delivery.status,
        "attempts": delivery.attempts,
        "last_attempt_at": moment(delivery.last_attempt_at),
        "last_http_status": delivery.last_http_status,
        "last_error": delivery.last_error,
        "delivered_at": moment(delivery.delivered_at),
        "next_attempt_at": moment(delivery.next_attempt_at)
        if delivery.status == "pending"
        else None,
    }
