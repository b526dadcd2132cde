"""Report latency: p50/p95 of four typical ``GET /v1/report`` calls through the real query
service, over 10 and 100 million raw events, and the same questions answered from the raw
table, as a ratio.

Method. For each size a fresh chDB warehouse is migrated and filled by the engine itself
(``INSERT INTO usage_events SELECT … FROM numbers(…)`` in chunks of 10 million), so the
materialized views fill the rollups exactly as the consumer's inserts do in production. The
events span 30 days and have 10,000 users (a few heavy, many light), 50 models on five
providers (one unpriced), 100 tags (0 to 5 per request; an application tags its requests
consistently, so each user's tag sets come from a few features), four teams (the one
measured, ``acme``, has 60% of the users and events), both credential types, three API key
names, errors, cache reads and writes and reasoning tokens. The rollups are then merged
(``OPTIMIZE … FINAL``), as 30 days of background merges would have left them.

In that process (chDB allows one process per data directory) each question is also asked of
the raw table with the obvious SQL over ``usage_events`` (its primary key starts with the
team and the hour, so it reads only the team's rows in the range), timed through the same
client library, and its answer kept. Then ``meterline query`` is started on the data
directory as its own process, and a client on loopback (httpx, keep-alive) asks the four
calls round-robin, after a warm-up, timing each response to its last byte. Each call's
answer must equal the raw table's answer, exactly (Decimal money), or the run fails.

The four calls, for the team ``acme``:

- ``day_user``: 30 days by ``day,user``, first page of 1,000 rows (the whole report has
  about 150,000 rows, more than the API returns without paging);
- ``tag_filtered``: 30 days by ``tag``, for one provider;
- ``model_one_user``: 30 days by ``model`` for one heavy user;
- ``hourly_one_day``: one day by hour.

    python -m bench.report_latency [--quick] [--sizes 10000000 100000000] [--requests 200]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx

from bench.common import (
    REPO,
    argument_parser,
    markdown_table,
    median,
    peak_rss_mib,
    percentile,
    write_results,
)
from meterline.query.builders import choose_source
from meterline.query.report_query import parse_report_query

NAME = "report_latency"
TARGET_P95_MS = 50.0
TARGET_RATIO = 20.0
FULL_SIZES = (10_000_000, 100_000_000)
QUICK_SIZE = 200_000
CHUNK = 10_000_000
DATABASE = "meterline"
TEAM = "acme"
KEY = "ml_bench_report_latency_key"
FIRST_DAY = date(2026, 10, 1)
DAYS = 30
USERS = 10_000
MODELS = 50
TAGS = 100
PROVIDERS = ("openai", "anthropic", "google", "mistral", "groq")
METRICS = (
    "total_cost",
    "market_cost",
    "input_tokens",
    "output_tokens",
    "cached_input_tokens",
    "cache_creation_input_tokens",
    "reasoning_tokens",
    "request_count",
    "unpriced_request_count",
)
ROLLUP_TABLES_QUERY = (
    "SELECT name FROM system.tables WHERE database = currentDatabase()"
    " AND engine LIKE '%MergeTree' AND name LIKE 'usage\\_%' AND name != 'usage_events'"
    " ORDER BY name"
)

# One row per event; every value a pure function of the event number, so two runs of the
# same size hold the same events (event ids aside). ``u`` skews towards low numbers: the
# first 1% of users send about 10% of the requests.
GENERATE = """
INSERT INTO usage_events (
    event_id, team_id, api_key_name, api_surface, started_at, duration_ms,
    time_to_first_token_ms, user_id, tags, model_requested, model, provider, credential_type,
    streamed, status, http_status, finish_reason, error_type, input_tokens, output_tokens,
    cached_input_tokens, cache_creation_input_tokens, cache_creation_1h_input_tokens,
    reasoning_tokens, market_cost, total_cost, price_known, price_source, raw_usage)
SELECT
    generateUUIDv4(n),
    multiIf(u % 10 < 6, 'acme', u % 10 < 8, 'globex', u % 10 < 9, 'initech', 'umbrella'),
    multiIf(h7 % 10 < 7, 'prod', h7 % 10 < 9, 'staging', 'dev'),
    ['chat_completions', 'responses', 'messages'][h7 % 3 + 1],
    fromUnixTimestamp64Milli(
        toInt64({start_ms:UInt64} + intDiv(n * {span_ms:UInt64}, {total:UInt64})), 'UTC'),
    toUInt32(200 + h6 % 5000),
    if(h6 % 2 = 0, toNullable(toUInt32(50 + h6 % 700)), NULL),
    if(h2 % 20 = 0, '', concat('user_', toString(u))),
    arraySort(arrayDistinct(arrayMap(
        i -> concat('tag_', leftPad(toString(cityHash64(u, feature, i) % {tags:UInt32}), 3, '0')),
        range([0, 1, 1, 2, 2, 2, 3, 3, 4, 5][cityHash64(u, feature, 99) % 10 + 1])))),
    concat(provider, '/', model),
    model,
    provider,
    if(h5 % 5 = 0, 'byok', 'system'),
    h6 % 2 = 0,
    if(h8 % 50 = 0, 'error', 'success'),
    toUInt16(if(h8 % 50 = 0, 502, 200)),
    if(h8 % 50 = 0, '', 'stop'),
    if(h8 % 50 = 0, 'upstream_error', ''),
    input,
    output,
    if(h9 % 3 = 0, intDiv(input, 2), 0),
    if(h9 % 7 = 0, intDiv(input, 10), 0),
    0,
    if(mi % 4 = 0, intDiv(output, 3), 0),
    market,
    if(h5 % 5 = 0, toDecimal128(0, 12), market),
    mi != {models:UInt32} - 1,
    if(mi != {models:UInt32} - 1, 'genai-prices', 'unknown'),
    concat('{"prompt_tokens":', toString(input), ',"completion_tokens":', toString(output), '}')
FROM (
    SELECT
        number AS n,
        cityHash64(n, 1) AS h1, cityHash64(n, 2) AS h2, cityHash64(n, 3) AS h3,
        cityHash64(n, 4) AS h4, cityHash64(n, 5) AS h5, cityHash64(n, 6) AS h6,
        cityHash64(n, 7) AS h7, cityHash64(n, 8) AS h8, cityHash64(n, 9) AS h9,
        toUInt32(floor(pow((h1 % 1000000) / 1000000, 2) * {users:UInt32})) AS u,
        h3 % 4 AS feature,
        -- Each user mostly calls three models of their own; one request in ten any model.
        toUInt32(if(h4 % 10 = 0, h4 % {models:UInt32},
                    (u * 7 + (h4 % 3) * 11) % {models:UInt32})) AS mi,
        {providers:Array(String)}[mi % length({providers:Array(String)}) + 1] AS provider,
        concat(provider, '-model-', leftPad(toString(mi), 2, '0')) AS model,
        toUInt64(100 + h9 % 6000) AS input,
        toUInt64(10 + h2 % 1200) AS output,
        if(mi = {models:UInt32} - 1, toDecimal128(0, 12),
           toDecimal128(input * (mi + 1) + output * (mi + 1) * 4, 12) / 10000000) AS market
    FROM numbers({first:UInt64}, {count:UInt64})
)
"""


@dataclass(frozen=True, slots=True)
class Call:
    name: str
    description: str
    params: dict[str, str]
    fields: tuple[str, ...]
    raw_sql: str
    """The same question over usage_events: the grouping fields aliased as the report's,
    then the metrics in METRICS order, the report's order and page."""


def _raw_metrics() -> str:
    sums = [f"sum({m})" for m in METRICS[:7]]
    return ", ".join([*sums, "count()", "countIf(NOT price_known)"])


def calls(heavy_user: str) -> list[Call]:
    last = FIRST_DAY + timedelta(days=DAYS - 1)
    one_day = FIRST_DAY + timedelta(days=DAYS // 2)
    month = {"start_date": FIRST_DAY.isoformat(), "end_date": last.isoformat()}
    in_month = (
        f"team_id = '{TEAM}' AND started_at >= '{FIRST_DAY} 00:00:00'"
        f" AND started_at < '{last + timedelta(days=1)} 00:00:00'"
    )
    metrics = _raw_metrics()
    return [
        Call(
            "day_user",
            "30 days by day,user (first page of 1,000)",
            {**month, "group_by": "day,user", "limit": "1000"},
            ("day", "user"),
            f"SELECT toString(toDate(started_at)) AS day, user_id AS user, {metrics}"
            f" FROM usage_events WHERE {in_month}"
            " GROUP BY day, user ORDER BY day, user LIMIT 1000",
        ),
        Call(
            "tag_filtered",
            "30 days by tag, provider=anthropic",
            {**month, "group_by": "tag", "provider": "anthropic"},
            ("tag",),
            f"SELECT tag, {metrics} FROM usage_events ARRAY JOIN tags AS tag"
            f" WHERE {in_month} AND provider = 'anthropic' GROUP BY tag ORDER BY tag",
        ),
        Call(
            "model_one_user",
            f"30 days by model, user_id={heavy_user}",
            {**month, "group_by": "model", "user_id": heavy_user},
            ("model",),
            f"SELECT model, {metrics} FROM usage_events"
            f" WHERE {in_month} AND user_id = '{heavy_user}' GROUP BY model ORDER BY model",
        ),
        Call(
            "hourly_one_day",
            f"one day ({one_day}) by hour",
            {
                "start_date": one_day.isoformat(),
                "end_date": one_day.isoformat(),
                "group_by": "day",
                "date_part": "hour",
            },
            ("hour",),
            f"SELECT formatDateTime(started_at, '%Y-%m-%dT%H', 'UTC') AS hour, {metrics}"
            f" FROM usage_events WHERE team_id = '{TEAM}'"
            f" AND started_at >= '{one_day} 00:00:00'"
            f" AND started_at < '{one_day + timedelta(days=1)} 00:00:00'"
            " GROUP BY hour ORDER BY hour",
        ),
    ]


def normalise(fields: Sequence[str], rows: Sequence[Sequence[Any]]) -> list[list[str]]:
    """Rows as text, so an API answer and a raw answer compare exactly: no user is null in
    the API and '' in the table; money compares as Decimal."""
    out = []
    for row in rows:
        values = []
        for i, value in enumerate(row):
            if i < len(fields) and fields[i] == "user" and value in ("", None):
                values.append("")
            elif isinstance(value, Decimal | float | int) and not isinstance(value, bool):
                values.append(str(Decimal(str(value)).normalize()))
            else:
                values.append(str(value))
        out.append(values)
    return out


# ---------------------------------------------------------------------------------------
# Prepare: in a child process of its own, since the data directory is one process's only.


def prepare(directory: Path, events: int, raw_repeat: int) -> dict[str, Any]:
    """Migrate, fill (unless the directory already holds ``events`` events), merge the
    rollups, and answer each call from the raw table."""
    from meterline.common.clickhouse import connect
    from meterline.common.migrations import migrate

    client = connect(f"chdb://{directory}", DATABASE)
    applied = migrate(client)
    present = int(client.query("SELECT count() FROM usage_events").result_rows[0][0])
    fill_seconds = None
    if present not in (0, events):
        raise SystemExit(f"{directory} holds {present} events, not {events}: remove it first")
    settings = {
        "max_threads": 2,
        "max_insert_threads": 2,
        "insert_deduplicate": 0,
        # Summing the rollups' rows at insert time made each insert about 15 times slower
        # on chDB here; rows are summed by the merges instead (and by OPTIMIZE below), and
        # reports re-aggregate anyway.
        "optimize_on_insert": 0,
    }
    if present == 0:
        start_ms = int(datetime.combine(FIRST_DAY, datetime.min.time(), UTC).timestamp()) * 1000
        started = time.perf_counter()
        for first in range(0, events, CHUNK):
            client.command(
                GENERATE,
                parameters={
                    "start_ms": start_ms,
                    "span_ms": DAYS * 86_400_000,
                    "total": events,
                    "first": first,
                    "count": min(CHUNK, events - first),
                    "users": USERS,
                    "models": MODELS,
                    "tags": TAGS,
                    "providers": list(PROVIDERS),
                },
                settings=settings,
            )
            print(f"  {first + min(CHUNK, events - first):,} events", flush=True)
        fill_seconds = time.perf_counter() - started
    rollups = [str(name) for (name,) in client.query(ROLLUP_TABLES_QUERY).result_rows]
    started = time.perf_counter()
    for table in rollups:
        # A partition already merged into one part is left alone, so a rerun on a kept
        # warehouse (to time the raw table again) does not rewrite every rollup.
        client.command(
            f"OPTIMIZE TABLE {table} FINAL",
            settings={"max_threads": 2, "optimize_skip_merged_partitions": 1},
        )
    optimize_seconds = time.perf_counter() - started
    rollup_rows = {
        table: int(client.query(f"SELECT count() FROM {table}").result_rows[0][0])
        for table in rollups
    }
    team_events = int(
        client.query(f"SELECT count() FROM usage_events WHERE team_id = '{TEAM}'").result_rows[0][0]
    )
    # The heaviest user of the team: "by model for one user" is asked about someone busy.
    heavy_user = str(
        client.query(
            f"SELECT user_id FROM usage_events WHERE team_id = '{TEAM}' AND user_id != ''"
            " GROUP BY user_id ORDER BY count() DESC, user_id LIMIT 1"
        ).result_rows[0][0]
    )
    raw: dict[str, Any] = {}
    for call in calls(heavy_user):
        timings = []
        rows: Sequence[Sequence[Any]] = []
        for _ in range(raw_repeat):
            started = time.perf_counter()
            rows = client.query(call.raw_sql).result_rows
            timings.append((time.perf_counter() - started) * 1000)
        raw[call.name] = {"ms": timings, "answer": normalise(call.fields, rows)}
        raw[call.name]["engine"] = engine_only(client, call, raw_repeat * 4)
    return {
        "events": events,
        "team_events": team_events,
        "fill_seconds": fill_seconds,
        "optimize_seconds": optimize_seconds,
        "migrations_applied": applied,
        "rollup_rows": rollup_rows,
        "heavy_user": heavy_user,
        "raw": raw,
    }


def engine_only(client: Any, call: Call, repeat: int) -> dict[str, Any]:
    """The SQL the query service runs for ``call``, built by its own builder and run here
    with its settings, without HTTP, FastAPI or JSON: what the engine alone costs, and how
    many rows of the rollup it reads (which explain most of a report's time)."""
    from meterline.query.builders import build_report_query
    from meterline.query.settings import QuerySettings

    defaults = QuerySettings()
    query = parse_report_query({k: [v] for k, v in call.params.items()}, defaults.query_max_limit)
    fetch = query.limit + 1 if query.limit is not None else defaults.query_max_rows + 1
    built = build_report_query(TEAM, query, limit=fetch)
    settings = {"optimize_aggregation_in_order": 1}
    timings = []
    for _ in range(repeat):
        started = time.perf_counter()
        client.query(built.sql, parameters=built.parameters, settings=settings)
        timings.append((time.perf_counter() - started) * 1000)
    # The rows of the granules the primary key selects: what the engine reads and filters.
    # (chDB's query summary counts the rows returned, not those read.)
    estimate = client.query(
        f"EXPLAIN ESTIMATE {built.sql}", parameters=built.parameters, settings=settings
    )
    rows_column = list(estimate.column_names).index("rows")
    read_rows = sum(int(row[rows_column]) for row in estimate.result_rows)
    return {"ms": [round(t, 2) for t in timings], "read_rows": read_rows}


# ---------------------------------------------------------------------------------------
# Measure: the query service as its own process, a client on loopback.


def _free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextlib.contextmanager
def query_service(directory: Path) -> Iterator[tuple[str, int]]:
    """``meterline query`` on the data directory; yields its base URL and pid."""
    from meterline.common.config import hash_key

    config = directory.parent / f"{directory.name}.toml"
    config.write_text(
        f'[[teams]]\nid = "{TEAM}"\n\n[[teams.keys]]\nname = "bench"\nsha256 = "{hash_key(KEY)}"\n'
    )
    port = _free_port()
    env = {
        **os.environ,
        "METERLINE_CONFIG_FILE": str(config),
        "METERLINE_CLICKHOUSE_URL": f"chdb://{directory}",
        "METERLINE_CLICKHOUSE_DATABASE": DATABASE,
        "METERLINE_LOG_LEVEL": "WARNING",
    }
    command = [sys.executable, "-m", "meterline.cli", "query", "--port", str(port)]
    process = subprocess.Popen(command, cwd=REPO, env=env)  # noqa: S603 - our own CLI
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"meterline query exited with {process.returncode}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{url}/readyz", timeout=5).status_code == 200:
                    break
            if time.monotonic() > deadline:
                raise RuntimeError("meterline query did not become ready in 120 s")
            time.sleep(0.2)
        yield url, process.pid
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def measure(
    url: str, pid: int, prepared: dict[str, Any], requests: int, warmup: int
) -> list[dict[str, Any]]:
    """Round-robin over the calls, so load from elsewhere on the machine hits all alike."""
    the_calls = calls(prepared["heavy_user"])
    timings: dict[str, list[float]] = {call.name: [] for call in the_calls}
    answers: dict[str, list[list[str]]] = {}
    headers = {"Authorization": f"Bearer {KEY}"}
    with httpx.Client(base_url=url, headers=headers, timeout=60) as client:
        for round_ in range(warmup + requests):
            for call in the_calls:
                started = time.perf_counter()
                response = client.get("/v1/report", params=call.params)
                body = response.content
                elapsed = (time.perf_counter() - started) * 1000
                if response.status_code != 200:
                    raise RuntimeError(f"{call.name}: {response.status_code} {body[:300]!r}")
                if round_ >= warmup:
                    timings[call.name].append(elapsed)
                if call.name not in answers:
                    rows = json.loads(body, parse_float=Decimal)["results"]
                    answers[call.name] = normalise(
                        call.fields, [[row[f] for f in (*call.fields, *METRICS)] for row in rows]
                    )
    rss = peak_rss_mib(pid)
    results = []
    for call in the_calls:
        query = parse_report_query({k: [v] for k, v in call.params.items()}, max_limit=10_000)
        raw = prepared["raw"][call.name]
        equal = answers[call.name] == raw["answer"]
        if not equal:
            raise RuntimeError(f"{call.name}: the report's answer differs from the raw table's")
        p50 = percentile(timings[call.name], 50)
        p95 = percentile(timings[call.name], 95)
        raw_ms = median(raw["ms"])
        results.append(
            {
                "events": prepared["events"],
                "call": call.name,
                "description": call.description,
                "params": call.params,
                "requests": len(timings[call.name]),
                "p50_ms": round(p50, 2),
                "p95_ms": round(p95, 2),
                "raw_median_ms": round(raw_ms, 1),
                "raw_ms": [round(t, 1) for t in raw["ms"]],
                "ratio_raw_to_p95": round(raw_ms / p95, 1),
                "rows": len(answers[call.name]),
                "source": choose_source(query).table,
                "rollup_rows_read": raw.get("engine", {}).get("read_rows"),
                "engine_p50_ms": (
                    round(percentile(raw["engine"]["ms"], 50), 2) if "engine" in raw else None
                ),
                "engine_p95_ms": (
                    round(percentile(raw["engine"]["ms"], 95), 2) if "engine" in raw else None
                ),
                "equal_to_raw": equal,
                "query_peak_rss_mib": round(rss, 1),
            }
        )
    return results


def _count(value: int | None) -> str:
    return "-" if value is None else f"{value:,}"


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def render(results: list[dict[str, Any]], runs: list[dict[str, Any]], quick: bool) -> str:
    rows = [
        (
            f"{r['events']:,}",
            r["description"],
            f"`{r['source']}`",
            _count(r.get("rollup_rows_read")),
            r["rows"],
            f"{r['p50_ms']:.1f}",
            f"{r['p95_ms']:.1f}",
            _ms(r.get("engine_p50_ms")),
            f"{r['raw_median_ms']:.0f}",
            f"{r['ratio_raw_to_p95']:.0f}×",
        )
        for r in results
    ]
    table = markdown_table(
        [
            "raw events",
            "call (team acme)",
            "reads",
            "rows read",
            "rows",
            "p50 ms",
            "p95 ms",
            "engine alone p50 ms",
            "raw table ms",
            "raw / p95",
        ],
        rows,
    )
    largest = max(r["events"] for r in results)
    at_largest = [r for r in results if r["events"] == largest]
    worst_p95 = max(r["p95_ms"] for r in at_largest)
    worst_ratio = min(r["ratio_raw_to_p95"] for r in at_largest)
    met = worst_p95 <= TARGET_P95_MS and worst_ratio >= TARGET_RATIO
    lines = [table]
    lines.append(
        "Query service peak RSS: "
        + ", ".join(f"{run['events']:,} events {run['query_peak_rss_mib']:.0f} MiB" for run in runs)
        + ". Rollup rows: "
        + "; ".join(
            f"{run['events']:,} events: "
            + ", ".join(f"{t} {n:,}" for t, n in run["rollup_rows"].items())
            for run in runs
        )
        + "."
    )
    verdict = "met" if met else "not met"
    lines.append(
        f"\nTarget (p95 ≤ {TARGET_P95_MS:.0f} ms and ≥ {TARGET_RATIO:.0f}× faster than the raw "
        f"table, at {largest:,} events): **{verdict}** — worst p95 {worst_p95:.1f} ms, "
        f"smallest ratio {worst_ratio:.0f}×."
        + (" (quick run: sizes too small to judge)" if quick else "")
    )
    return "\n".join(lines)


def run_size(
    events: int,
    base: Path,
    requests: int,
    warmup: int,
    raw_repeat: int,
    keep: bool,
    measure_only: bool = False,
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    directory = base / f"events-{events}"
    directory.mkdir(parents=True, exist_ok=True)
    prepared_file = directory.parent / f"{directory.name}.prepared.json"
    if not measure_only:
        print(f"report_latency: preparing {events:,} events in {directory}", flush=True)
        command = [
            sys.executable,
            "-m",
            "bench.report_latency",
            "--prepare",
            str(directory),
            "--events",
            str(events),
            "--raw-repeat",
            str(raw_repeat),
            "--prepared",
            str(prepared_file),
        ]
        subprocess.run(command, cwd=REPO, check=True)  # noqa: S603 - this module
    prepared = json.loads(prepared_file.read_text())
    print(f"report_latency: measuring {events:,} events through meterline query", flush=True)
    with query_service(directory) as (url, pid):
        results = measure(url, pid, prepared, requests, warmup)
    run = {
        "events": events,
        "team_events": prepared["team_events"],
        "fill_seconds": prepared["fill_seconds"],
        "optimize_seconds": prepared["optimize_seconds"],
        "rollup_rows": prepared["rollup_rows"],
        "heavy_user": prepared["heavy_user"],
        "query_peak_rss_mib": results[0]["query_peak_rss_mib"],
    }
    if not keep:
        shutil.rmtree(directory, ignore_errors=True)
        prepared_file.unlink(missing_ok=True)
    return results, run


def main(argv: list[str] | None = None) -> int:
    parser = argument_parser(NAME, __doc__ or "")
    parser.add_argument("--sizes", type=int, nargs="+", help="raw event counts")
    parser.add_argument("--requests", type=int, help="timed requests per call")
    parser.add_argument("--raw-repeat", type=int, help="raw-table runs per call")
    parser.add_argument(
        "--data-dir",
        type=Path,
        help="where the warehouses go; kept afterwards and reused by a later run of the same "
        "size (default: a temporary directory under var/bench, removed afterwards)",
    )
    parser.add_argument(
        "--measure-only",
        action="store_true",
        help="with --data-dir: reuse the warehouse and raw-table answers of an earlier run and "
        "only measure the query service (to compare two versions of it)",
    )
    parser.add_argument("--prepare", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--events", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--prepared", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.measure_only and args.data_dir is None:
        parser.error("--measure-only needs --data-dir")

    if args.prepare is not None:
        prepared = prepare(args.prepare.resolve(), args.events, args.raw_repeat)
        args.prepared.write_text(json.dumps(prepared, default=str))
        return 0

    sizes = args.sizes or ([QUICK_SIZE] if args.quick else list(FULL_SIZES))
    requests = args.requests or (20 if args.quick else 200)
    warmup = 3 if args.quick else 10
    raw_repeat = args.raw_repeat or (3 if args.quick else 5)
    results: list[dict[str, Any]] = []
    runs: list[dict[str, Any]] = []
    keep = args.data_dir is not None
    (REPO / "var" / "bench").mkdir(parents=True, exist_ok=True)
    with contextlib.ExitStack() as stack:
        if args.data_dir is not None:
            base = args.data_dir.resolve()
        else:
            base = Path(
                stack.enter_context(
                    tempfile.TemporaryDirectory(
                        prefix="report-latency-", dir=REPO / "var" / "bench"
                    )
                )
            )
        for events in sizes:
            size_results, run = run_size(
                events, base, requests, warmup, raw_repeat, keep, args.measure_only
            )
            results += size_results
            runs.append(run)
    params = {
        "sizes": sizes,
        "requests_per_call": requests,
        "warmup_rounds": warmup,
        "raw_repeat": raw_repeat,
        "days": DAYS,
        "users": USERS,
        "models": MODELS,
        "tags": TAGS,
        "team": TEAM,
        "quick": args.quick,
    }
    write_results(args.out, NAME, params, results, render(results, runs, args.quick), runs=runs)
    for r in results:
        print(
            f"{r['events']:>12,} {r['call']:<16} p50 {r['p50_ms']:7.1f} ms"
            f"  p95 {r['p95_ms']:7.1f} ms"
            f"  raw {r['raw_median_ms']:8.0f} ms  ratio {r['ratio_raw_to_p95']:6.1f}×"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
