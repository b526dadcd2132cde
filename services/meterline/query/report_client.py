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
from meterline.query.report_query import FILTERS, METRICS


def parse_args(argv: list[str]) -> argparse.Namespace:
    return build_parser().parse_args(argv)


def build_parser() -> argparse.ArgumentParser:
    today = datetime.now(UTC).date()
    parser = argparse.ArgumentParser(
        prog="meterline report",
        description="Ask a query service for a usage report and print it.",
        epilog="Every filter takes the model as requests name it (openai/gpt-4o) or as "
        "rows name it (gpt-4o). Exit status: 0 printed, 1 the service refused, 2 not reached.",
    )
    option = parser.add_argument
    option(
        "--url",
        default=os.environ.get("METERLINE_REPORT_URL", "http://127.0.0.1:8080"),
        help="the query service (the all-in-one's port, or `meterline query`'s); "
        "default $METERLINE_REPORT_URL or %(default)s",
    )
    option(
        "--key",
        default=os.environ.get("METERLINE_API_KEY"),
        help="a gateway key of the team to report on; default $METERLINE_API_KEY",
    )
    option(
        "--start",
        default=(today - timedelta(days=6)).isoformat(),
        help="first day, YYYY-MM-DD (default: six days ago)",
    )
    option("--end", default=today.isoformat(), help="last day, inclusive (default: today)")
    option(
        "--group-by",
        default="day",
        help="what a row is: day, user, model, provider, tag, credential_type, api_key_name, "
        "zero_data_retention, or several joined by commas (day,user); default %(default)s",
    )
    option(
        "--date-part",
        choices=("day", "hour", "week", "month"),
        help="the time bucket when grouping by time",
    )
    option("--user-id", help="only this end user")
    option("--model", help="only this model")
    option("--provider", help="only this provider")
    option("--api-key-name", help="only requests made with this gateway key's name")
    option("--credential-type", choices=("byok", "system"), help="only this kind of credential")
    option(
        "--zero-data-retention",
        choices=("true", "false"),
        help="only requests served (true) or not served (false) by a provider configured "
        "as keeping no data",
    )
    option("--tags", help="only requests with these tags, comma-separated")
    option(
        "--tags-match",
        choices=("any", "all"),
        help="whether a request needs any or all of --tags (default any)",
    )
    option("--timezone", help="the days' time zone, an IANA name such as Europe/Berlin")
    option("--order-by", help="row order, a metric and a direction: total_cost:desc")
    option(
        "--limit", type=int, help="page size: the report is fetched page by page, and printed whole"
    )
    option(
        "--format",
        choices=("table", "json", "csv"),
        default="table",
        help="how the report is printed (default %(default)s)",
    )
    option("--timeout", type=float, default=30.0, help="seconds per request (default %(default)s)")
    return parser


def query_params(args: argparse.Namespace) -> dict[str, str]:
    params = {"start_date": args.start, "end_date": args.end, "group_by": args.group_by}
    for name in (*FILTERS, "date_part", "tags_match", "timezone", "order_by"):
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
    if isinstance(value, bool):
        return "true" if value else "false"
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
