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
    api_budgets,
    ask_from_json,
    store_budget,
)
from meterline.common.budgets import Budget, BudgetValue, budget_timezone, window
from meterline.common.config import TeamConfig
from meterline.query.deps import (
    AuthenticatedCaller,
    AuthenticatedTeam,
    Caller,
    SettingsDep,
    WarehouseDep,
)
from meterline.query.errors import (
    BadParameter,
    Conflict,
    Forbidden,
    NotFound,
    Unauthenticated,
    error_responses,
)
from meterline.query.render import decimal_text, to_json
from meterline.query.warehouse import Warehouse

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
        "source": {"enum": ["config", "api"], "description": "where it is defined"},
    },
}
STATUS_SCHEMA: Final[dict[str, Any]] = {
    "type": "object",
    "required": ["results"],
    "properties": {
        "results": {
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


def budget_json(team: TeamConfig, budget: Budget, source: str) -> dict[str, Any]:
    body = budget.model_dump(mode="json")
    body["source"] = source
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


async def team_budgets(team: TeamConfig, warehouse: Warehouse) -> list[tuple[Budget, str]]:
    """The team's budgets and where each is defined (``config`` or ``api``); a configured
    budget hides an API one of the same id."""
    api = await warehouse.run(api_budgets)
    configured = {b.id for b in team.budgets}
    return [(b, "config") for b in team.budgets] + [
        (b, "api") for b in api.get(team.id, []) if b.id not in configured
    ]


def _chosen(request: Request, budgets: list[tuple[Budget, str]]) -> list[tuple[Budget, str]]:
    wanted = request.query_params.get("budget_id")
    if wanted is None:
        return budgets
    chosen = [(b, source) for b, source in budgets if b.id == wanted]
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
                        "required": ["results"],
                        "properties": {"results": {"type": "array", "items": BUDGET_SCHEMA}},
                    }
                }
            },
        },
        **error_responses(400, 401, 404),
    },
)
async def budgets(request: Request, team: AuthenticatedTeam, warehouse: WarehouseDep) -> Response:
    _only(request, ("budget_id",), "/v1/budgets")
    chosen = _chosen(request, await team_budgets(team, warehouse))
    body = {"results": [budget_json(team, b, source) for b, source in chosen]}
    return Response(to_json(body), media_type="application/json")


@router.put(
    "/v1/budgets",
    responses={
        200: {
            "description": "the budget as stored: made, or changed when the id exists",
            "content": {"application/json": {"schema": BUDGET_SCHEMA}},
        },
        **error_responses(400, 401, 403, 409, 503),
    },
)
async def put_budget(
    request: Request, caller: AuthenticatedCaller, warehouse: WarehouseDep
) -> Response:
    team = _manager(caller)
    _only(request, (), "PUT /v1/budgets")
    try:
        payload = json.loads(await request.body())
    except ValueError:
        raise BadParameter("body", "not valid JSON: send the budget as a JSON object") from None
    if not isinstance(payload, dict):
        raise BadParameter("body", "send the budget as a JSON object")
    payload.pop("source", None)
    try:
        budget = Budget.model_validate(payload)
    except ValidationError as error:
        first = error.errors()[0]
        where = ".".join(str(p) for p in first["loc"] if p != "[key]") or "body"
        raise BadParameter(where, first["msg"]) from None
    if any(b.id == budget.id for b in team.budgets):
        raise Conflict(f"budget {budget.id!r} is defined in meterline.toml: change it there")
    await warehouse.run(lambda client: store_budget(client, team.id, budget, caller.key_name))
    return Response(to_json(budget_json(team, budget, "api")), media_type="application/json")


@router.delete(
    "/v1/budgets",
    responses={
        200: {"description": "the budget was deleted"},
        **error_responses(400, 401, 403, 404, 409, 503),
    },
)
async def delete_budget(
    request: Request, caller: AuthenticatedCaller, warehouse: WarehouseDep
) -> Response:
    team = _manager(caller)
    _only(request, ("budget_id",), "DELETE /v1/budgets")
    wanted = request.query_params.get("budget_id")
    if not wanted:
        raise BadParameter("budget_id", "required: the id of the budget to delete")
    if any(b.id == wanted for b in team.budgets):
        raise Conflict(f"budget {wanted!r} is defined in meterline.toml: remove it there")
    [(budget, _)] = _chosen(request, await team_budgets(team, warehouse))
    await warehouse.run(
        lambda client: store_budget(client, team.id, budget, caller.key_name, deleted=True)
    )
    return Response(to_json({"deleted": budget.id}), media_type="application/json")


def _manager(caller: Caller) -> TeamConfig:
    if not caller.key.manage_budgets:
        raise Forbidden(
            f"the key {caller.key_name!r} may read the team's budgets, not change them "
            "(manage_budgets = true in its [[teams.keys]] entry)"
        )
    return caller.team


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
    chosen = _chosen(request, await team_budgets(team, warehouse))
    now = datetime.now(UTC)
    periods = {b.id: window(b.period, budget_timezone(b, team.timezone), now) for b, _ in chosen}
    ask = SpendAsk([(team.id, b, periods[b.id].start) for b, _ in chosen], {})

    def read(client: Any) -> tuple[SpendAnswer, dict[str, dict[BudgetValue, int]]]:
        spend = WarehouseSpend(lambda: client)
        blocked = {b.id: spend.blocked(team.id, b.id, periods[b.id].start) for b, _ in chosen}
        return spend.read(ask), blocked

    answer, blocked = await warehouse.run(read)
    data = []
    for budget, source in chosen:
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
                "budget": budget_json(team, budget, source),
                "period_start": _instant(period.start),
                "resets_at": _instant(period.resets_at),
                "values": rows,
            }
        )
    return Response(to_json({"results": data}), media_type="application/json")


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
