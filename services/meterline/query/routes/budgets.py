"""The team's budgets (``GET /v1/budgets``), what each budget value has spent in its
current period (``GET /v1/budgets/status``), and the ingresses' read of the hard budgets'
committed spend (``POST /internal/v1/budget-spend``, with ``METERLINE_INTERNAL_TOKEN``).

Spend is read from the hourly rollup like every report (``common/budget_spend.py``); the
status adds what the gateways refused (``budget_blocked_requests``)."""

from __future__ import annotations

import hmac
import json
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, Final

from fastapi import APIRouter, Request, Response
from pydantic import ValidationError

from meterline.common.budget_spend import (
    INTERNAL_SPEND_PATH,
    SpendAnswer,
    SpendAsk,
    WarehouseSpend,
    answer_to_json,
    ask_from_json,
)
from meterline.common.budgets import Budget, BudgetValue, budget_timezone, window
from meterline.common.config import TeamConfig
from meterline.query.deps import AuthenticatedTeam, SettingsDep, WarehouseDep
from meterline.query.errors import BadParameter, NotFound, Unauthenticated, error_responses
from meterline.query.render import decimal_text, to_json

router = APIRouter()

_MONEY: Final = {"type": "string", "description": "USD, a decimal number as text"}
_INSTANT: Final = {"type": ["string", "null"], "description": "UTC, ISO 8601; null: never"}
BUDGET_SCHEMA: Final[dict[str, Any]] = {
    "type": "object",
    "required": ["id", "amount_usd", "scope", "period", "timezone", "counts", "mode"],
    "properties": {
        "id": {"type": "string"},
        "amount_usd": _MONEY,
        "scope": {"type": "object", "additionalProperties": {"type": "string"}},
        "period": {"enum": ["daily", "weekly", "monthly", "none"]},
        "timezone": {"type": "string"},
        "counts": {"enum": ["total_cost", "market_cost"]},
        "include_byok": {"type": "boolean"},
        "mode": {"enum": ["hard", "soft"]},
        "thresholds": {"type": "array", "items": {"type": "integer"}},
        "alert_on_reset": {"type": "boolean"},
        "overrides": {"type": "object", "additionalProperties": _MONEY},
    },
}
STATUS_SCHEMA: Final[dict[str, Any]] = {
    "type": "object",
    "required": ["data"],
    "properties": {
        "data": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["budget", "period_start", "resets_at", "values"],
                "properties": {
                    "budget": BUDGET_SCHEMA,
                    "period_start": _INSTANT,
                    "resets_at": _INSTANT,
                    "values": {
                        "type": "array",
                        "items": {
                            "type": "object",
                            "required": ["value", "spend", "limit", "remaining", "blocked"],
                            "properties": {
                                "value": {
                                    "type": "object",
                                    "additionalProperties": {"type": "string"},
                                    "description": "the '*' dimensions' values; {} for one",
                                },
                                "spend": _MONEY,
                                "limit": _MONEY,
                                "remaining": {**_MONEY, "description": "limit - spend, >= 0"},
                                "blocked": {"type": "integer"},
                            },
                        },
                    },
                },
            },
        }
    },
}


def budget_json(team: TeamConfig, budget: Budget) -> dict[str, Any]:
    body = budget.model_dump(mode="json")
    body["amount_usd"] = decimal_text(budget.amount_usd)
    body["overrides"] = {k: decimal_text(v) for k, v in budget.overrides.items()}
    body["timezone"] = budget_timezone(budget, team.timezone)
    return body


def _instant(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat().replace("+00:00", "Z")


def _only(request: Request, allowed: tuple[str, ...], path: str) -> None:
    for name in request.query_params:
        if name not in allowed:
            takes = ", ".join(allowed) or "none"
            raise BadParameter(name, f"unknown parameter; {path} takes {takes}")


def _chosen(request: Request, team: TeamConfig) -> list[Budget]:
    wanted = request.query_params.get("budget_id")
    if wanted is None:
        return list(team.budgets)
    chosen = [b for b in team.budgets if b.id == wanted]
    if not chosen:
        raise NotFound(f"budget_id: the team has no budget {wanted!r}")
    return chosen


@router.get(
    "/v1/budgets",
    responses={
        200: {
            "description": "the team's budgets, as configured",
            "content": {
                "application/json": {
                    "schema": {
                        "type": "object",
                        "required": ["data"],
                        "properties": {"data": {"type": "array", "items": BUDGET_SCHEMA}},
                    }
                }
            },
        },
        **error_responses(400, 401, 404),
    },
)
async def budgets(request: Request, team: AuthenticatedTeam) -> Response:
    _only(request, ("budget_id",), "/v1/budgets")
    body = {"data": [budget_json(team, b) for b in _chosen(request, team)]}
    return Response(to_json(body), media_type="application/json")


@router.get(
    "/v1/budgets/status",
    responses={
        200: {
            "description": "each budget value's spend in the current period",
            "content": {"application/json": {"schema": STATUS_SCHEMA}},
        },
        **error_responses(400, 401, 404, 503),
    },
)
async def status(request: Request, team: AuthenticatedTeam, warehouse: WarehouseDep) -> Response:
    _only(request, ("budget_id",), "/v1/budgets/status")
    chosen = _chosen(request, team)
    now = datetime.now(UTC)
    periods = {b.id: window(b.period, budget_timezone(b, team.timezone), now) for b in chosen}
    ask = SpendAsk([(team.id, b, periods[b.id].start) for b in chosen], {})

    def read(client: Any) -> tuple[SpendAnswer, dict[str, dict[BudgetValue, int]]]:
        spend = WarehouseSpend(lambda: client)
        blocked = {b.id: spend.blocked(team.id, b.id, periods[b.id].start) for b in chosen}
        return spend.read(ask), blocked

    answer, blocked = await warehouse.run(read)
    data = []
    for budget in chosen:
        spent = answer.committed.get((team.id, budget.id), {})
        refused = blocked[budget.id]
        # Every value with spend or refusals, and the values an override names.
        values = dict(spent)
        if budget.overrides:
            dimension = budget.wildcards[0]
            for name in budget.overrides:
                values.setdefault(((dimension, name),), Decimal(0))
        if not budget.wildcards:
            values.setdefault((), Decimal(0))
        for value in refused:
            # A value refused before it spent anything (a limit of 0, say).
            values.setdefault(value, Decimal(0))
        rows = []
        for value, spend in sorted(values.items(), key=lambda item: (-item[1], item[0])):
            limit = budget.limit(value)
            rows.append(
                {
                    "value": dict(value),
                    "spend": decimal_text(spend),
                    "limit": decimal_text(limit),
                    "remaining": decimal_text(max(limit - spend, Decimal(0))),
                    "blocked": refused.get(value, 0),
                }
            )
        period = periods[budget.id]
        data.append(
            {
                "budget": budget_json(team, budget),
                "period_start": _instant(period.start),
                "resets_at": _instant(period.resets_at),
                "values": rows,
            }
        )
    return Response(to_json({"data": data}), media_type="application/json")


@router.post(INTERNAL_SPEND_PATH, include_in_schema=False)
async def internal_spend(
    request: Request, settings: SettingsDep, warehouse: WarehouseDep
) -> Response:
    token = settings.internal_token
    if token is None:
        raise NotFound("not found")
    scheme, _, presented = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(
        presented.strip().encode(), token.get_secret_value().encode()
    ):
        raise Unauthenticated("an internal path: send 'Authorization: Bearer <internal token>'")
    try:
        ask = ask_from_json(json.loads(await request.body()))
    except (ValueError, KeyError, TypeError, ValidationError) as error:
        raise BadParameter("body", f"not a budget spend request: {error}") from None
    answer = await warehouse.run(lambda client: WarehouseSpend(lambda: client).read(ask))
    return Response(json.dumps(answer_to_json(answer)), media_type="application/json")
