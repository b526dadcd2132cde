"""``meterline report``: ask a query service for a usage report and print it.

    meterline report --key $KEY --start 2026-03-01 --end 2026-03-31 --group-by day,user

The key comes from --key or METERLINE_API_KEY. With --limit the report is fetched page by
page (following next_cursor) and printed whole."""

from __future__ import annotations

import argparse
import json
import os
import sys
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import httpx

from meterline.query.render import to_csv, to_json
from meterline.query.report_query import METRICS

_FILTERS = ("user_id", "model", "provider", "api_key_name", "credential_type", "tags")


def parse_args(argv: list[str]) -> argparse.Namespace:
    today = datetime.now(UTC).date()
    parser = argparse.ArgumentParser(prog="meterline report", description=__doc__.splitlines()[0])
    parser.add_argument("--url", default="http://127.0.0.1:8080", help="query service base URL")
    parser.add_argument("--key", default=os.environ.get("METERLINE_API_KEY"), help="gateway key")
    parser.add_argument("--start", default=(today - timedelta(days=6)).isoformat())
    parser.add_argument("--end", default=today.isoformat())
    parser.add_argument("--group-by", default="day", help="e.g. day, user, tag or day,user")
    parser.add_argument("--date-part", choices=("day", "hour", "week", "month"))
    parser.add_argument("--user-id")
    parser.add_argument("--model")
    parser.add_argument("--provider")
    parser.add_argument("--api-key-name")
    parser.add_argument("--credential-type", choices=("byok", "system"))
    parser.add_argument("--tags", help="comma-separated")
    parser.add_argument("--tags-match", choices=("any", "all"))
    parser.add_argument("--timezone", help="IANA name, e.g. Europe/Berlin")
    parser.add_argument("--order-by", help="e.g. total_cost:desc")
    parser.add_argument("--limit", type=int, help="page size; every page is fetched")
    parser.add_argument("--format", choices=("table", "json", "csv"), default="table")
    parser.add_argument("--timeout", type=float, default=30.0)
    return parser.parse_args(argv)


def query_params(args: argparse.Namespace) -> dict[str, str]:
    params = {"start_date": args.start, "end_date": args.end, "group_by": args.group_by}
    for name in (*_FILTERS, "date_part", "tags_match", "timezone", "order_by"):
        value = getattr(args, name)
        if value:
            params[name] = value
    if args.limit:
        params["limit"] = str(args.limit)
    return params


def fetch(client: httpx.Client, params: dict[str, str]) -> list[dict[str, Any]]:
    """Every row of the report, following next_cursor."""
    rows: list[dict[str, Any]] = []
    cursor: str | None = None
    while True:
        response = client.get(
            "/v1/report", params={**params, **({"cursor": cursor} if cursor else {})}
        )
        if response.status_code != 200:
            raise ReportError(_error_message(response))
        body = json.loads(response.text, parse_float=Decimal)
        rows.extend(body["results"])
        cursor = body.get("next_cursor")
        if not cursor:
            return rows


class ReportError(Exception):
    pass


def _error_message(response: httpx.Response) -> str:
    try:
        message = str(response.json()["error"]["message"])
    except (ValueError, KeyError, TypeError):
        message = response.text[:200]
    return f"{response.status_code}: {message}"


def format_table(rows: list[dict[str, Any]]) -> str:
    if not rows:
        return "no usage in this range"
    columns = list(rows[0])
    cells = [[_cell(row.get(c)) for c in columns] for row in rows]
    widths = [max(len(c), *(len(r[i]) for r in cells)) for i, c in enumerate(columns)]
    numeric = [c in METRICS for c in columns]
    lines = ["  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True))]
    for row in cells:
        lines.append(
            "  ".join(
                v.rjust(w) if n else v.ljust(w)
                for v, w, n in zip(row, widths, numeric, strict=True)
            )
        )
    return "\n".join(line.rstrip() for line in lines)


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    return str(value)


def main(argv: list[str]) -> int:
    return run(argv)


def run(argv: list[str], transport: httpx.BaseTransport | None = None) -> int:
    args = parse_args(argv)
    if not args.key:
        print("meterline report: pass --key or set METERLINE_API_KEY", file=sys.stderr)
        return 2
    headers = {"Authorization": f"Bearer {args.key}"}
    params = query_params(args)
    try:
        with httpx.Client(
            base_url=args.url, headers=headers, timeout=args.timeout, transport=transport
        ) as client:
            if args.format == "csv" and not args.limit:
                response = client.get("/v1/report", params={**params, "format": "csv"})
                if response.status_code != 200:
                    raise ReportError(_error_message(response))
                sys.stdout.write(response.text)
                return 0
            rows = fetch(client, params)
    except ReportError as error:
        print(f"meterline report: {error}", file=sys.stderr)
        return 1
    except httpx.HTTPError as error:
        print(f"meterline report: cannot reach {args.url}: {error}", file=sys.stderr)
        return 2
    if args.format == "json":
        print(to_json({"results": rows}))
    elif args.format == "csv":
        sys.stdout.write(to_csv(list(rows[0]) if rows else list(METRICS), rows))
    else:
        print(format_table(rows))
    return 0
