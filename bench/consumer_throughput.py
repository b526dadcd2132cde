"""Consumer throughput: events/s from Kafka into ClickHouse per consumer process, across batch
sizes, and the engine's own ceiling for the same row shape.

Method. N usage events of a realistic shape (10,000 users, 100 tags, 7 priced models on two
providers plus one unpriced, the three API surfaces, streamed and not, BYOK, errors, cache
reads and writes, reasoning tokens, the provider's raw usage JSON) are encoded as the ingress
encodes them and produced once to a one-partition topic of a real broker. Then, per batch
size and repeat, a fresh process runs the consumer pipeline exactly as ``meterline consumer``
assembles it (Kafka consumer group, event ids read in place, dedupe, batch log, the batch
decoded, checked and priced with genai-prices and inserted inside a fresh chDB warehouse with
its materialized views, commit) from the start of the topic, and the clock runs from the
first message fetched to the commit that covers the last one. Group join and engine
start-up are outside the clock; they are paid once per process. The rows in ClickHouse are
counted afterwards: a run that lost or doubled one fails.

The engine ceiling is the same number of rows of the same shape produced by the engine
itself (``INSERT INTO usage_events SELECT … FROM numbers(N)``, views attached), in a fresh
process too, so "consumer / ceiling" is the share of the warehouse's speed the Python
pipeline reaches.

The stages table takes the steps apart, each alone in one process: reading the event ids,
the engine path's whole write (``EngineWriter``), and for comparison the Python path's
decode, price and insert (``PythonBatchWriter``, which the engine path falls back to).

    python -m bench.consumer_throughput [--quick] [--events N] [--batch-sizes 1000 5000 ...]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import resource
import subprocess
import sys
import time
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

from bench.common import (
    REPO,
    argument_parser,
    engine_directory,
    kafka_bootstrap,
    markdown_table,
    median,
    peak_rss_mib,
    write_results,
)

NAME = "consumer_throughput"
TARGET_EVENTS_PER_SECOND = 50_000

USERS = 10_000
TAGS = [f"tag-{i:03d}" for i in range(100)]
TEAMS = ["acme", "globex", "initech", "umbrella", "hooli"]
# (provider, model, requested as, API surface it is usually called through)
MODELS = [
    ("openai", "gpt-4o", "openai/gpt-4o", "chat_completions"),
    ("openai", "gpt-4o-mini", "openai/gpt-4o-mini", "chat_completions"),
    ("openai", "gpt-4.1-mini", "openai/gpt-4.1-mini", "responses"),
    ("openai", "gpt-5-mini", "openai/gpt-5-mini", "responses"),
    ("anthropic", "claude-sonnet-4-6", "anthropic/claude-sonnet-4.6", "messages"),
    ("anthropic", "claude-haiku-4-5", "anthropic/claude-haiku-4.5", "chat_completions"),
    ("anthropic", "claude-opus-4-6", "claude-opus-4-6", "messages"),
    ("openai", "house-model-unpriced", "openai/house-model-unpriced", "chat_completions"),
]


def make_events(count: int, seed: int = 7) -> list[Any]:
    """``count`` UsageEvents like live traffic: started in the last few minutes."""
    from meterline.common.events import UsageEvent

    rng = random.Random(seed)
    now = datetime.now(UTC)
    events: list[Any] = []
    for _ in range(count):
        provider, model, requested, surface = MODELS[rng.randrange(len(MODELS))]
        if rng.random() < 0.3:
            surface = rng.choice(["chat_completions", "responses", "messages"])
        input_tokens = rng.randint(20, 20_000)
        cached = rng.randint(0, input_tokens // 2) if rng.random() < 0.4 else 0
        written = rng.randint(0, (input_tokens - cached) // 4) if provider == "anthropic" else 0
        written_1h = written // 3 if written and rng.random() < 0.3 else 0
        output_tokens = rng.randint(1, 4_000)
        reasoning = rng.randint(0, output_tokens) if "gpt-5" in model else 0
        failed = rng.random() < 0.02
        streamed = rng.random() < 0.6
        usage = {
            "prompt_tokens": input_tokens,
            "completion_tokens": output_tokens,
            "prompt_tokens_details": {"cached_tokens": cached},
            "completion_tokens_details": {"reasoning_tokens": reasoning},
        }
        events.append(
            UsageEvent(
                event_id=UsageEvent.new_id(),
                team_id=rng.choice(TEAMS),
                api_key_name=rng.choice(["prod", "staging", "batch-jobs"]),
                api_surface=surface,
                started_at=now - timedelta(seconds=rng.uniform(0, 300)),
                duration_ms=rng.randint(50, 60_000),
                time_to_first_token_ms=rng.randint(20, 2_000) if streamed else None,
                user_id=f"user-{rng.randrange(USERS):05d}" if rng.random() < 0.9 else None,
                tags=rng.sample(TAGS, rng.randint(0, 4)),
                model_requested=requested,
                model=model,
                provider=provider,
                credential_type="byok" if rng.random() < 0.1 else "system",
                streamed=streamed,
                status="error" if failed else "success",
                http_status=rng.choice([429, 500, 529]) if failed else 200,
                finish_reason=None if failed else rng.choice(["stop", "length", "tool_calls"]),
                error_type=rng.choice(["rate_limited", "upstream_error"]) if failed else None,
                input_tokens=input_tokens,
                output_tokens=output_tokens,
                cached_input_tokens=cached,
                cache_creation_input_tokens=written,
                cache_creation_1h_input_tokens=written_1h,
                reasoning_tokens=reasoning,
                raw_usage=json.dumps(usage, separators=(",", ":")),
            )
        )
    return events


def gateway_config() -> Any:
    from meterline.common.config import GatewayConfig, PriceOverride, TeamConfig

    return GatewayConfig(
        teams=[
            TeamConfig(id=team, price_overrides=[PriceOverride(multiplier=Decimal("0.8"))])
            if team == "globex"
            else TeamConfig(id=team)
            for team in TEAMS
        ]
    )


async def produce(bootstrap: str, topic: str, events: Sequence[Any]) -> float:
    """Produce the events as the ingress does (key = team); returns events/s."""
    from aiokafka import AIOKafkaProducer
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic

    from meterline.common.codec import UsageEventCodec

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, num_partitions=1, replication_factor=1)])
    finally:
        await admin.close()
    codec = UsageEventCodec()
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap,
        acks="all",
        enable_idempotence=True,
        compression_type="lz4",
        linger_ms=20,
        max_batch_size=1024 * 1024,
    )
    await producer.start()
    started = time.perf_counter()
    try:
        pending = []
        for event in events:
            pending.append(
                await producer.send(topic, codec.encode(event), key=event.team_id.encode())
            )
            if len(pending) >= 10_000:
                await asyncio.gather(*pending)
                pending.clear()
        await asyncio.gather(*pending)
    finally:
        await producer.stop()
    return len(events) / (time.perf_counter() - started)


def timed_kafka_source(bootstrap: str, topic: str, group: str) -> Any:
    """The real Kafka source, noting when the first message arrived and when the last commit
    returned: the consumer's clock."""
    from meterline.consumer.source import KafkaSource

    class TimedSource(KafkaSource):
        first_message_at: float | None = None
        last_commit_at: float | None = None

        async def poll(self, max_messages: int, timeout: float) -> list[Any]:
            messages = await super().poll(max_messages, timeout)
            if messages and self.first_message_at is None:
                self.first_message_at = time.perf_counter()
            return messages

        async def commit(self, offsets: dict[tuple[str, int], int]) -> None:
            await super().commit(offsets)
            self.last_commit_at = time.perf_counter()

    return TimedSource(bootstrap, topic, group)


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def count(client: Any, sql: str) -> int:
    return int(client.query(sql).result_rows[0][0])


async def consume_once(bootstrap: str, topic: str, events: int, batch_rows: int) -> dict[str, Any]:
    """One consumer, as ``meterline consumer`` builds it, from the start of the topic."""
    from meterline.common.clickhouse import connect
    from meterline.common.codec import UsageEventCodec
    from meterline.common.migrations import migrate
    from meterline.consumer.assemble import build_pipeline, enricher
    from meterline.consumer.batch_log import ClickHouseBatchLog
    from meterline.consumer.dead_letter import KafkaDeadLetter
    from meterline.consumer.engine_write import EngineWriter
    from meterline.consumer.main import tune_interpreter
    from meterline.consumer.settings import ConsumerSettings

    group = f"bench-{uuid.uuid4().hex[:8]}"
    settings = ConsumerSettings(max_batch_rows=batch_rows, consumer_group=group)
    with engine_directory() as directory:
        client = connect(f"chdb://{directory}", "bench")
        migrate(client)
        config = gateway_config()
        dead_letter = KafkaDeadLetter(bootstrap, f"{topic}-dead-letters")
        await dead_letter.start()
        source = timed_kafka_source(bootstrap, topic, group)
        codec = UsageEventCodec()
        pipeline = build_pipeline(
            settings,
            source=source,
            writer=EngineWriter(client, codec, enricher(config)),
            dead_letter=dead_letter,
            batch_log=ClickHouseBatchLog(client, group),
            codec=codec,
        )
        tune_interpreter()
        stop = asyncio.Event()
        task = asyncio.create_task(pipeline.run(stop))
        cpu_before: float | None = None
        try:
            while pipeline.stats.events_written < events:
                if cpu_before is None and source.first_message_at is not None:
                    cpu_before = cpu_seconds()
                if task.done():
                    task.result()
                    raise RuntimeError("the pipeline stopped before consuming every event")
                await asyncio.sleep(0.002)
            cpu = cpu_seconds() - (cpu_before or 0.0)
        finally:
            stop.set()
            await task
            await dead_letter.stop()
        assert source.first_message_at is not None and source.last_commit_at is not None
        seconds = source.last_commit_at - source.first_message_at
        rows = count(client, "SELECT count() FROM usage_events")
        hourly = count(client, "SELECT sum(request_count) FROM usage_hourly")
        if rows != events or hourly != events:
            raise RuntimeError(f"wrote {rows} raw rows and {hourly} rollup requests, not {events}")
        return {
            "batch_rows": batch_rows,
            "events": events,
            "seconds": round(seconds, 4),
            "events_per_second": round(events / seconds),
            # CPU time of the whole process (the engine's threads included) per event: less
            # sensitive than the rate to other work on the machine.
            "cpu_us_per_event": round(cpu / events * 1e6, 1),
            "batches": pipeline.stats.batches_written,
            "peak_rss_mib": round(peak_rss_mib(), 1),
        }


def _sql_array(values: Sequence[str]) -> str:
    return "[" + ", ".join(f"'{value}'" for value in values) + "]"


# The raw table's row shape, made by the engine: same columns, types and value ranges as
# make_events (UUIDs, low-cardinality strings, a sorted tag array, Decimal costs, raw JSON).
CEILING_INSERT = f"""
INSERT INTO usage_events (event_id, team_id, api_key_name, api_surface, started_at,
    duration_ms, time_to_first_token_ms, user_id, tags, model_requested, model, provider,
    credential_type, streamed, status, http_status, finish_reason, error_type, input_tokens,
    output_tokens, cached_input_tokens, cache_creation_input_tokens,
    cache_creation_1h_input_tokens, reasoning_tokens, market_cost, total_cost, price_known,
    price_source, raw_usage)
SELECT
    generateUUIDv4(number),
    {_sql_array(TEAMS)}[number % {len(TEAMS)} + 1],
    ['prod', 'staging', 'batch-jobs'][number % 3 + 1],
    ['chat_completions', 'responses', 'messages'][number % 3 + 1],
    now64(3) - toIntervalMillisecond(rand(1) % 300000),
    rand(2) % 60000,
    if(number % 5 < 3, toNullable(toUInt32(rand(3) % 2000)), NULL),
    if(number % 10 = 0, '', concat('user-', leftPad(toString(rand(4) % {USERS}), 5, '0'))),
    arraySort(arrayDistinct(arrayMap(
        i -> concat('tag-', leftPad(toString((rand(5) + i * 37) % {len(TAGS)}), 3, '0')),
        range(rand(6) % 5)))),
    {_sql_array([m[2] for m in MODELS])}[number % {len(MODELS)} + 1],
    {_sql_array([m[1] for m in MODELS])}[number % {len(MODELS)} + 1],
    {_sql_array([m[0] for m in MODELS])}[number % {len(MODELS)} + 1],
    if(number % 10 = 0, 'byok', 'system'),
    number % 5 < 3,
    if(number % 50 = 0, 'error', 'success'),
    if(number % 50 = 0, 500, 200),
    ['stop', 'length', 'tool_calls'][number % 3 + 1],
    if(number % 50 = 0, 'upstream_error', ''),
    rand(7) % 20000 + 20 AS input,
    rand(8) % 4000 + 1 AS output,
    intDiv(input, 4),
    intDiv(input, 8),
    intDiv(input, 24),
    intDiv(output, 3),
    toDecimal128(input * 0.0000025 + output * 0.00001, 12),
    toDecimal128(input * 0.000002 + output * 0.000008, 12),
    number % {len(MODELS)} != {len(MODELS) - 1},
    'genai-prices',
    concat('{{"prompt_tokens":', toString(input), ',"completion_tokens":', toString(output), '}}')
FROM numbers({{events:UInt64}})
"""


def engine_ceiling_once(events: int) -> dict[str, Any]:
    from meterline.common.clickhouse import connect
    from meterline.common.migrations import migrate
    from meterline.consumer.write import INSERT_SETTINGS

    with engine_directory() as directory:
        client = connect(f"chdb://{directory}", "bench")
        migrate(client)
        views = count(
            client,
            "SELECT count() FROM system.tables WHERE database = currentDatabase()"
            " AND engine = 'MaterializedView'",
        )
        started = time.perf_counter()
        client.command(CEILING_INSERT, parameters={"events": events}, settings=INSERT_SETTINGS)
        seconds = time.perf_counter() - started
        rows = count(client, "SELECT count() FROM usage_events")
        hourly = count(client, "SELECT sum(request_count) FROM usage_hourly")
        if rows != events or hourly != events:
            raise RuntimeError(f"wrote {rows} raw rows and {hourly} rollup requests, not {events}")
        bare = connect(f"chdb://{directory}", "bench_raw_only")
        migrate(bare)
        drop_views(bare)
        started = time.perf_counter()
        bare.command(CEILING_INSERT, parameters={"events": events}, settings=INSERT_SETTINGS)
        raw_only_seconds = time.perf_counter() - started
        return {
            "events": events,
            "views": views,
            "seconds": round(seconds, 4),
            "rows_per_second": round(events / seconds),
            "raw_only_rows_per_second": round(events / raw_only_seconds),
            "peak_rss_mib": round(peak_rss_mib(), 1),
        }


def drop_views(client: Any) -> None:
    """Leave the raw table alone: no rollup is fed (to tell the views' share of the cost)."""
    views = client.query(
        "SELECT name FROM system.tables WHERE database = currentDatabase()"
        " AND engine = 'MaterializedView'"
    ).result_rows
    for (name,) in views:
        client.command(f"DROP VIEW {name}")


def stages_once(events: int, batch_rows: int = 100_000) -> dict[str, Any]:
    """CPU time per event of each step, alone, in one process: where the consumer's time
    goes. The engine path's write, and the Python path's steps for comparison."""
    from meterline.common.bus import BusMessage
    from meterline.common.clickhouse import connect
    from meterline.common.codec import UsageEventCodec
    from meterline.common.migrations import migrate
    from meterline.consumer.assemble import enricher
    from meterline.consumer.decode import Decoder
    from meterline.consumer.engine_write import EngineWriter
    from meterline.consumer.write import ClickHouseWriter

    codec = UsageEventCodec()
    messages = [
        BusMessage("t", 0, offset, None, codec.encode(e))
        for offset, e in enumerate(make_events(events))
    ]
    config = gateway_config()
    prices = enricher(config)
    decoder = Decoder(codec)
    result: dict[str, Any] = {"events": events, "batch_rows": batch_rows}
    # Written before each writer is timed: the engine's first queries and the price lookups
    # are paid once per process, as in service.
    warm_up = [
        BusMessage("t", 1, offset, None, codec.encode(e))
        for offset, e in enumerate(make_events(1_000, seed=99))
    ]

    started = cpu_seconds()
    for message in messages:
        decoder.event_id(message)
    result["event_id_cpu_us"] = round((cpu_seconds() - started) / events * 1e6, 2)
    started = cpu_seconds()
    decoded = [decoder.decode(m) for m in messages]
    result["decode_cpu_us"] = round((cpu_seconds() - started) / events * 1e6, 1)
    started = cpu_seconds()
    rows = [prices.row(e) for e in decoded]  # type: ignore[arg-type]
    result["price_cpu_us"] = round((cpu_seconds() - started) / events * 1e6, 1)
    with engine_directory() as directory:
        client = connect(f"chdb://{directory}", "bench_engine")
        migrate(client)
        engine = EngineWriter(client, codec, enricher(config))
        asyncio.run(engine.write(warm_up, "stages/warm-up"))
        started, wall = cpu_seconds(), time.perf_counter()
        for first in range(0, events, batch_rows):
            asyncio.run(engine.write(messages[first : first + batch_rows], f"stages/{first}"))
        result["engine_write_cpu_us"] = round((cpu_seconds() - started) / events * 1e6, 1)
        result["engine_write_wall_us"] = round((time.perf_counter() - wall) / events * 1e6, 1)
        for database, label in (("bench", "insert"), ("bench_raw_only", "insert_raw_only")):
            client = connect(f"chdb://{directory}", database)
            migrate(client)
            if label == "insert_raw_only":
                drop_views(client)
            writer = ClickHouseWriter(client)
            asyncio.run(writer.insert(rows[:1_000], "stages/warm-up"))
            started, wall = cpu_seconds(), time.perf_counter()
            for first in range(0, events, batch_rows):
                asyncio.run(writer.insert(rows[first : first + batch_rows], f"stages/{first}"))
            result[f"{label}_cpu_us"] = round((cpu_seconds() - started) / events * 1e6, 1)
            result[f"{label}_wall_us"] = round((time.perf_counter() - wall) / events * 1e6, 1)
    return result


def child(args: list[str]) -> dict[str, Any]:
    """Run one measurement in a fresh process (one chDB engine per process)."""
    done = subprocess.run(  # noqa: S603 - this module
        [sys.executable, "-m", "bench.consumer_throughput", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"bench child {args} failed:\n{done.stderr[-4000:]}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def summarize(
    runs: list[dict[str, Any]], ceiling: list[dict[str, Any]], params: dict[str, Any]
) -> tuple[list[dict[str, Any]], str, str]:
    ceiling_rate = median([r["rows_per_second"] for r in ceiling])
    results: list[dict[str, Any]] = []
    for batch_rows in params["batch_sizes"]:
        mine = [r for r in runs if r["batch_rows"] == batch_rows]
        rates = [r["events_per_second"] for r in mine]
        results.append(
            {
                "batch_rows": batch_rows,
                "events_per_second_median": round(median(rates)),
                "events_per_second_min": min(rates),
                "events_per_second_max": max(rates),
                "share_of_engine_ceiling": round(median(rates) / ceiling_rate, 4),
                "cpu_us_per_event_median": round(median([r["cpu_us_per_event"] for r in mine]), 1),
                "peak_rss_mib_max": max(r["peak_rss_mib"] for r in mine),
                "runs": mine,
            }
        )
    best = max(r["events_per_second_median"] for r in results)
    met = "met" if best >= TARGET_EVENTS_PER_SECOND else "not met"
    consumer_md = (
        f"{params['events']:,} events, {params['repeats']} run(s) per batch size, medians; "
        f"one consumer process, one partition.\n\n"
        + markdown_table(
            [
                "batch rows",
                "events/s (median)",
                "min",
                "max",
                "vs engine ceiling",
                "CPU µs/event",
                "peak RSS MiB",
            ],
            [
                [
                    f"{r['batch_rows']:,}",
                    f"{r['events_per_second_median']:,}",
                    f"{r['events_per_second_min']:,}",
                    f"{r['events_per_second_max']:,}",
                    f"{r['share_of_engine_ceiling']:.1%}",
                    r["cpu_us_per_event_median"],
                    r["peak_rss_mib_max"],
                ]
                for r in results
            ],
        )
        + f"\nTarget ≥ {TARGET_EVENTS_PER_SECOND:,} events/s: **{met}** "
        f"(best median {best:,} events/s).\n"
    )
    raw_only = median([r["raw_only_rows_per_second"] for r in ceiling])
    ceiling_md = markdown_table(
        [
            "rows",
            "views",
            "rows/s with the views (median)",
            "min",
            "max",
            "raw table alone, rows/s",
            "best consumer / ceiling",
        ],
        [
            [
                f"{params['events']:,}",
                ceiling[0]["views"],
                f"{round(ceiling_rate):,}",
                f"{min(r['rows_per_second'] for r in ceiling):,}",
                f"{max(r['rows_per_second'] for r in ceiling):,}",
                f"{round(raw_only):,}",
                f"1 : {ceiling_rate / best:.1f}",
            ]
        ],
    )
    return results, consumer_md, ceiling_md


def stages_markdown(stages: list[dict[str, Any]]) -> str:
    keys = [
        ("event_id_cpu_us", "read the event id in place (every message, for dedupe)"),
        (
            "engine_write_cpu_us",
            "engine path: container, decode, check, price, insert with the views",
        ),
        ("engine_write_wall_us", "engine path, wall clock"),
        ("decode_cpu_us", "Python path: decode + validate"),
        ("price_cpu_us", "Python path: price (genai-prices rates, team deal) + row"),
        ("insert_cpu_us", "Python path: insert with the views (clickhouse-connect + engine)"),
        ("insert_wall_us", "Python path: insert with the views, wall clock"),
        ("insert_raw_only_cpu_us", "Python path: insert into the raw table alone"),
    ]
    return (
        f"\nWhere the time goes: each step alone over {stages[0]['events']:,} events, "
        f"CPU µs per event (median of {len(stages)}):\n\n"
        + markdown_table(
            ["step", "µs/event"],
            [[label, f"{median([s[key] for s in stages]):.1f}"] for key, label in keys],
        )
    )


def main(argv: list[str] | None = None) -> int:
    parser = argument_parser(NAME, __doc__ or "")
    parser.add_argument("--events", type=int, help="events per run (default 400,000; quick 20,000)")
    parser.add_argument("--batch-sizes", type=int, nargs="+", metavar="ROWS")
    parser.add_argument("--repeats", type=int, help="runs per batch size (default 3; quick 1)")
    parser.add_argument("--child", choices=["consume", "ceiling", "stages"], help=argparse.SUPPRESS)
    parser.add_argument("--bootstrap", help=argparse.SUPPRESS)
    parser.add_argument("--topic", help=argparse.SUPPRESS)
    parser.add_argument("--batch-rows", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    events: int = args.events or (20_000 if args.quick else 400_000)
    if args.child == "consume":
        result = asyncio.run(consume_once(args.bootstrap, args.topic, events, args.batch_rows))
        print(json.dumps(result))
        return 0
    if args.child == "ceiling":
        print(json.dumps(engine_ceiling_once(events)))
        return 0
    if args.child == "stages":
        print(json.dumps(stages_once(events)))
        return 0

    params: dict[str, Any] = {
        "events": events,
        "batch_sizes": args.batch_sizes
        or ([20_000] if args.quick else [1_000, 5_000, 20_000, 50_000, 100_000]),
        "repeats": args.repeats or (1 if args.quick else 3),
        "partitions": 1,
        "models": [m for _, m, _, _ in MODELS],
        "users": USERS,
        "tags": len(TAGS),
        "quick": args.quick,
    }
    out: Path = args.out
    with kafka_bootstrap() as bootstrap:
        topic = f"bench-usage-{uuid.uuid4().hex[:8]}"
        params["produce_events_per_second"] = round(
            asyncio.run(produce(bootstrap, topic, make_events(events)))
        )
        runs: list[dict[str, Any]] = []
        ceiling: list[dict[str, Any]] = []
        stages: list[dict[str, Any]] = []
        # Interleaved: every repeat measures every batch size and the ceiling once, so load
        # from elsewhere on the machine spreads over all of them alike.
        for repeat in range(params["repeats"]):
            for batch_rows in params["batch_sizes"]:
                run = child(
                    [
                        "--child",
                        "consume",
                        "--bootstrap",
                        bootstrap,
                        "--topic",
                        topic,
                        "--events",
                        str(events),
                        "--batch-rows",
                        str(batch_rows),
                    ]
                )
                run["repeat"] = repeat
                print(
                    f"consumer batch {batch_rows:>6}: {run['events_per_second']:>8,} events/s",
                    flush=True,
                )
                runs.append(run)
            measured = child(["--child", "ceiling", "--events", str(events)])
            print(f"engine ceiling      : {measured['rows_per_second']:>8,} rows/s", flush=True)
            ceiling.append(measured)
            stage = child(["--child", "stages", "--events", str(min(events, 200_000))])
            print(f"stages (CPU us/event): {stage}", flush=True)
            stages.append(stage)
    results, consumer_md, ceiling_md = summarize(runs, ceiling, params)
    consumer_md += stages_markdown(stages)
    write_results(out, NAME, params, results, consumer_md, engine_ceiling=ceiling, stages=stages)
    write_results(
        out,
        "engine_ceiling",
        {"events": events, "repeats": params["repeats"]},
        ceiling,
        ceiling_md,
    )
    print(consumer_md)
    print(ceiling_md)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
