"""The AI SDK's own gateway provider (``@ai-sdk/gateway``, what a plain model string such as
``'anthropic/claude-sonnet-4.6'`` goes through) from npm, pointed at ``meterline
all-in-one`` with one line, the simulator as the provider on both wires.

``ai_gateway/client.mjs`` runs the reference product's first sample unchanged, then
generateText and streamText on an OpenAI and an Anthropic model, tool call round trips,
reasoning models, cache reads and writes, and prints each request it sent (one step of a
call) with the usage the SDK returned and the gateway's event id. The report's sums,
grouped by model and by user, must equal that usage exactly, tokens and cost; the cost is
genai-prices' on the simulator's own usage object (the V3 usage's ``raw``), read by
genai-prices' extractors, so the gateway's reading of it is checked independently.

The same client then asks the gateway's metadata calls through the same provider:
getSpendReport by every groupBy, getGenerationInfo for each request, getCredits and
getAvailableModels, parsed by the SDK's schemas; they must equal that usage too."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections import defaultdict
from collections.abc import Callable, Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from genai_prices import calc_price, extract_usage

from tests.support.surfaces import (
    LISTED_MODELS,
    Stack,
    listed_model,
    npm_installed,
    report,
    serve_stack,
    wait_for_requests,
)

pytestmark = [pytest.mark.clickhouse, pytest.mark.e2e]

CLIENT = Path(__file__).parent / "ai_gateway"
COLUMNS = (
    "input_tokens",
    "output_tokens",
    "cached_input_tokens",
    "cache_creation_input_tokens",
    "reasoning_tokens",
)
MONEY = Decimal("1e-12")
SDK_TOKENS = {
    "input_tokens": "inputTokens",
    "output_tokens": "outputTokens",
    "cached_input_tokens": "cachedInputTokens",
    "cache_creation_input_tokens": "cacheCreationInputTokens",
    "reasoning_tokens": "reasoningTokens",
}
"""The report's token columns as the SDK's getSpendReport() names them."""
API_FLAVOR = {"openai": "chat", "anthropic": "default"}
"""How each wire's usage object reads in genai-prices: the OpenAI wire is translated to
Chat Completions, the Anthropic wire to Messages."""


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with serve_stack(tmp_path_factory.mktemp("ai-gateway")) as served:
        yield served


@pytest.fixture(scope="module")
def lines(stack: Stack) -> list[dict[str, Any]]:
    """What client.mjs printed: it runs once, and both tests read its one run."""
    reason = npm_installed(CLIENT)
    if reason is not None:
        pytest.skip(reason)
    ran = subprocess.run(
        [shutil.which("node") or "node", "client.mjs"],
        cwd=CLIENT,
        env={**os.environ, "METERLINE_URL": stack.url, "METERLINE_KEY": stack.key},
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert ran.returncode == 0, ran.stderr
    return [json.loads(line) for line in ran.stdout.splitlines() if line.startswith("{")]


def tokens(step: dict[str, Any]) -> dict[str, int]:
    """The report's columns for one request, from the usage the SDK returned."""
    usage = step["usage"]
    return {
        "input_tokens": usage["inputTokens"],
        "output_tokens": usage["outputTokens"],
        "cached_input_tokens": usage["inputTokenDetails"]["cacheReadTokens"],
        "cache_creation_input_tokens": usage["inputTokenDetails"]["cacheWriteTokens"],
        "reasoning_tokens": usage["outputTokenDetails"]["reasoningTokens"],
    }


def market_cost(step: dict[str, Any]) -> Decimal:
    provider, model = step["model"].split("/", 1)
    extracted = extract_usage(
        {"model": model, "usage": step["usage"]["raw"]},
        provider_id=provider,
        api_flavor=API_FLAVOR[provider],
    )
    price = calc_price(extracted.usage, model_ref=model, provider_id=provider)
    return Decimal(price.total_price).quantize(MONEY)


def totals(
    steps: list[dict[str, Any]], key: Callable[[dict[str, Any]], str]
) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = defaultdict(
        lambda: {
            **dict.fromkeys(COLUMNS, 0),
            "request_count": 0,
            "market_cost": Decimal(0),
            "total_cost": Decimal(0),
        }
    )
    for step in steps:
        row = out[key(step)]
        for column, count in tokens(step).items():
            row[column] += count
        row["request_count"] += 1
        cost = market_cost(step)
        # No price overrides, no BYOK: the team pays list price.
        row["market_cost"] += cost
        row["total_cost"] += cost
    return dict(out)


def reported(stack: Stack, group_by: str) -> dict[str, dict[str, Any]]:
    return {
        row[group_by]: {
            **{column: row[column] for column in COLUMNS},
            "request_count": row["request_count"],
            "market_cost": Decimal(str(row["market_cost"])),
            "total_cost": Decimal(str(row["total_cost"])),
        }
        for row in report(stack, group_by=group_by)
    }


def test_the_ai_sdk_gateway_provider_from_npm_adds_up_by_model_and_by_user(
    stack: Stack, lines: list[dict[str, Any]]
) -> None:
    steps = [line for line in lines if line["kind"] == "step"]
    errors = [line for line in lines if line["kind"] == "error"]
    assert [(e["expected"], e["name"]) for e in errors] == [
        ("GatewayModelNotFoundError", "GatewayModelNotFoundError"),
        ("GatewayAuthenticationError", "GatewayAuthenticationError"),
    ]
    # Every request has its own event, named by the header and the provider metadata alike.
    assert all(s["eventId"] and s["eventId"] == s["generationId"] for s in steps)
    assert len({s["eventId"] for s in steps}) == len(steps)

    calls = {s["call"] for s in steps}
    assert calls >= {"sample", "text-openai", "text-anthropic", "tools-openai"}
    [sample] = [s for s in steps if s["call"] == "sample"]
    assert (sample["model"], sample["user"]) == ("anthropic/claude-sonnet-4.6", "cust-sample")
    streamed = {(s["call"], s["streamed"]) for s in steps}
    assert {("text-openai", False), ("text-openai", True)} <= streamed
    assert {("text-anthropic", False), ("text-anthropic", True)} <= streamed
    # Tool round trips: the call, then the result sent back, in two requests each.
    for wire in ("openai", "anthropic"):
        round_trip = [s for s in steps if s["call"] == f"tools-{wire}"]
        assert len(round_trip) == 2 and round_trip[0]["finishReason"] == "tool-calls"
    by_call = totals(steps, lambda s: str(s["call"]))
    assert by_call["reasoning-openai"]["reasoning_tokens"] > 0
    assert by_call["reasoning-anthropic"]["reasoning_tokens"] > 0
    for wire in ("openai", "anthropic"):
        assert by_call[f"cache-{wire}-cacheReadTokens"]["cached_input_tokens"] > 0
        assert by_call[f"cache-{wire}-cacheWriteTokens"]["cache_creation_input_tokens"] > 0

    wait_for_requests(stack, len(steps))
    assert reported(stack, "model") == totals(steps, lambda s: str(s["model"]).split("/", 1)[1])
    assert reported(stack, "user") == totals(steps, lambda s: str(s["user"]))
    # The sample's tags, as it wrote them.
    tagged = report(stack, group_by="user", tags="code-review,plan-pro", tags_match="all")
    assert [(r["user"], r["request_count"]) for r in tagged] == [("cust-sample", 1)]


def provider_of(step: dict[str, Any]) -> str:
    return str(step["model"]).split("/", 1)[0]


def model_of(step: dict[str, Any]) -> str:
    return str(step["model"]).split("/", 1)[1]


def tags(step: dict[str, Any]) -> list[str]:
    # The sample's own tags; client.mjs tags every other call with the suite's.
    return ["plan-pro", "code-review"] if step["call"] == "sample" else ["suite:ai-gateway"]


def as_spend_rows(
    steps: list[dict[str, Any]], key: Callable[[dict[str, Any]], list[dict[str, str]]]
) -> dict[str, dict[str, Any]]:
    """getSpendReport's rows from the SDK's own usage, keyed by their grouping fields: costs
    as the JavaScript numbers the SDK parses the report's decimals into."""
    sums: dict[str, dict[str, Any]] = {}
    for step in steps:
        for group in key(step):
            name = json.dumps(group, sort_keys=True)
            row = sums.setdefault(
                name,
                {
                    **group,
                    **dict.fromkeys(SDK_TOKENS.values(), 0),
                    "requestCount": 0,
                    "cost": Decimal(0),
                },
            )
            for column, count in tokens(step).items():
                row[SDK_TOKENS[column]] += count
            row["requestCount"] += 1
            row["cost"] += market_cost(step)
    for row in sums.values():
        cost = float(row.pop("cost"))
        # No BYOK and no price overrides: the team pays the market cost.
        row["totalCost"] = row["marketCost"] = cost
    return sums


def spend_rows(results: list[dict[str, Any]], fields: tuple[str, ...]) -> dict[str, Any]:
    keyed = {json.dumps({f: row[f] for f in fields}, sort_keys=True): row for row in results}
    assert len(keyed) == len(results), results
    return keyed


def test_the_gateway_metadata_calls_equal_the_sdks_usage(lines: list[dict[str, Any]]) -> None:
    steps = [line for line in lines if line["kind"] == "step"]
    [metadata] = [line for line in lines if line["kind"] == "metadata"]
    reports = {
        (call["params"]["groupBy"], call["params"].get("datePart")): call["results"]
        for call in metadata["reports"]
    }
    groupings: dict[str, Callable[[dict[str, Any]], list[dict[str, str]]]] = {
        "user": lambda s: [{"user": s["user"]}],
        "model": lambda s: [{"model": model_of(s)}],
        "tag": lambda s: [{"tag": tag} for tag in tags(s)],
        "provider": lambda s: [{"provider": provider_of(s)}],
        "credential_type": lambda s: [{"credentialType": "system"}],
    }
    for group_by, key in groupings.items():
        fields = tuple(key(steps[0])[0])
        assert spend_rows(reports[(group_by, None)], fields) == as_spend_rows(steps, key), group_by
    # By day and by hour every request counts once (a run may straddle an hour or a day).
    everything = as_spend_rows(steps, lambda s: [{}])["{}"]
    for grouping in (("day", None), ("day", "hour")):
        rows = reports[grouping]
        assert all(("hour" in row) == (grouping[1] == "hour") for row in rows), grouping
        for name in (*SDK_TOKENS.values(), "requestCount"):
            assert sum(row[name] for row in rows) == everything[name], (grouping, name)
        assert sum(row["totalCost"] for row in rows) == pytest.approx(everything["totalCost"])

    # Each request's generation: its own usage, cost, model and provider.
    assert [g["id"] for g in metadata["generations"]] == [s["eventId"] for s in steps]
    for step, info in zip(steps, metadata["generations"], strict=True):
        cost = float(market_cost(step))
        usage = tokens(step)
        assert {
            "promptTokens": info["promptTokens"],
            "completionTokens": info["completionTokens"],
            "reasoningTokens": info["reasoningTokens"],
            "cachedTokens": info["cachedTokens"],
            "cacheCreationTokens": info["cacheCreationTokens"],
        } == {
            "promptTokens": usage["input_tokens"],
            "completionTokens": usage["output_tokens"],
            "reasoningTokens": usage["reasoning_tokens"],
            "cachedTokens": usage["cached_input_tokens"],
            "cacheCreationTokens": usage["cache_creation_input_tokens"],
        }, step
        assert (info["totalCost"], info["usage"], info["upstreamInferenceCost"]) == (cost, cost, 0)
        assert (info["model"], info["providerName"]) == (model_of(step), provider_of(step))
        assert (info["isByok"], info["streamed"]) == (False, step["streamed"])
        assert info["finishReason"] and 0 < info["latency"] <= info["generationTime"]

    # No credit configured: the balance is minus what the team used, which is every
    # request's cost, exactly.
    used = sum((market_cost(step) for step in steps), Decimal(0))
    credits = {name: Decimal(value) for name, value in metadata["credits"].items()}
    assert used > 0 and credits == {"balance": -used, "totalUsed": used}

    assert metadata["models"] == [
        listed_model(f"{slug}/{model}", slug, model, slug)
        for slug, models in LISTED_MODELS.items()
        for model in models
    ]
