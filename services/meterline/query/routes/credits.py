"""``GET /v1/credits``: the team's prepaid credit, what it has used and what is left, in the
shape the AI SDK's gateway provider reads (``getCredits()``: ``balance`` and ``total_used``,
USD as decimal strings).

A self-hosted gateway sells no credits, so the credit is what the configuration says the
team paid in advance (``credit_usd``). ``total_used`` is the team's total cost over all time
(what the gateway charges it: after its price overrides, nothing for BYOK) and ``balance``
the credit minus that. A team without a credit has a credit of 0: its balance is minus what
it used, what it owes. Nothing is refused when the balance runs out."""

from __future__ import annotations

from decimal import Decimal
from typing import Any, Final

from fastapi import APIRouter, Request, Response

from meterline.query.builders import build_credits_query
from meterline.query.deps import AuthenticatedTeam, WarehouseDep
from meterline.query.errors import BadParameter, error_responses
from meterline.query.render import decimal_text, to_json

router = APIRouter()

_MONEY_TEXT: Final = {"type": "string", "description": "USD, a decimal number as text"}
CREDITS_SCHEMA: Final[dict[str, Any]] = {
    "type": "object",
    "required": ["balance", "total_used", "credit_usd", "unpriced_request_count"],
    "properties": {
        "balance": {**_MONEY_TEXT, "description": "credit_usd minus total_used (USD)"},
        "total_used": {**_MONEY_TEXT, "description": "the team's total cost over all time"},
        "credit_usd": {
            "type": ["string", "null"],
            "description": "the team's prepaid credit; null: none configured (counted as 0)",
        },
        "unpriced_request_count": {
            "type": "integer",
            "description": "requests whose model had no known price: not in total_used yet",
        },
    },
}


@router.get(
    "/v1/credits",
    responses={
        200: {
            "description": "the team's credit, total cost and balance",
            "content": {"application/json": {"schema": CREDITS_SCHEMA}},
        },
        **error_responses(400, 401, 503),
    },
)
async def credits(request: Request, team: AuthenticatedTeam, warehouse: WarehouseDep) -> Response:
    for name in request.query_params:
        raise BadParameter(name, "unknown parameter; /v1/credits takes none")
    columns, rows = await warehouse.query(build_credits_query(team.id))
    totals = dict(zip(columns, rows[0], strict=True))
    used: Decimal = totals["total_cost"]
    credit = team.credit_usd
    balance = (credit or Decimal(0)) - used
    body = {
        "balance": decimal_text(balance),
        "total_used": decimal_text(used),
        "credit_usd": None if credit is None else decimal_text(credit),
        "unpriced_request_count": int(totals["unpriced_request_count"]),
    }
    return Response(to_json(body), media_type="application/json")
