"""The AI SDK gateway provider's metadata calls (``@ai-sdk/gateway`` from npm) against
``meterline all-in-one``, the simulator as the provider.

A few requests go through the OpenAI SDK first (Chat Completions and Responses, streamed
and not, system keys and BYOK, two teams); then ``ai_gateway/metadata.mjs`` calls
``getSpendReport`` (every groupBy, each filter), ``getGenerationInfo`` for each request,
``getCredits`` and ``getAvailableModels``, all parsed by the SDK's own schemas. What it
returns must equal the report and what the clients received, exactly: tokens, and costs as
genai-prices prices the simulator's usage objects. Its errors must be the SDK's classes."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from openai.types.responses import ResponseCompletedEvent

from meterline.common.config import hash_key
from tests.integration.surfaces.test_sdk_surfaces import Sent, sent
from tests.support.surfaces import (
    PROVIDER_KEY_ENV,
    Stack,
    listed_model,
    npm_installed,
    report,
    serve_stack,
)

pytestmark = [pytest.mark.clickhouse, pytest.mark.e2e]

CLIENT = Path(__file__).parent / "ai_gateway"
CREDIT = Decimal("25.5")
TODAY = datetime.now(UTC).date()
RANGE = {
    "start_date": (TODAY - timedelta(days=1)).isoformat(),
    "end_date": (TODAY + timedelta(days=1)).isoformat(),
}
CONFIGURED = [
    # (id, provider slug, model, genai-prices provider)
    ("openai/gpt-4o", "openai", "gpt-4o", "openai"),
    ("openai/gpt-4o-mini", "openai", "gpt-4o-mini", "openai"),
    ("openai/o4-mini", "openai", "o4-mini", "openai"),
    ("openai-eu/gpt-5-mini", "openai-eu", "gpt-5-mini", "openai"),
    ("anthropic/claude-sonnet-4-6", "anthropic", "claude-sonnet-4-6", "anthropic"),
]


def write_config(path: Path, simulator: str, keys: dict[str, str]) -> None:
    path.write_text(
        f"""
[[providers]]
slug = "openai"
base_url = "{simulator}/v1"
api_key_env = "{PROVIDER_KEY_ENV}"
models = ["gpt-4o", "gpt-4o-mini", "o4-mini"]

[[providers]]
slug = "openai-eu"
base_url = "{simulator}/v1"
api_key_env = "{PROVIDER_KEY_ENV}"
prices_as = "openai"
models = ["gpt-5-mini"]

[[providers]]
slug = "anthropic"
wire = "anthropic"
base_url = "{simulator}/v1"
api_key_env = "{PROVIDER_KEY_ENV}"
models = ["claude-sonnet-4-6"]

[[teams]]
id = "acme"
credit_usd = "{CREDIT}"
[[teams.keys]]
name = "sdk"
sha256 = "{hash_key(keys["acme"])}"

[[teams]]
id = "globex"
[[teams.keys]]
name = "sdk"
sha256 = "{hash_key(keys["globex"])}"
"""
    )


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with serve_stack(tmp_path_factory.mktemp("ai-gateway-metadata"), write_config) as served:
        yield served


@dataclass(frozen=True)
class Request:
    """One request as its client saw it (``sent``: tokens, and the market cost of its usage
    object), and what it was sent as."""

    sent: Sent
    team: str
    provider: str
    user: str | None
    tags: tuple[str, ...]
    byok: bool
    streamed: bool

    @property
    def total_cost(self) -> Decimal:
        # No price overrides: list price with the gateway's keys, nothing with the team's own.
        return Decimal(0) if self.byok else self.sent.market_cost


def send(
    stack: Stack,
    surface: str,
    model_id: str,
    *,
    team: str = "acme",
    user: str | None,
    tags: tuple[str, ...],
    byok: bool = False,
    streamed: bool = False,
    **extra: Any,
) -> Request:
    gateway: dict[str, Any] = {"tags": list(tags)}
    if user is not None:
        gateway["user"] = user
    if byok:
        gateway["byok"] = {model_id.split("/")[0]: [{"apiKey": "sk-metadata-byok"}]}
    body = {"providerOptions": {"gateway": gateway}, **extra}
    key = stack.key if team == "acme" else stack.other_key
    client = openai.OpenAI(base_url=f"{stack.url}/v1", api_key=key, max_retries=0)
    usage: Any = None
    if surface == "chat_completions":
        messages: Any = [{"role": "user", "content": f"Metadata for {user} about {model_id}."}]
        if streamed:
            chunks = client.chat.completions.with_raw_response.create(
                model=model_id,
                messages=messages,
                stream=True,
                stream_options={"include_usage": True},
                extra_body=body,
            )
            event_id = chunks.headers["x-meterline-event-id"]
            for chunk in chunks.parse():
                usage = chunk.usage or usage
        else:
            answer = client.chat.completions.with_raw_response.create(
                model=model_id, messages=messages, extra_body=body
            )
            event_id, usage = answer.headers["x-meterline-event-id"], answer.parse().usage
    else:
        prompt = f"Metadata for {user} about {model_id}."
        if streamed:
            with client.responses.with_streaming_response.create(
                model=model_id, input=prompt, stream=True, extra_body=body
            ) as events:
                event_id = events.headers["x-meterline-event-id"]
                done = [e for e in events.parse() if e.type == "response.completed"][-1]
                assert isinstance(done, ResponseCompletedEvent)
                usage = done.response.usage
        else:
            answered = client.responses.with_raw_response.create(
                model=model_id, input=prompt, extra_body=body
            )
            event_id, usage = answered.headers["x-meterline-event-id"], answered.parse().usage
    assert usage is not None
    provider, _, model = model_id.partition("/")
    # Every provider here is priced as OpenAI (openai-eu by prices_as).
    seen = sent(event_id, surface, "openai", model, user or "", usage.model_dump())
    return Request(seen, team, provider, user, tags, byok, streamed)


@pytest.fixture(scope="module")
def requests(stack: Stack) -> list[Request]:
    sent_ = [
        send(stack, "chat_completions", "openai/gpt-4o", user="ana", tags=("feature:chat",)),
        send(
            stack,
            "chat_completions",
            "openai/gpt-4o-mini",
            user=None,
            tags=("feature:chat", "plan:pro"),
            streamed=True,
        ),
        send(
            stack,
            "responses",
            "openai/gpt-4o-mini",
            user="ana",
            tags=("feature:search",),
            byok=True,
        ),
        send(
            stack,
            "responses",
            "openai-eu/gpt-5-mini",
            user="bo",
            tags=("plan:pro",),
            streamed=True,
        ),
        send(
            stack,
            "chat_completions",
            "openai/o4-mini",
            user="bo",
            tags=("plan:pro",),
            prompt_cache_key="metadata",
        ),
        send(
            stack,
            "chat_completions",
            "openai/gpt-4o",
            team="globex",
            user="zed",
            tags=("feature:chat",),
        ),
    ]
    # The mix has what it sets out to have: cache reads, reasoning, no user, BYOK, streams.
    assert any(r.sent.tokens["cached_input_tokens"] > 0 for r in sent_)
    assert any(r.sent.tokens["reasoning_tokens"] > 0 for r in sent_)
    deadline = time.monotonic() + 30
    for team, key in (("acme", stack.key), ("globex", stack.other_key)):
        want = sum(r.team == team for r in sent_)
        while sum(row["request_count"] for row in report(stack, key, group_by="user")) < want:
            assert time.monotonic() < deadline, f"the report did not reach {want} for {team}"
            time.sleep(0.2)
    return sent_


FILTERS: list[tuple[dict[str, Any], Callable[[Request], bool]]] = [
    ({"groupBy": "model", "userId": "ana"}, lambda r: r.user == "ana"),
    ({"groupBy": "user", "model": "gpt-4o-mini"}, lambda r: r.sent.model == "gpt-4o-mini"),
    (
        {"groupBy": "user", "model": "openai-eu/gpt-5-mini"},
        lambda r: (r.provider, r.sent.model) == ("openai-eu", "gpt-5-mini"),
    ),
    ({"groupBy": "model", "provider": "openai-eu"}, lambda r: r.provider == "openai-eu"),
    ({"groupBy": "user", "credentialType": "byok"}, lambda r: r.byok),
    ({"groupBy": "provider", "credentialType": "system"}, lambda r: not r.byok),
    (
        {"groupBy": "tag", "tags": ["feature:search", "plan:pro"]},
        lambda r: bool({"feature:search", "plan:pro"} & set(r.tags)),
    ),
]
QUERY_NAMES = {
    "groupBy": "group_by",
    "datePart": "date_part",
    "userId": "user_id",
    "model": "model",
    "provider": "provider",
    "credentialType": "credential_type",
    "tags": "tags",
}
SDK_METRICS = {
    "total_cost": "totalCost",
    "market_cost": "marketCost",
    "input_tokens": "inputTokens",
    "output_tokens": "outputTokens",
    "cached_input_tokens": "cachedInputTokens",
    "cache_creation_input_tokens": "cacheCreationInputTokens",
    "reasoning_tokens": "reasoningTokens",
    "request_count": "requestCount",
}
GROUP_FIELDS = {"day", "hour", "user", "model", "tag", "provider"}


def run_metadata(stack: Stack, requests: list[Request]) -> dict[str, Any]:
    reason = npm_installed(CLIENT)
    if reason is not None:
        pytest.skip(reason)
    ran = subprocess.run(
        [shutil.which("node") or "node", "metadata.mjs"],
        cwd=CLIENT,
        env={
            **os.environ,
            "METERLINE_URL": stack.url,
            "METERLINE_KEY": stack.key,
            "METERLINE_OTHER_KEY": stack.other_key,
            "METERLINE_START_DATE": RANGE["start_date"],
            "METERLINE_END_DATE": RANGE["end_date"],
            "METERLINE_EVENT_IDS": ",".join(r.sent.event_id for r in requests if r.team == "acme"),
            "METERLINE_OTHER_TEAM_EVENT_ID": next(
                r.sent.event_id for r in requests if r.team == "globex"
            ),
            "METERLINE_FILTERS": json.dumps([params for params, _ in FILTERS]),
        },
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert ran.returncode == 0, ran.stderr
    result: dict[str, Any] = json.loads(ran.stdout)
    return result


@pytest.fixture(scope="module")
def metadata(stack: Stack, requests: list[Request]) -> dict[str, Any]:
    return run_metadata(stack, requests)


def as_the_sdk_reads(row: dict[str, Any]) -> dict[str, Any]:
    """A /v1/report row as the SDK's schema returns it: the grouping fields it knows,
    credential_type and the metrics renamed, costs as JavaScript numbers, the rest dropped."""
    out: dict[str, Any] = {k: v for k, v in row.items() if k in GROUP_FIELDS and v is not None}
    if "credential_type" in row:
        out["credentialType"] = row["credential_type"]
    for name, sdk_name in SDK_METRICS.items():
        value = row[name]
        out[sdk_name] = float(value) if isinstance(value, Decimal) else value
    return out


Key = Callable[["Request"], list[tuple[tuple[str, Any], ...]]]


def expected_rows(requests: list[Request], key: Key) -> list[dict[str, Any]]:
    """The SDK's rows for a grouping, from what the clients received, keyed by ``key``'s
    (field, value) pairs (a None value: the field is absent)."""
    groups: dict[tuple[tuple[str, Any], ...], dict[str, Any]] = defaultdict(
        lambda: {**dict.fromkeys(SDK_METRICS.values(), 0), "totalCost": Decimal(0)}
    )
    for r in requests:
        for group in key(r):
            row = groups[group]
            row["totalCost"] += r.total_cost
            row["marketCost"] += r.sent.market_cost
            for name, sdk_name in SDK_METRICS.items():
                if name in r.sent.tokens:
                    row[sdk_name] += r.sent.tokens[name]
            row["requestCount"] += 1
    return [
        {
            **{field: value for field, value in group if value is not None},
            **row,
            "totalCost": float(row["totalCost"]),
            "marketCost": float(row["marketCost"]),
        }
        for group, row in groups.items()
    ]


def by_group(rows: list[dict[str, Any]]) -> dict[tuple[tuple[str, Any], ...], dict[str, Any]]:
    found = {}
    for row in rows:
        group = tuple(sorted((k, v) for k, v in row.items() if k not in SDK_METRICS.values()))
        assert group not in found, group
        found[group] = row
    return found


GROUPINGS: dict[str, Key] = {
    "user": lambda r: [(("user", r.user),)],
    "model": lambda r: [(("model", r.sent.model),)],
    "tag": lambda r: [(("tag", tag),) for tag in r.tags],
    "provider": lambda r: [(("provider", r.provider),)],
    "credential_type": lambda r: [(("credentialType", "byok" if r.byok else "system"),)],
}


def report_rows(stack: Stack, params: dict[str, Any]) -> list[dict[str, Any]]:
    query = {QUERY_NAMES[k]: ",".join(v) if isinstance(v, list) else v for k, v in params.items()}
    return report(stack, **query)


def test_spend_reports_equal_the_report_and_the_clients_usage(
    stack: Stack, requests: list[Request], metadata: dict[str, Any]
) -> None:
    own = [r for r in requests if r.team == "acme"]
    reports = metadata["reports"]
    assert [call["params"].get("groupBy") for call in reports[: len(GROUPINGS) + 2]] == [
        "day",
        "day",
        "user",
        "model",
        "tag",
        "provider",
        "credential_type",
    ]
    for call in reports:
        # The SDK read exactly what the report says.
        params = call["params"]
        want = [as_the_sdk_reads(row) for row in report_rows(stack, params)]
        assert call["results"] == want, params
    for call in reports[:2]:
        # By day and by hour: every request once.
        totals = expected_rows(own, lambda r: [()])[0]
        for name in SDK_METRICS.values():
            assert sum(row[name] for row in call["results"]) == pytest.approx(totals[name]), name
        assert all(
            ("hour" in row) == (call["params"].get("datePart") == "hour") for row in call["results"]
        )
    for call in reports[2 : len(GROUPINGS) + 2]:
        key = GROUPINGS[call["params"]["groupBy"]]
        assert by_group(call["results"]) == by_group(expected_rows(own, key)), call["params"]
    # The request without a user has no user field, rather than a null the SDK refuses.
    assert any("user" not in row for row in reports[2]["results"])
    for (params, keep), call in zip(FILTERS, reports[len(GROUPINGS) + 2 :], strict=True):
        assert call["params"] == params
        key = GROUPINGS[params["groupBy"]]
        matching = [r for r in own if keep(r)]
        assert matching, params
        assert by_group(call["results"]) == by_group(expected_rows(matching, key)), params
    # Another team's key: its own request only.
    globex = [r for r in requests if r.team == "globex"]
    assert by_group(metadata["otherTeamReport"]) == by_group(
        expected_rows(globex, GROUPINGS["user"])
    )


def test_generation_info_of_each_request(
    stack: Stack, requests: list[Request], metadata: dict[str, Any]
) -> None:
    own = [r for r in requests if r.team == "acme"]
    generations = metadata["generations"]
    assert len(generations) == len(own)
    for r, info in zip(own, generations, strict=True):
        raw = httpx.get(
            f"{stack.url}/v1/generation",
            params={"id": r.sent.event_id},
            headers={"Authorization": f"Bearer {stack.key}"},
            timeout=10,
        ).json()
        first_token = raw["time_to_first_token_ms"]
        assert info == {
            "id": r.sent.event_id,
            "totalCost": float(r.total_cost),
            "upstreamInferenceCost": float(r.sent.market_cost) if r.byok else 0,
            "usage": float(r.total_cost),
            "createdAt": raw["started_at"],
            "model": r.sent.model,
            "isByok": r.byok,
            "providerName": r.provider,
            "streamed": r.streamed,
            "finishReason": raw["finish_reason"],
            "latency": raw["duration_ms"] if first_token is None else first_token,
            "generationTime": raw["duration_ms"],
            "promptTokens": r.sent.tokens["input_tokens"],
            "completionTokens": r.sent.tokens["output_tokens"],
            "reasoningTokens": r.sent.tokens["reasoning_tokens"],
            "cachedTokens": r.sent.tokens["cached_input_tokens"],
            "cacheCreationTokens": r.sent.tokens["cache_creation_input_tokens"],
            "billableWebSearchCalls": 0,
        }, r
        assert info["finishReason"] and info["latency"] <= info["generationTime"]
        assert (first_token is not None) == r.streamed


def test_credits_are_the_credit_minus_the_teams_total_cost(
    requests: list[Request], metadata: dict[str, Any]
) -> None:
    for team, credits, credit in (
        ("acme", metadata["credits"], CREDIT),
        ("globex", metadata["otherTeamCredits"], Decimal(0)),
    ):
        used = sum((r.total_cost for r in requests if r.team == team), Decimal(0))
        assert used > 0
        assert {name: Decimal(value) for name, value in credits.items()} == {
            "balance": credit - used,
            "totalUsed": used,
        }, team
    # The BYOK request's market cost is not spent from the credit.
    assert any(r.byok and r.sent.market_cost > 0 for r in requests)


def test_available_models_are_the_configured_ones_at_list_price(
    stack: Stack, metadata: dict[str, Any]
) -> None:
    want = [
        listed_model(model_id, slug, model, priced_as)
        for model_id, slug, model, priced_as in CONFIGURED
    ]
    assert metadata["models"] == want


def test_errors_are_the_sdks_own_classes(metadata: dict[str, Any]) -> None:
    errors = metadata["errors"]
    for call, error in errors["wrongKey"].items():
        assert error is not None, call
        assert (error["name"], error["statusCode"]) == ("GatewayAuthenticationError", 401), call
    assert (errors["badDate"]["name"], errors["badDate"]["statusCode"]) == (
        "GatewayInvalidRequestError",
        400,
    )
    assert errors["badDate"]["message"].startswith("start_date: ")
    assert (errors["badId"]["name"], errors["badId"]["statusCode"]) == (
        "GatewayInvalidRequestError",
        400,
    )
    # The SDK has no class for a missing generation: its catch-all, with the 404. Another
    # team's generation is missing too.
    for missing in ("unknownGeneration", "otherTeamsGeneration"):
        assert (errors[missing]["name"], errors[missing]["statusCode"]) == (
            "GatewayInternalServerError",
            404,
        ), missing
