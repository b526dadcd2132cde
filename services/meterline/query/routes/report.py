"""``GET /v1/report``: the team's usage and costs for a date range, grouped and filtered as
asked (the parameters: ``ReportQuery`` in report_query.py). Reads rollups only, except for
time zones with a fractional UTC offset (see builders/base.py)."""

from __future__ import annotations

from decimal import Decimal
from typing import Any, Final

from fastapi import APIRouter, Request, Response

from meterline.query.builders import build_report_query
from meterline.query.cursor import Page
from meterline.query.deps import AuthenticatedTeam, CursorsDep, SettingsDep, WarehouseDep
from meterline.query.errors import BadParameter, error_responses
from meterline.query.render import to_csv, to_json
from meterline.query.report_query import (
    DATE_PARTS,
    DIMENSIONS,
    METRICS,
    ReportQuery,
    parse_report_query,
)

router = APIRouter()

NEXT_CURSOR_HEADER = "Meterline-Next-Cursor"
GATEWAY_PROTOCOL_HEADER = "ai-gateway-protocol-version"
"""Sent by the AI SDK's gateway provider (``getSpendReport()``), whose row schema takes
``user`` as a string or absent, not null: for it, a row without a user has no ``user``."""


def _query(name: str, schema: dict[str, Any], description: str, required: bool = False) -> Any:
    return {
        "name": name,
        "in": "query",
        "required": required,
        "schema": schema,
        "description": description,
    }


_TEXT = {"type": "string"}
# Declared here for the OpenAPI description only: the handler reads the query string itself
# (parse_report_query), so that every problem is a 400 naming the parameter.
REPORT_PARAMETERS: Final = [
    _query("start_date", {"type": "string", "format": "date"}, "first day, inclusive", True),
    _query("end_date", {"type": "string", "format": "date"}, "last day, inclusive", True),
    _query("group_by", _TEXT, f"comma-separated: {', '.join(DIMENSIONS)}"),
    _query("date_part", {"type": "string", "enum": list(DATE_PARTS)}, "bucket of the day field"),
    _query("user_id", _TEXT, "filter"),
    _query("model", _TEXT, "filter"),
    _query("provider", _TEXT, "filter"),
    _query("api_key_name", _TEXT, "filter"),
    _query("credential_type", {"type": "string", "enum": ["byok", "system"]}, "filter"),
    _query(
        "zero_data_retention",
        {"type": "string", "enum": ["true", "false"]},
        "filter: served by a zero-data-retention provider or not",
    ),
    _query("tags", _TEXT, "comma-separated tags to filter on"),
    _query("tags_match", {"type": "string", "enum": ["any", "all"]}, "how tags filter"),
    _query("timezone", _TEXT, "IANA time zone of the day boundaries, default UTC"),
    _query("limit", {"type": "integer", "minimum": 1}, "rows per page"),
    _query("cursor", _TEXT, "next_cursor of the previous page"),
    _query("order_by", _TEXT, "field[:asc|desc], comma-separated"),
    _query("format", {"type": "string", "enum": ["json", "csv"]}, "json (default) or csv"),
]
REPORT_RESPONSES: Final[dict[int | str, dict[str, Any]]] = {
    200: {
        "description": "the report",
        "content": {
            "application/json": {
                "schema": {
                    "type": "object",
                    "required": ["results"],
                    "properties": {
                        "results": {"type": "array", "items": {"type": "object"}},
                        "next_cursor": {"type": ["string", "null"]},
                    },
                }
            },
            "text/csv": {"schema": {"type": "string"}},
        },
    },
    **error_responses(400, 401, 503),
}


@router.get(
    "/v1/report",
    responses=REPORT_RESPONSES,
    openapi_extra={"parameters": REPORT_PARAMETERS},
)
async def report(
    request: Request,
    team: AuthenticatedTeam,
    warehouse: WarehouseDep,
    settings: SettingsDep,
    cursors: CursorsDep,
) -> Response:
    """Parameters: start_date, end_date (YYYY-MM-DD, inclusive, required), group_by (day,
    user, model, provider, tag, credential_type, api_key_name; comma-combinable), date_part
    (day, hour, week, month), user_id, model, provider, api_key_name, credential_type, tags,
    tags_match (any, all), timezone, limit, cursor, order_by (field[:asc|desc], ...),
    format (json, csv). With group_by=tag a request counts once under each of its tags."""
    params = {name: request.query_params.getlist(name) for name in request.query_params}
    query = parse_report_query(params, settings.query_max_limit)
    fingerprint = query.fingerprint()

    page: Page | None = None
    if query.cursor is not None:
        page = cursors.read(query.cursor, team.id, fingerprint)
        page = Page(page.offset, query.limit or page.limit)
    elif query.limit is not None:
        page = Page(0, query.limit)

    # One row more than asked for tells whether another page follows.
    fetch = page.limit + 1 if page else settings.query_max_rows + 1
    built = build_report_query(team.id, query, limit=fetch, offset=page.offset if page else 0)
    columns, raw_rows = await warehouse.query(built)
    if page is None and len(raw_rows) > settings.query_max_rows:
        raise BadParameter(
            "limit",
            f"the report has more than {settings.query_max_rows} rows; "
            "pass limit (and then cursor) to page through it",
        )

    next_cursor = None
    if page is not None and len(raw_rows) > page.limit:
        raw_rows = raw_rows[: page.limit]
        next_cursor = cursors.issue(
            team.id, fingerprint, Page(page.offset + page.limit, page.limit)
        )

    rows = [_row(query, columns, raw) for raw in raw_rows]
    if GATEWAY_PROTOCOL_HEADER in request.headers and "user" in query.group_by:
        for row in rows:
            if row["user"] is None:
                del row["user"]
    if query.format == "csv":
        headers = {NEXT_CURSOR_HEADER: next_cursor} if next_cursor else {}
        body = to_csv([*query.fields(), *METRICS], rows)
        return Response(body, media_type="text/csv; charset=utf-8", headers=headers)
    return Response(
        to_json({"results": rows, "next_cursor": next_cursor}), media_type="application/json"
    )


def _row(query: ReportQuery, columns: list[str], raw: tuple[Any, ...]) -> dict[str, Any]:
    values = dict(zip(columns, raw, strict=True))
    row: dict[str, Any] = {}
    for field in query.fields():
        value = values[f"g_{field}"]
        # The raw table stores "no user" as an empty string; the API says null.
        row[field] = None if field == "user" and value == "" else value
    for metric in METRICS:
        value = values[f"m_{metric}"]
        row[metric] = value if isinstance(value, Decimal) else int(value)
    return row
