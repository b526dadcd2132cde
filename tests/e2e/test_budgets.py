"""Hard budgets end to end, on the real Kafka broker and the embedded engine: the simulator
as the provider, ``meterline all-in-one`` (its own ingress, the consumer and the query
service) and two more ``meterline ingress`` replicas that read the committed spend from it.

(a) 200 concurrent requests from the official OpenAI and Anthropic SDKs, on three surfaces,
against a budget with room for a few dozen: once everything has settled the report's spend
is within the budget (the single-process bound: estimates bound each request's cost),
every refused request got a 402 in its surface's format and none of them is in the report.
(c) Two replicas at a steady rate against one budget: the overshoot stays within the
README's bound for N replicas, refresh interval R and rate λ."""

from __future__ import annotations

import os
import re
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import anthropic
import httpx
import openai
import pytest

from meterline.common.config import hash_key, new_key
from meterline.processes import free_port, meterline_process, wait_http

pytestmark = [pytest.mark.e2e, pytest.mark.kafka, pytest.mark.clickhouse]

BURST_LIMIT = Decimal("0.01")
STEADY_LIMIT = Decimal("0.01")
REFRESH_SECONDS = 0.5
MAX_TOKENS = 100
REPLICAS = {"METERLINE_BUDGET_REPLICAS": "2"}


@dataclass(frozen=True)
class Stack:
    all_in_one: str
    replicas: tuple[str, str]
    keys: dict[str, str]


def write_config(path: Path, simulator: str, keys: dict[str, str]) -> None:
    teams = "".join(
        f"""
[[teams]]
id = "{team}"
[[teams.keys]]
name = "app"
sha256 = "{hash_key(key)}"
[[teams.budgets]]
id = "all"
amount_usd = "{limit}"
period = "daily"
timezone = "Europe/Berlin"
"""
        for team, key, limit in (
            ("burst", keys["burst"], BURST_LIMIT),
            ("steady", keys["steady"], STEADY_LIMIT),
        )
    )
    path.write_text(
        f"""
[[providers]]
slug = "openai"
base_url = "{simulator}/v1"
api_key_env = "BUDGET_PROVIDER_KEY"

[[providers]]
slug = "anthropic"
wire = "anthropic"
base_url = "{simulator}/v1"
api_key_env = "BUDGET_PROVIDER_KEY"
"""
        + teams
    )


@pytest.fixture(scope="module")
def stack(kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    directory = tmp_path_factory.mktemp("budgets")
    keys = {"burst": new_key(), "steady": new_key()}
    ports = [free_port() for _ in range(4)]
    simulator, gateway, replica_ports = ports[0], ports[1], ports[2:]
    config = directory / "meterline.toml"
    write_config(config, f"http://127.0.0.1:{simulator}", keys)
    suffix = uuid.uuid4().hex[:8]
    env = {
        **os.environ,
        "METERLINE_CONFIG_FILE": str(config),
        "METERLINE_DATA_DIR": str(directory / "data"),
        "METERLINE_CLICKHOUSE_DATABASE": f"budgets_{suffix}",
        "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
        "METERLINE_USAGE_TOPIC": f"usage-events-{suffix}",
        "METERLINE_DEAD_LETTER_TOPIC": f"usage-events-dlq-{suffix}",
        "METERLINE_CONSUMER_GROUP": f"meterline-{suffix}",
        "METERLINE_MAX_BATCH_SECONDS": "0.2",
        "METERLINE_BUDGET_REFRESH_SECONDS": str(REFRESH_SECONDS),
        "METERLINE_INTERNAL_TOKEN": f"internal-{suffix}",
        "METERLINE_BUDGET_SPEND_URL": f"http://127.0.0.1:{gateway}",
        "BUDGET_PROVIDER_KEY": "sk-simulator",
    }
    env.pop("CLICKHOUSE_URL", None)
    logs = {name: directory / f"{name}.log" for name in ("simulator", "all-in-one", "r0", "r1")}
    with (
        meterline_process(["simulator", "--port", str(simulator)], env, logs["simulator"]) as sim,
        meterline_process(["all-in-one", "--port", str(gateway)], env, logs["all-in-one"]) as aio,
    ):
        wait_http(f"http://127.0.0.1:{simulator}/healthz", sim, logs["simulator"])
        wait_http(f"http://127.0.0.1:{gateway}/healthz", aio, logs["all-in-one"])
        with (
            meterline_process(
                ["ingress", "--port", str(replica_ports[0])],
                {**env, "METERLINE_DATA_DIR": str(directory / "r0"), **REPLICAS},
                logs["r0"],
            ) as r0,
            meterline_process(
                ["ingress", "--port", str(replica_ports[1])],
                {**env, "METERLINE_DATA_DIR": str(directory / "r1"), **REPLICAS},
                logs["r1"],
            ) as r1,
        ):
            replicas = tuple(f"http://127.0.0.1:{port}" for port in replica_ports)
            wait_http(f"{replicas[0]}/healthz", r0, logs["r0"])
            wait_http(f"{replicas[1]}/healthz", r1, logs["r1"])
            yield Stack(f"http://127.0.0.1:{gateway}", (replicas[0], replicas[1]), keys)


@dataclass(frozen=True)
class Outcome:
    user: str
    surface: str
    status: int
    code: str | None
    error_type: str | None
    message: str = ""

    @property
    def estimate(self) -> Decimal:
        """The request's estimated cost, as its refusal states it."""
        found = re.search(r"may cost up to \$([0-9.]+);", self.message)
        assert found, self.message
        return Decimal(found[1])


def send(base: str, key: str, n: int, user: str) -> Outcome:
    """One request on one of three surfaces (streamed or not), as its SDK reports it."""
    surface = ("chat_completions", "responses", "messages")[n % 3]
    streamed = n % 2 == 1
    body: dict[str, Any] = {"providerOptions": {"gateway": {"user": user}}}
    prompt = f"Budget question {n}: how much is left?"
    try:
        if surface == "messages":
            client = anthropic.Anthropic(base_url=base, api_key=key, max_retries=0)
            if streamed:
                with client.messages.stream(
                    model="anthropic/claude-haiku-4-5",
                    max_tokens=MAX_TOKENS,
                    messages=[{"role": "user", "content": prompt}],
                    extra_body=body,
                ) as stream:
                    stream.get_final_message()
            else:
                client.messages.create(
                    model="anthropic/claude-haiku-4-5",
                    max_tokens=MAX_TOKENS,
                    messages=[{"role": "user", "content": prompt}],
                    extra_body=body,
                )
            return Outcome(user, surface, 200, None, None)
        oa = openai.OpenAI(base_url=f"{base}/v1", api_key=key, max_retries=0)
        if surface == "chat_completions":
            answer = oa.chat.completions.create(
                model="openai/gpt-4o-mini",
                messages=[{"role": "user", "content": prompt}],
                max_tokens=MAX_TOKENS,
                stream=streamed,
                extra_body=body,
            )
            if streamed:
                for _ in answer:
                    pass
        else:
            response = oa.responses.create(
                model="openai/gpt-4o-mini",
                input=prompt,
                max_output_tokens=MAX_TOKENS,
                stream=streamed,
                extra_body=body,
            )
            if streamed:
                for _ in response:
                    pass
        return Outcome(user, surface, 200, None, None)
    except openai.APIStatusError as error:
        detail = error.body if isinstance(error.body, dict) else {}
        return Outcome(
            user, surface, error.status_code, error.code, detail.get("type"), error.message
        )
    except anthropic.APIStatusError as error:
        detail = error.body.get("error", {}) if isinstance(error.body, dict) else {}
        return Outcome(
            user,
            surface,
            error.status_code,
            detail.get("code"),
            detail.get("type"),
            detail.get("message", ""),
        )


def report(stack: Stack, key: str, **params: str) -> list[dict[str, Any]]:
    response = httpx.get(
        f"{stack.all_in_one}/v1/report",
        params={
            "start_date": time.strftime("%Y-%m-%d", time.gmtime(time.time() - 86400)),
            "end_date": time.strftime("%Y-%m-%d", time.gmtime(time.time() + 86400)),
            **params,
        },
        headers={"Authorization": f"Bearer {key}"},
        timeout=10,
    )
    assert response.status_code == 200, response.text
    rows: list[dict[str, Any]] = response.json()["results"]
    return rows


def settled_report(stack: Stack, key: str, answered: int) -> list[dict[str, Any]]:
    deadline = time.monotonic() + 60
    while True:
        rows = report(stack, key, group_by="user")
        if sum(r["request_count"] for r in rows) >= answered:
            return rows
        assert time.monotonic() < deadline, "the report did not reach every answered request"
        time.sleep(0.3)


def budget_status(stack: Stack, key: str) -> dict[str, Any]:
    response = httpx.get(
        f"{stack.all_in_one}/v1/budgets/status",
        headers={"Authorization": f"Bearer {key}"},
        timeout=10,
    )
    assert response.status_code == 200, response.text
    [status] = response.json()["results"]
    assert isinstance(status, dict)
    return status


def test_concurrent_requests_against_the_last_cents_stay_within_the_budget(stack: Stack) -> None:
    key = stack.keys["burst"]
    with ThreadPoolExecutor(max_workers=200) as pool:
        outcomes = list(pool.map(lambda n: send(stack.all_in_one, key, n, f"user-{n}"), range(200)))
    answered = [o for o in outcomes if o.status == 200]
    refused = [o for o in outcomes if o.status != 200]
    assert answered and refused, [o.status for o in outcomes]
    for o in refused:
        assert o.status == 402 and o.code == "quota_for_entity_exceeded", o
        assert o.error_type == (
            "billing_error" if o.surface == "messages" else "insufficient_quota"
        )

    rows = settled_report(stack, key, len(answered))
    time.sleep(1)  # nothing more arrives: the refused requests were never forwarded
    rows = report(stack, key, group_by="user")
    assert sorted(r["user"] for r in rows) == sorted(o.user for o in answered)
    assert all(r["request_count"] == 1 for r in rows)
    spent = sum(Decimal(str(r["total_cost"])) for r in rows)
    # One process, estimates that bound each request's cost: the budget is never passed.
    assert Decimal(0) < spent <= BURST_LIMIT

    status = budget_status(stack, key)
    assert status["budget"]["id"] == "all" and status["budget"]["timezone"] == "Europe/Berlin"
    [value] = status["values"]
    assert Decimal(value["spend"]) == spent
    assert Decimal(value["remaining"]) == BURST_LIMIT - spent
    # Refusals reach the status with the replica's next refresh.
    deadline = time.monotonic() + 10
    while value["blocked"] < len(refused) and time.monotonic() < deadline:
        time.sleep(REFRESH_SECONDS)
        [value] = budget_status(stack, key)["values"]
    assert value["blocked"] == len(refused)

    # The all-in-one's own ingress counted them too, and says what is left once its own
    # reservations have given way to the warehouse's spend (a refresh a margin after the
    # events landed).
    def series(lines: list[str], name: str) -> Decimal | None:
        prefix = f'{name}{{team="burst",budget="all"}} '
        found = [line.removeprefix(prefix) for line in lines if line.startswith(prefix)]
        return Decimal(found[0]) if found else None

    deadline = time.monotonic() + 15
    while True:
        metrics = httpx.get(f"{stack.all_in_one}/metrics", timeout=10).text.splitlines()
        blocked = series(metrics, "meterline_budget_blocked_total")
        left = series(metrics, "meterline_budget_remaining_usd")
        if blocked == len(refused) and left == BURST_LIMIT - spent:
            break
        assert time.monotonic() < deadline, (blocked, left, BURST_LIMIT - spent)
        time.sleep(REFRESH_SECONDS)


def test_two_replicas_overshoot_within_the_stated_bound(stack: Stack) -> None:
    """README "Budgets": with N replicas refreshing every R seconds, at a total rate λ,
    each replica learns of the others' spend at most R + D late (D: from an answer to its
    event in the rollup), so the overshoot is at most (N - 1) / N * λ * (R + D) * c_max,
    c_max being the largest estimate of one request. Each replica also holds at most 1/N of
    what was left at its refresh (METERLINE_BUDGET_REPLICAS), which keeps it far below."""
    key = stack.keys["steady"]
    rate = 20.0  # requests per second, over both replicas
    outcomes: list[Outcome] = []
    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=32) as pool:
        futures = []
        for n in range(160):
            base = stack.replicas[n % 2]
            futures.append(pool.submit(send, base, key, n, f"steady-{n}"))
            time.sleep(max(0.0, started + (n + 1) / rate - time.monotonic()))
        outcomes = [f.result() for f in futures]
    answered = [o for o in outcomes if o.status == 200]
    refused = [o for o in outcomes if o.status != 200]
    assert answered and refused
    assert all(o.status == 402 and o.code == "quota_for_entity_exceeded" for o in refused)
    rows = settled_report(stack, key, len(answered))
    spent = sum(Decimal(str(r["total_cost"])) for r in rows)
    # c_max: the dearest estimate, as the refusals state theirs.
    c_max = max(o.estimate for o in refused)
    delay = Decimal(REFRESH_SECONDS) + Decimal(2)  # R + D, D generously 2 s on 2 cores
    bound = Decimal(1) / 2 * Decimal(str(rate)) * delay * c_max
    assert spent <= STEADY_LIMIT + bound, (spent, STEADY_LIMIT, bound)
