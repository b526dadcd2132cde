"""``meterline demo``: the whole pipeline on the embedded default, checked.

Starts the provider simulator and ``meterline all-in-one`` (its local log and chDB in a
temporary directory), sends a few hundred requests through the Chat Completions API with
plain HTTP, as any OpenAI client sends them (several users, tags, models, streamed and
not), prints the report grouped by ``day,user`` and by ``tag``, and checks that the report's
totals equal the usage the client received, and its market cost what genai-prices says for
that usage. Then a trial user of a third team runs into its hard budget: refused with a 402
before anything is forwarded, counted in the budget's status, and the budget's alerts reach
the team's webhook (a receiver in this process that checks their signatures)."""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, TextIO

import httpx

from meterline.common.alerts import verify_signature
from meterline.common.config import hash_key, new_key
from meterline.processes import free_port, meterline_process, wait_http

USERS = [f"acct_{n}" for n in range(1001, 1009)]
PLANS = ["plan:enterprise", "plan:pro", "plan:free"]
FEATURES = ["feature:summarize", "feature:chat", "feature:search"]
MODELS = ["gpt-4o", "gpt-4o-mini", "o4-mini"]
METRICS = ("input_tokens", "output_tokens", "cached_input_tokens", "reasoning_tokens")


class Progress:
    """How many requests are done, on stderr: a bar redrawn in place on a terminal, a plain
    line every tenth of the way otherwise (a log file, CI)."""

    WIDTH = 30

    def __init__(self, total: int, stream: TextIO = sys.stderr) -> None:
        self.total, self.done, self.stream = total, 0, stream
        self.tty = stream.isatty()
        self._step = max(1, total // 10)

    def advance(self) -> None:
        self.done += 1
        if self.tty:
            filled = self.WIDTH * self.done // max(self.total, 1)
            bar = "#" * filled + "-" * (self.WIDTH - filled)
            end = "\n" if self.done == self.total else ""
            self.stream.write(f"\r  [{bar}] {self.done}/{self.total}{end}")
            self.stream.flush()
        elif self.done % self._step == 0 or self.done == self.total:
            print(f"  {self.done}/{self.total} requests done", file=self.stream, flush=True)


@dataclass
class Sent:
    requests: int = 0
    tokens: dict[str, int] = field(default_factory=lambda: dict.fromkeys(METRICS, 0))
    market_cost: Decimal = Decimal(0)
    by_tag: dict[str, int] = field(default_factory=dict)


async def chat(client: httpx.AsyncClient, body: dict[str, Any]) -> dict[str, Any]:
    """One Chat Completions call, as any OpenAI client makes it; the usage the gateway passed
    through, from the response or, streamed, from the last chunk that carries it."""
    if not body.get("stream"):
        response = await client.post("/chat/completions", json=body)
        response.raise_for_status()
        usage: dict[str, Any] | None = response.json().get("usage")
    else:
        usage = None
        async with client.stream("POST", "/chat/completions", json=body) as response:
            response.raise_for_status()
            async for line in response.aiter_lines():
                if line.startswith("data: ") and line != "data: [DONE]":
                    usage = json.loads(line.removeprefix("data: ")).get("usage") or usage
    assert usage is not None, "the gateway must pass usage through"
    return usage


async def send_requests(base_url: str, key: str, count: int) -> Sent:
    from genai_prices import Usage, calc_price

    client = httpx.AsyncClient(
        base_url=base_url, headers={"Authorization": f"Bearer {key}"}, timeout=60
    )
    sent = Sent()
    progress = Progress(count)
    limit = asyncio.Semaphore(16)

    async def one(n: int) -> None:
        user, model = USERS[n % len(USERS)], MODELS[n % len(MODELS)]
        tags = [PLANS[n % len(PLANS)], FEATURES[(n // 3) % len(FEATURES)]]
        body: dict[str, Any] = {
            "model": f"openai/{model}",
            "messages": [
                {"role": "system", "content": "You are a concise assistant."},
                {
                    "role": "user",
                    "content": f"Request {n}: summarise ticket {n * 7919 % 10007}. " * (1 + n % 40),
                },
            ],
            "providerOptions": {"gateway": {"user": user, "tags": tags}},
        }
        if n % 5 == 0:
            body["prompt_cache_key"] = f"demo-{n % 3}"
        if n % 2:
            body |= {"stream": True, "stream_options": {"include_usage": True}}
        async with limit:
            usage = await chat(client, body)
        prompt, completion = int(usage["prompt_tokens"]), int(usage["completion_tokens"])
        cached = int((usage.get("prompt_tokens_details") or {}).get("cached_tokens") or 0)
        reasoning = int((usage.get("completion_tokens_details") or {}).get("reasoning_tokens") or 0)
        sent.requests += 1
        sent.tokens["input_tokens"] += prompt
        sent.tokens["output_tokens"] += completion
        sent.tokens["cached_input_tokens"] += cached
        sent.tokens["reasoning_tokens"] += reasoning
        price = calc_price(
            Usage(input_tokens=prompt, output_tokens=completion, cache_read_tokens=cached),
            model_ref=model,
            provider_id="openai",
        )
        sent.market_cost += Decimal(price.total_price)
        for tag in tags:
            sent.by_tag[tag] = sent.by_tag.get(tag, 0) + 1
        progress.advance()

    try:
        await asyncio.gather(*(one(n) for n in range(count)))
    finally:
        await client.aclose()
    return sent


def report(base: str, key: str, **params: str) -> list[dict[str, Any]]:
    today = datetime.now(UTC).date()
    query = {
        "start_date": (today - timedelta(days=1)).isoformat(),
        "end_date": (today + timedelta(days=1)).isoformat(),
        **params,
    }
    response = httpx.get(
        f"{base}/v1/report", params=query, headers={"Authorization": f"Bearer {key}"}, timeout=10
    )
    response.raise_for_status()
    rows: list[dict[str, Any]] = json.loads(response.text, parse_float=Decimal)["results"]
    return rows


def print_table(title: str, rows: list[dict[str, Any]], keys: list[str]) -> None:
    columns = [
        *keys,
        "request_count",
        "input_tokens",
        "output_tokens",
        "cached_input_tokens",
        "reasoning_tokens",
        "market_cost",
        "total_cost",
    ]
    cells = [[str(row.get(c, "")) for c in columns] for row in rows]
    widths = [max(len(c), *(len(r[i]) for r in cells)) for i, c in enumerate(columns)]
    print(f"\n{title}")
    print("  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True)))
    for r in cells:
        print("  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)))


def write_config(path: Path, provider_url: str, keys: dict[str, str]) -> None:
    """A gateway configuration whose ``openai`` provider is the simulator at
    ``provider_url`` (system key from DEMO_PROVIDER_KEY), with one key per team."""
    lines = [
        "[[providers]]",
        'slug = "openai"',
        'wire = "openai"',
        f'base_url = "{provider_url}"',
        'api_key_env = "DEMO_PROVIDER_KEY"',
    ]
    for team, key in keys.items():
        lines += ["", "[[teams]]", f'id = "{team}"', "[[teams.keys]]", 'name = "demo"']
        lines.append(f'sha256 = "{hash_key(key)}"')
    path.write_text("\n".join(lines) + "\n")


def main(requests: int = 300) -> int:
    with tempfile.TemporaryDirectory(prefix="meterline-demo-") as tmp:
        directory = Path(tmp)
        simulator_port, gateway_port = free_port(), free_port()
        key, other_key, trial_key = new_key(), new_key(), new_key()
        receiver = AlertReceiver(free_port(), secrets.token_hex(16))
        config = directory / "meterline.toml"
        write_config(
            config,
            f"http://127.0.0.1:{simulator_port}/v1",
            {"acme": key, "globex": other_key, "initech": trial_key},
        )
        # The last team's budget: every user of initech, a tenth of a cent a day.
        with config.open("a") as file:
            file.write(TRIAL_BUDGET + TRIAL_WEBHOOK.format(url=receiver.url))
        env = {
            **os.environ,
            "METERLINE_CONFIG_FILE": str(config),
            "METERLINE_DATA_DIR": str(directory / "data"),
            "DEMO_PROVIDER_KEY": "sk-demo-simulator",
            "DEMO_WEBHOOK_SECRET": receiver.secret,
            "METERLINE_ALERT_EVALUATE_SECONDS": "1",
            "METERLINE_ALERT_POLL_SECONDS": "0.5",
        }
        env.pop("KAFKA_BOOTSTRAP_SERVERS", None)
        env.pop("CLICKHOUSE_URL", None)
        base = f"http://127.0.0.1:{gateway_port}"
        sim_log, gw_log = directory / "simulator.log", directory / "all-in-one.log"
        with (
            meterline_process(["simulator", "--port", str(simulator_port)], env, sim_log) as sim,
            meterline_process(["all-in-one", "--port", str(gateway_port)], env, gw_log) as gateway,
        ):
            wait_http(f"http://127.0.0.1:{simulator_port}/healthz", sim, sim_log)
            wait_http(f"{base}/healthz", gateway, gw_log)
            print(f"sending {requests} requests through {base}/v1/chat/completions ...")
            started = time.monotonic()
            sent = asyncio.run(send_requests(f"{base}/v1", key, requests))
            print(f"sent {sent.requests} requests in {time.monotonic() - started:.1f}s")

            deadline = time.monotonic() + 30
            while True:
                rows = report(base, key, group_by="user")
                counted = sum(int(r["request_count"]) for r in rows)
                if counted >= requests or time.monotonic() > deadline:
                    break
                time.sleep(0.2)
            print(
                f"report shows {counted} requests {time.monotonic() - started:.1f}s after the first"
            )

            by_day_user = report(base, key, group_by="day,user")
            by_tag = report(base, key, group_by="tag")
            print_table("report grouped by day,user", by_day_user, ["day", "user"])
            print_table("report grouped by tag", by_tag, ["tag"])
            foreign = report(base, other_key, group_by="user")
            checked = check(sent, by_day_user, by_tag, foreign)
            receiver.start()
            try:
                return checked or hit_the_budget(base, trial_key) or alert_received(receiver)
            finally:
                receiver.stop()


TRIAL_BUDGET = """
[[teams.budgets]]
id = "trial-daily"
amount_usd = "0.001"
scope = { user = "*" }
period = "daily"
"""


TRIAL_WEBHOOK = """
[[teams.webhooks]]
name = "demo"
url = "{url}"
secret_env = "DEMO_WEBHOOK_SECRET"
"""


class AlertReceiver:
    """The team's webhook, as a team would write one: each alert's signature verified."""

    def __init__(self, port: int, secret: str):
        self.url = f"http://127.0.0.1:{port}/alerts"
        self.secret = secret
        self.alerts: list[dict[str, Any]] = []
        self.bad_signatures = 0
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                signature = self.headers.get("Meterline-Signature", "")
                if verify_signature(receiver.secret, signature, body, 300):
                    receiver.alerts.append(json.loads(body))
                    self.send_response(200)
                else:
                    receiver.bad_signatures += 1
                    self.send_response(400)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: object) -> None:
                return None

        self._server = ThreadingHTTPServer(("127.0.0.1", port), Handler)

    def start(self) -> None:
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()


def alert_received(receiver: AlertReceiver) -> int:
    """The trial user's budget alerts, as the team's webhook received them."""
    deadline = time.monotonic() + 30
    # The hard budget refused before 100 %: the thresholds below it were crossed.
    while {a["threshold_percent"] for a in receiver.alerts} < {50, 80}:
        if time.monotonic() > deadline:
            print("\nDEMO CHECK FAILED:\n  the 50 % and 80 % alerts did not reach the webhook")
            return 1
        time.sleep(0.2)
    print("\nthe team's webhook received (signature verified):")
    for alert in sorted(receiver.alerts, key=lambda a: a["threshold_percent"]):
        print(f"  {alert['kind']} {alert['threshold_percent']}%: {alert['message']}")
    if receiver.bad_signatures:
        print(f"\nDEMO CHECK FAILED:\n  {receiver.bad_signatures} alerts with a bad signature")
        return 1
    return 0


def hit_the_budget(base: str, key: str) -> int:
    """Requests of one trial user until its budget refuses one; the refusal and the
    budget's status printed."""
    print("\na trial user of team initech (budget: $0.001 a day per user) asks until refused:")
    code: str | None = None
    for n in range(1, 101):
        response = httpx.post(
            f"{base}/v1/chat/completions",
            headers={"Authorization": f"Bearer {key}"},
            json={
                "model": "openai/gpt-4o",
                "messages": [{"role": "user", "content": f"Trial question {n}."}],
                "max_tokens": 40,
                "providerOptions": {"gateway": {"user": "trial-user"}},
            },
            timeout=60,
        )
        if response.is_error:
            error = response.json()["error"]
            print(f"  request {n}: HTTP {response.status_code} {error['code']}: {error['message']}")
            code = error["code"]
            break
        print(f"  request {n}: answered")
    else:
        print("\nDEMO CHECK FAILED:\n  the trial user was never refused")
        return 1
    time.sleep(2.5)  # the refusal reaches the status with the gateway's next refresh
    status = httpx.get(
        f"{base}/v1/budgets/status",
        headers={"Authorization": f"Bearer {key}"},
        timeout=10,
    ).json()["results"][0]
    [value] = status["values"]
    print(
        f"  budget {status['budget']['id']}: {value['value']} spent ${value['spend']} of "
        f"${value['limit']}, {value['blocked']} refused, resets at {status['resets_at']}"
    )
    if code != "quota_for_entity_exceeded" or value["blocked"] < 1:
        print("\nDEMO CHECK FAILED:\n  the refusal is not in the budget's status")
        return 1
    print("OK: the trial user was refused before the provider was asked, and it was counted.")
    return 0


def check(
    sent: Sent,
    by_day_user: list[dict[str, Any]],
    by_tag: list[dict[str, Any]],
    foreign: list[dict[str, Any]],
) -> int:
    problems = []
    got_requests = sum(int(r["request_count"]) for r in by_day_user)
    if got_requests != sent.requests:
        problems.append(f"request_count {got_requests} != {sent.requests} sent")
    for metric in METRICS:
        got = sum(int(r[metric]) for r in by_day_user)
        if got != sent.tokens[metric]:
            problems.append(f"{metric} {got} != {sent.tokens[metric]} received")
    market = sum((Decimal(str(r["market_cost"])) for r in by_day_user), Decimal(0))
    if market != sent.market_cost:
        problems.append(f"market_cost {market} != {sent.market_cost} from genai-prices")
    tag_counts = {r["tag"]: int(r["request_count"]) for r in by_tag}
    if tag_counts != sent.by_tag:
        problems.append(f"tag counts {tag_counts} != {sent.by_tag}")
    if foreign:
        problems.append(f"another team's key sees {len(foreign)} rows")
    if problems:
        print("\nDEMO CHECK FAILED:\n  " + "\n  ".join(problems))
        return 1
    print(
        f"\nOK: the report's totals equal the usage the client received: {sent.requests} requests, "
        + ", ".join(f"{sent.tokens[m]} {m}" for m in METRICS)
        + f", market cost ${sent.market_cost} (genai-prices); another team's key sees nothing."
    )
    return 0
