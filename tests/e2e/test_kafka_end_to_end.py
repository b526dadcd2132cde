"""Gateway -> Kafka -> consumer -> ClickHouse -> /v1/report, each service its own process.

The simulator is the provider; ``meterline ingress`` publishes to the real Kafka broker;
``meterline all-in-one`` with KAFKA_BOOTSTRAP_SERVERS set consumes the topic and serves the
report (chDB allows one process per data directory, so consumer and query share one). For a
mixed batch of requests every report grouping must equal what the responses' usage adds up
to, exactly: tokens, request counts and costs (genai-prices on the same usage)."""

from __future__ import annotations

import json
import os
import time
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

import httpx
import openai
import pytest
from genai_prices import Usage, calc_price

from meterline.common.config import new_key
from meterline.demo import write_config
from meterline.processes import free_port, meterline_process, wait_http

pytestmark = [pytest.mark.e2e, pytest.mark.kafka, pytest.mark.clickhouse]

MODELS = ["gpt-4o", "gpt-4o-mini", "o4-mini"]
METRICS = ("input_tokens", "output_tokens", "cached_input_tokens", "reasoning_tokens")


@dataclass(frozen=True)
class Stack:
    gateway: str
    reports: str
    keys: dict[str, str]


@dataclass
class Sent:
    event_id: str
    team: str
    user: str | None
    tags: tuple[str, ...]
    model: str
    usage: dict[str, int]
    started_at: datetime | None = None

    def cost(self) -> Decimal:
        price = calc_price(
            Usage(
                input_tokens=self.usage["input_tokens"],
                output_tokens=self.usage["output_tokens"],
                cache_read_tokens=self.usage["cached_input_tokens"],
            ),
            model_ref=self.model,
            provider_id="openai",
            genai_request_timestamp=self.started_at,
        )
        return Decimal(price.total_price)


@pytest.fixture(scope="module")
def stack(kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    directory = tmp_path_factory.mktemp("e2e")
    keys = {"acme": new_key(), "globex": new_key()}
    simulator_port, ingress_port, query_port = free_port(), free_port(), free_port()
    config = directory / "meterline.toml"
    write_config(config, f"http://127.0.0.1:{simulator_port}/v1", keys)
    suffix = uuid.uuid4().hex[:8]
    env = {
        **os.environ,
        "METERLINE_CONFIG_FILE": str(config),
        "METERLINE_DATA_DIR": str(directory / "data"),
        "METERLINE_CLICKHOUSE_DATABASE": f"e2e_{suffix}",
        "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
        "METERLINE_USAGE_TOPIC": f"usage-events-{suffix}",
        "METERLINE_DEAD_LETTER_TOPIC": f"usage-events-dlq-{suffix}",
        "METERLINE_CONSUMER_GROUP": f"meterline-{suffix}",
        "METERLINE_MAX_BATCH_SECONDS": "0.2",
        "DEMO_PROVIDER_KEY": "sk-simulator",
    }
    logs = {name: directory / f"{name}.log" for name in ("simulator", "ingress", "query")}
    with (
        meterline_process(
            ["simulator", "--port", str(simulator_port)], env, logs["simulator"]
        ) as sim,
        meterline_process(
            ["ingress", "--port", str(ingress_port)], env, logs["ingress"]
        ) as ingress,
        meterline_process(["all-in-one", "--port", str(query_port)], env, logs["query"]) as query,
    ):
        wait_http(f"http://127.0.0.1:{simulator_port}/healthz", sim, logs["simulator"])
        wait_http(f"http://127.0.0.1:{ingress_port}/healthz", ingress, logs["ingress"])
        wait_http(f"http://127.0.0.1:{query_port}/healthz", query, logs["query"])
        yield Stack(f"http://127.0.0.1:{ingress_port}", f"http://127.0.0.1:{query_port}", keys)


def send_one(stack: Stack, n: int) -> Sent:
    team = "acme" if n % 4 else "globex"
    client = openai.OpenAI(base_url=f"{stack.gateway}/v1", api_key=stack.keys[team], max_retries=0)
    model = MODELS[n % len(MODELS)]
    user: str | None = f"user_{n % 5}" if n % 7 else None
    tags = sorted({f"plan:{['free', 'pro', 'enterprise'][n % 3]}", f"feature:{n % 4}"})
    messages: Any = [{"role": "user", "content": f"question {n} " * (1 + n % 30)}]
    extra_body: dict[str, Any] = {}
    extra_headers: dict[str, str] = {}
    if n % 3 == 0:
        extra_body["providerOptions"] = {
            "gateway": {"tags": tags, **({"user": user} if user else {})}
        }
    else:
        extra_headers["ai-reporting-tags"] = ",".join(tags)
        if user:
            extra_body["user"] = user
    if n % 5 == 0:
        extra_body["prompt_cache_key"] = "shared-prefix"
    if n % 2:
        streamed = client.chat.completions.with_raw_response.create(
            model=f"openai/{model}",
            messages=messages,
            stream=True,
            stream_options={"include_usage": True},
            extra_body=extra_body,
            extra_headers=extra_headers,
        )
        usage = None
        for chunk in streamed.parse():
            usage = chunk.usage or usage
        headers = streamed.headers
    else:
        raw = client.chat.completions.with_raw_response.create(
            model=f"openai/{model}",
            messages=messages,
            extra_body=extra_body,
            extra_headers=extra_headers,
        )
        usage = raw.parse().usage
        headers = raw.headers
    assert usage is not None
    details = usage.prompt_tokens_details
    reasoning = usage.completion_tokens_details
    return Sent(
        event_id=headers["x-meterline-event-id"],
        team=team,
        user=user,
        tags=tuple(tags),
        model=model,
        usage={
            "input_tokens": usage.prompt_tokens,
            "output_tokens": usage.completion_tokens,
            "cached_input_tokens": (details.cached_tokens or 0) if details else 0,
            "reasoning_tokens": (reasoning.reasoning_tokens or 0) if reasoning else 0,
        },
    )


def get(stack: Stack, team: str, path: str, **params: str) -> Any:
    response = httpx.get(
        f"{stack.reports}{path}",
        params=params,
        headers={"Authorization": f"Bearer {stack.keys[team]}"},
        timeout=10,
    )
    assert response.status_code == 200, response.text
    return json.loads(response.text, parse_float=Decimal)


def expected(
    sent: list[Sent], key: Callable[[Sent], list[tuple[str, ...]]]
) -> dict[tuple[str, ...], dict[str, Decimal | int]]:
    totals: dict[tuple[str, ...], dict[str, Decimal | int]] = defaultdict(
        lambda: {**dict.fromkeys(METRICS, 0), "request_count": 0, "market_cost": Decimal(0)}
    )
    for s in sent:
        for group in key(s):
            row = totals[group]
            for metric in METRICS:
                row[metric] += s.usage[metric]
            row["request_count"] += 1
            row["market_cost"] += s.cost()
    return dict(totals)


def test_every_grouping_equals_the_usage_the_clients_received(stack: Stack) -> None:
    with ThreadPoolExecutor(8) as pool:
        sent = list(pool.map(lambda n: send_one(stack, n), range(120)))

    acme = [s for s in sent if s.team == "acme"]
    dates = {"start_date": (datetime.now().date() - timedelta(days=1)).isoformat()}
    dates["end_date"] = (datetime.now().date() + timedelta(days=1)).isoformat()

    deadline = time.monotonic() + 60
    while True:
        rows = get(stack, "acme", "/v1/report", group_by="user", **dates)["results"]
        if sum(r["request_count"] for r in rows) >= len(acme) or time.monotonic() > deadline:
            break
        time.sleep(0.25)

    for s in sent:
        generation = get(stack, s.team, "/v1/generation", id=s.event_id)
        s.started_at = datetime.fromisoformat(generation["started_at"].replace("Z", "+00:00"))

    def day(s: Sent) -> str:
        assert s.started_at is not None
        return s.started_at.strftime("%Y-%m-%d")

    def hour(s: Sent) -> str:
        assert s.started_at is not None
        return s.started_at.strftime("%Y-%m-%dT%H")

    groupings: dict[str, tuple[dict[str, str], Callable[[Sent], list[tuple[str, ...]]]]] = {
        "day": ({"group_by": "day"}, lambda s: [(day(s),)]),
        "hour": ({"group_by": "day", "date_part": "hour"}, lambda s: [(hour(s),)]),
        "user": ({"group_by": "user"}, lambda s: [(s.user,)]),  # type: ignore[list-item]
        "model": ({"group_by": "model"}, lambda s: [(s.model,)]),
        "provider": ({"group_by": "provider"}, lambda s: [("openai",)]),
        "tag": ({"group_by": "tag"}, lambda s: [(t,) for t in s.tags]),
        "credential_type": ({"group_by": "credential_type"}, lambda s: [("system",)]),
        "day,user": ({"group_by": "day,user"}, lambda s: [(day(s), s.user)]),  # type: ignore[list-item]
    }
    fields = {
        "day": ["day"],
        "hour": ["hour"],
        "user": ["user"],
        "model": ["model"],
        "provider": ["provider"],
        "tag": ["tag"],
        "credential_type": ["credential_type"],
        "day,user": ["day", "user"],
    }
    for name, (params, key) in groupings.items():
        rows = get(stack, "acme", "/v1/report", **params, **dates)["results"]
        got = {
            tuple(r[f] for f in fields[name]): {
                **{m: r[m] for m in METRICS},
                "request_count": r["request_count"],
                "market_cost": Decimal(str(r["market_cost"])),
            }
            for r in rows
        }
        assert got == expected(acme, key), f"group_by {name} differs"
        for r in rows:
            assert Decimal(str(r["total_cost"])) == Decimal(str(r["market_cost"]))

    # The other team sees its own requests only, and none of acme's.
    globex = get(stack, "globex", "/v1/report", group_by="user", **dates)["results"]
    assert sum(r["request_count"] for r in globex) == len(sent) - len(acme)
    foreign = next(s for s in sent if s.team == "acme")
    response = httpx.get(
        f"{stack.reports}/v1/generation",
        params={"id": foreign.event_id},
        headers={"Authorization": f"Bearer {stack.keys['globex']}"},
    )
    assert response.status_code == 404
