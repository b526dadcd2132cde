"""Every API surface through the official SDKs, counted the same way in the report.

The simulator is the provider (as ``openai`` on the OpenAI wire and ``anthropic`` on the
Anthropic wire) and ``meterline all-in-one`` is the gateway, pipeline and query service in
one process on chDB. Clients: the ``openai`` SDK (Chat Completions and Responses) and the
``anthropic`` SDK (Messages), streamed and not. The report's sums must equal the usage the
clients received, per provider, model and credential type, and its market cost what
genai-prices computes from the provider's own usage objects (read by genai-prices' own
extractors, so the gateway's folding of Anthropic usage is checked against an independent
reading)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from collections import defaultdict
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
from genai_prices import Usage, calc_price, extract_usage
from openai.types import CompletionUsage
from openai.types.responses import Response, ResponseCompletedEvent

from meterline.simulator.usage import request_digest
from tests.support.surfaces import Stack, npm_installed, report, serve_stack, wait_for_requests

pytestmark = [pytest.mark.clickhouse, pytest.mark.e2e]

COLUMNS = (
    "input_tokens",
    "output_tokens",
    "cached_input_tokens",
    "cache_creation_input_tokens",
    "reasoning_tokens",
)
MONEY = Decimal("1e-12")
API_FLAVOR = {"chat_completions": "chat", "responses": "responses", "messages": "default"}


@dataclass
class Sent:
    """One request as the client saw it: its usage in the report's convention, and its
    market cost from genai-prices on the provider's usage object."""

    event_id: str
    surface: str
    provider: str
    model: str
    user: str
    tokens: dict[str, int]
    cache_write_1h: int
    market_cost: Decimal


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with serve_stack(tmp_path_factory.mktemp("surfaces")) as served:
        yield served


def market_cost(provider: str, model: str, surface: str, usage: dict[str, Any]) -> Decimal:
    extracted = extract_usage(
        {"model": model, "usage": usage}, provider_id=provider, api_flavor=API_FLAVOR[surface]
    )
    price = calc_price(extracted.usage, model_ref=model, provider_id=provider)
    return Decimal(price.total_price).quantize(MONEY)


def sent(
    event_id: str, surface: str, provider: str, model: str, user: str, usage: dict[str, Any]
) -> Sent:
    """The client's view of one request, from the usage object the SDK received."""
    if surface == "messages":
        read = usage.get("cache_read_input_tokens") or 0
        written = usage.get("cache_creation_input_tokens") or 0
        tokens = {
            "input_tokens": usage["input_tokens"] + read + written,
            "output_tokens": usage["output_tokens"],
            "cached_input_tokens": read,
            "cache_creation_input_tokens": written,
            "reasoning_tokens": (usage.get("output_tokens_details") or {}).get(
                "thinking_tokens", 0
            ),
        }
        one_hour = (usage.get("cache_creation") or {}).get("ephemeral_1h_input_tokens", 0)
    else:
        chat = surface == "chat_completions"
        inputs = usage["prompt_tokens" if chat else "input_tokens"]
        outputs = usage["completion_tokens" if chat else "output_tokens"]
        input_details = usage.get("prompt_tokens_details" if chat else "input_tokens_details")
        output_details = usage.get("completion_tokens_details" if chat else "output_tokens_details")
        tokens = {
            "input_tokens": inputs,
            "output_tokens": outputs,
            "cached_input_tokens": (input_details or {}).get("cached_tokens") or 0,
            "cache_creation_input_tokens": 0,
            "reasoning_tokens": (output_details or {}).get("reasoning_tokens") or 0,
        }
        one_hour = 0
    return Sent(
        event_id,
        surface,
        provider,
        model,
        user,
        tokens,
        one_hour,
        market_cost(provider, model, surface, usage),
    )


def openai_client(stack: Stack) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{stack.url}/v1", api_key=stack.key, max_retries=0)


def anthropic_client(stack: Stack) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=stack.url, api_key=stack.key, max_retries=0)


BYOK_PREFIX = "byok-"
"""Users whose requests carry a request-scoped BYOK key for both providers."""


def tagging(user: str, tag: str) -> dict[str, Any]:
    gateway: dict[str, Any] = {"user": user, "tags": [tag]}
    if user.startswith(BYOK_PREFIX):
        key = [{"apiKey": "sk-suite-byok"}]
        gateway["byok"] = {"openai": key, "anthropic": key}
    return {"providerOptions": {"gateway": gateway}}


def credential(user: str) -> str:
    return "byok" if user.startswith(BYOK_PREFIX) else "system"


def chat(
    stack: Stack, model: str, user: str, stream: bool, tag: str = "suite:surfaces", **extra: Any
) -> Sent:
    messages: Any = [{"role": "user", "content": f"Chat for {user} about {model}."}]
    body = {**tagging(user, tag), **extra}
    client = openai_client(stack)
    usage: CompletionUsage | None = None
    if stream:
        streamed = client.chat.completions.with_raw_response.create(
            model=f"openai/{model}",
            messages=messages,
            stream=True,
            stream_options={"include_usage": True},
            extra_body=body,
        )
        event_id = streamed.headers["x-meterline-event-id"]
        for chunk in streamed.parse():
            usage = chunk.usage or usage
    else:
        answered = client.chat.completions.with_raw_response.create(
            model=f"openai/{model}", messages=messages, extra_body=body
        )
        event_id = answered.headers["x-meterline-event-id"]
        usage = answered.parse().usage
    assert usage is not None
    return sent(event_id, "chat_completions", "openai", model, user, usage.model_dump())


def responses(
    stack: Stack, model: str, user: str, stream: bool, tag: str = "suite:surfaces", **extra: Any
) -> Sent:
    client = openai_client(stack)
    prompt = f"Responses for {user} about {model}."
    body = {**tagging(user, tag), **extra}
    final: Response
    if stream:
        with client.responses.with_streaming_response.create(
            model=f"openai/{model}", input=prompt, stream=True, extra_body=body
        ) as streamed:
            event_id = streamed.headers["x-meterline-event-id"]
            completed = [e for e in streamed.parse() if e.type == "response.completed"][-1]
            assert isinstance(completed, ResponseCompletedEvent)
            final = completed.response
    else:
        answered = client.responses.with_raw_response.create(
            model=f"openai/{model}", input=prompt, extra_body=body
        )
        event_id, final = answered.headers["x-meterline-event-id"], answered.parse()
    assert final.usage is not None
    return sent(event_id, "responses", "openai", model, user, final.usage.model_dump())


def messages(
    stack: Stack, model: str, user: str, stream: bool, tag: str = "suite:surfaces", **extra: Any
) -> Sent:
    client = anthropic_client(stack)
    request: dict[str, Any] = {
        "model": f"anthropic/{model}",
        "max_tokens": 1024,
        "messages": [{"role": "user", "content": f"Messages for {user} about {model}."}],
        "extra_body": tagging(user, tag),
        **extra,
    }
    if stream:
        with client.messages.with_streaming_response.create(**request, stream=True) as raw:
            event_id = raw.headers["x-meterline-event-id"]
            usage: dict[str, Any] = {}
            for event in raw.parse():
                # message_start has the input side; message_delta the cumulative totals.
                if event.type == "message_start":
                    usage = event.message.usage.model_dump(exclude_none=True)
                elif event.type == "message_delta":
                    usage.update(event.usage.model_dump(exclude_none=True))
    else:
        raw = client.messages.with_raw_response.create(**request)
        event_id, usage = raw.headers["x-meterline-event-id"], raw.parse().usage.model_dump()
    return sent(event_id, "messages", "anthropic", model, user, usage)


def cached_system(model: str, writes: bool) -> Any:
    """A system prompt with a 5-minute and a 1-hour cache breakpoint for which the simulator
    reports a cache write (or a read); it decides by the request digest, so the first
    variant of the wanted kind is picked, the same one on every run."""
    for n in range(64):
        system: Any = [
            {
                "type": "text",
                "text": f"Handbook {n}. " * 150,
                "cache_control": {"type": "ephemeral"},
            },
            {
                "type": "text",
                "text": "Appendix. " * 150,
                "cache_control": {"type": "ephemeral", "ttl": "1h"},
            },
        ]
        user = "wire-anthropic-write" if writes else "wire-anthropic-read"
        body = {
            "model": model,
            "system": system,
            "messages": [{"role": "user", "content": f"Messages for {user} about {model}."}],
        }
        if (request_digest(body)[5] % 2 == 0) == writes:
            return system
    raise AssertionError("no variant found")


def totals(rows: list[Sent], key: Any) -> dict[Any, dict[str, Any]]:
    out: dict[Any, dict[str, Any]] = defaultdict(
        lambda: {**dict.fromkeys(COLUMNS, 0), "request_count": 0, "market_cost": Decimal(0)}
    )
    for s in rows:
        row = out[key(s)]
        for column in COLUMNS:
            row[column] += s.tokens[column]
        row["request_count"] += 1
        row["market_cost"] += s.market_cost
    return dict(out)


def test_every_surface_streamed_and_not_adds_up_per_provider_model_and_credential(
    stack: Stack,
) -> None:
    calls = []
    for stream in (False, True):
        for user in ("mix-0", "mix-1", f"{BYOK_PREFIX}mix-2"):
            calls += [
                lambda s=stream, u=user: chat(stack, "gpt-4o", u, s),
                lambda s=stream, u=user: chat(stack, "o4-mini", u, s, prompt_cache_key="k"),
                lambda s=stream, u=user: responses(stack, "gpt-4o-mini", u, s),
                lambda s=stream, u=user: responses(stack, "gpt-5-mini", u, s, prompt_cache_key="k"),
                lambda s=stream, u=user: messages(stack, "claude-sonnet-4-6", u, s),
                lambda s=stream, u=user: messages(
                    stack,
                    "claude-haiku-4-5",
                    u,
                    s,
                    thinking={"type": "enabled", "budget_tokens": 512},
                ),
            ]
    with ThreadPoolExecutor(6) as pool:
        done = list(pool.map(lambda call: call(), calls))
    assert len(done) == 36
    wait_for_requests(stack, len(done), tags="suite:surfaces")

    rows = report(stack, group_by="provider,model,credential_type", tags="suite:surfaces")
    got = {
        (r["provider"], r["model"], r["credential_type"]): {
            **{c: r[c] for c in COLUMNS},
            "request_count": r["request_count"],
            "market_cost": Decimal(str(r["market_cost"])),
            "total_cost": Decimal(str(r["total_cost"])),
        }
        for r in rows
    }
    want = totals(done, lambda s: (s.provider, s.model, credential(s.user)))
    for (_, _, credential_type), row in want.items():
        # No price overrides: the team pays list price for system keys, nothing for BYOK.
        row["total_cost"] = row["market_cost"] if credential_type == "system" else Decimal(0)
    assert got == want
    assert {key[2] for key in want} == {"system", "byok"}
    # The mix has what it set out to have: reasoning on both wires, cache reads on OpenAI.
    assert want[("openai", "o4-mini", "system")]["cached_input_tokens"] > 0
    assert want[("openai", "gpt-5-mini", "system")]["reasoning_tokens"] > 0
    assert want[("anthropic", "claude-haiku-4-5", "system")]["reasoning_tokens"] > 0
    # Another team sees none of it.
    assert report(stack, key=stack.other_key, group_by="provider") == []


def assert_wire(stack: Stack, requests: list[Sent]) -> None:
    """Each request (one user each) lands in the report's columns and market cost as the
    client received it, and its generation record keeps the 1-hour share of cache writes."""
    deadline = time.monotonic() + 30
    while True:
        rows = {r["user"]: r for r in report(stack, group_by="user", tags="suite:wire")}
        if all(s.user in rows for s in requests) or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    for s in requests:
        row = rows[s.user]
        assert {c: row[c] for c in COLUMNS} == s.tokens, s.user
        assert Decimal(str(row["market_cost"])) == s.market_cost, s.user
        assert row["request_count"] == 1
        generation = httpx.get(
            f"{stack.url}/v1/generation",
            params={"id": s.event_id},
            headers={"Authorization": f"Bearer {stack.key}"},
            timeout=10,
        ).json()
        assert generation["cache_creation_1h_input_tokens"] == s.cache_write_1h, s.user


def wire_tags(user: str) -> dict[str, Any]:
    return {"providerOptions": {"gateway": {"user": user, "tags": ["suite:wire"]}}}


def test_openai_wire_cache_reads_and_reasoning_land_in_their_columns(stack: Stack) -> None:
    client = openai_client(stack)
    read = client.responses.with_raw_response.create(
        model="openai/gpt-4o",
        input="Cache me. " * 50,
        extra_body={**wire_tags("wire-openai-read"), "prompt_cache_key": "wire"},
    )
    think = client.chat.completions.with_raw_response.create(
        model="openai/o4-mini",
        messages=[{"role": "user", "content": "Think about meters."}],
        extra_body=wire_tags("wire-openai-reasoning"),
    )
    read_usage, think_usage = read.parse().usage, think.parse().usage
    assert read_usage is not None and think_usage is not None
    requests = [
        sent(
            read.headers["x-meterline-event-id"],
            "responses",
            "openai",
            "gpt-4o",
            "wire-openai-read",
            read_usage.model_dump(),
        ),
        sent(
            think.headers["x-meterline-event-id"],
            "chat_completions",
            "openai",
            "o4-mini",
            "wire-openai-reasoning",
            think_usage.model_dump(),
        ),
    ]
    assert requests[0].tokens["cached_input_tokens"] > 0
    assert requests[1].tokens["reasoning_tokens"] > 0
    # Cache reads are cheaper than fresh input: the price saw them as such.
    plain = calc_price_plain("openai", "gpt-4o", requests[0])
    assert requests[0].market_cost < plain
    assert_wire(stack, requests)


def test_audio_searches_and_zero_data_retention_reach_the_report_and_the_generation(
    stack: Stack,
) -> None:
    """Event schema v2 end to end: OpenAI audio and Anthropic web searches are priced as
    genai-prices prices the usage the client received, and the provider marked as keeping no
    data is told apart in the report."""
    tags = {"tags": ["suite:v2"]}
    audio = openai_client(stack).chat.completions.with_raw_response.create(
        model="openai/gpt-audio",
        messages=[
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "Transcribe this."},
                    {"type": "input_audio", "input_audio": {"data": "UklGRg==", "format": "wav"}},
                ],
            }
        ],
        modalities=["text", "audio"],
        audio={"voice": "alloy", "format": "wav"},
        extra_body={"providerOptions": {"gateway": {"user": "v2-audio", **tags}}},
    )
    search = anthropic_client(stack).messages.with_raw_response.create(
        model="anthropic/claude-sonnet-4-6",
        max_tokens=128,
        tools=[{"type": "web_search_20250305", "name": "web_search", "max_uses": 3}],
        messages=[{"role": "user", "content": "Search the news."}],
        extra_body={"providerOptions": {"gateway": {"user": "v2-search", **tags}}},
    )
    audio_usage, search_usage = audio.parse().usage, search.parse().usage
    assert audio_usage is not None and search_usage.server_tool_use is not None
    want = {
        ("v2-audio", False): market_cost(
            "openai", "gpt-audio", "chat_completions", audio_usage.model_dump()
        ),
        ("v2-search", True): market_cost(
            "anthropic", "claude-sonnet-4-6", "messages", search_usage.model_dump()
        ),
    }
    deadline = time.monotonic() + 30
    while True:
        rows = report(stack, group_by="user,zero_data_retention", tags="suite:v2")
        if len(rows) == 2 or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert {
        (r["user"], r["zero_data_retention"]): Decimal(str(r["market_cost"])) for r in rows
    } == want
    only = report(stack, group_by="user", tags="suite:v2", zero_data_retention="true")
    assert [r["user"] for r in only] == ["v2-search"]

    def generation(answer: Any) -> Any:
        return httpx.get(
            f"{stack.url}/v1/generation",
            params={"id": answer.headers["x-meterline-event-id"]},
            headers={"Authorization": f"Bearer {stack.key}"},
            timeout=10,
        ).json()

    heard, searched = generation(audio), generation(search)
    assert audio_usage.prompt_tokens_details is not None
    assert audio_usage.completion_tokens_details is not None
    assert heard["input_audio_tokens"] == audio_usage.prompt_tokens_details.audio_tokens
    assert heard["input_audio_tokens"] > 0
    assert heard["output_audio_tokens"] == audio_usage.completion_tokens_details.audio_tokens
    assert (heard["web_search_requests"], heard["zero_data_retention"]) == (0, False)
    assert searched["web_search_requests"] == search_usage.server_tool_use.web_search_requests
    assert searched["zero_data_retention"] is True


def test_anthropic_wire_cache_reads_writes_and_thinking_land_in_their_columns(
    stack: Stack,
) -> None:
    model = "claude-sonnet-4-6"
    tag = "suite:wire"
    requests = [
        messages(
            stack, model, "wire-anthropic-read", False, tag, system=cached_system(model, False)
        ),
        messages(
            stack, model, "wire-anthropic-write", True, tag, system=cached_system(model, True)
        ),
        messages(
            stack,
            model,
            "wire-anthropic-thinking",
            False,
            tag,
            thinking={"type": "enabled", "budget_tokens": 512},
        ),
    ]
    assert requests[0].tokens["cached_input_tokens"] > 0
    assert requests[1].tokens["cache_creation_input_tokens"] > requests[1].cache_write_1h > 0
    assert requests[2].tokens["reasoning_tokens"] > 0
    # Cache writes cost more than fresh input: the price saw them as such.
    assert requests[1].market_cost > calc_price_plain("anthropic", model, requests[1])
    assert_wire(stack, requests)


def calc_price_plain(provider: str, model: str, s: Sent) -> Decimal:
    """What the request would cost if all its input were plain, uncached input."""
    usage = Usage(input_tokens=s.tokens["input_tokens"], output_tokens=s.tokens["output_tokens"])
    return Decimal(calc_price(usage, model_ref=model, provider_id=provider).total_price)


AI_SDK = Path(__file__).parent / "ai_sdk"


def test_the_ai_sdk_from_npm_on_every_surface_adds_up(stack: Stack) -> None:
    reason = npm_installed(AI_SDK)
    if reason is not None:
        pytest.skip(reason)
    ran = subprocess.run(
        [shutil.which("node") or "node", "client.mjs"],
        cwd=AI_SDK,
        env={**os.environ, "METERLINE_URL": stack.url, "METERLINE_KEY": stack.key},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert ran.returncode == 0, ran.stderr
    calls = [json.loads(line) for line in ran.stdout.splitlines() if line.startswith("{")]
    assert [(c["surface"], c["streamed"]) for c in calls] == [
        (surface, streamed)
        for surface in ("chat_completions", "responses", "messages")
        for streamed in (False, True)
    ]
    want: dict[tuple[str, str], dict[str, Any]] = defaultdict(
        lambda: {**dict.fromkeys(COLUMNS, 0), "request_count": 0, "market_cost": Decimal(0)}
    )
    for call in calls:
        assert call["eventId"], call
        usage = call["usage"]
        cached = usage.get("cachedInputTokens") or 0
        # The AI SDK reports Anthropic's input without cache reads and writes, and the writes
        # in its provider metadata.
        written = ((call.get("providerMetadata") or {}).get("anthropic") or {}).get(
            "cacheCreationInputTokens"
        ) or 0
        inputs = usage["inputTokens"] + (cached + written if call["surface"] == "messages" else 0)
        tokens = {
            "input_tokens": inputs,
            "output_tokens": usage["outputTokens"],
            "cached_input_tokens": cached,
            "cache_creation_input_tokens": written,
            "reasoning_tokens": usage.get("reasoningTokens") or 0,
        }
        row = want[(call["provider"], call["model"])]
        for column in COLUMNS:
            row[column] += tokens[column]
        row["request_count"] += 1
        price = calc_price(
            Usage(
                input_tokens=inputs,
                output_tokens=tokens["output_tokens"],
                cache_read_tokens=cached,
                cache_write_tokens=written,
            ),
            model_ref=call["model"],
            provider_id=call["provider"],
        )
        row["market_cost"] += Decimal(price.total_price).quantize(MONEY)
    assert want[("openai", "gpt-5-mini")]["reasoning_tokens"] > 0

    wait_for_requests(stack, len(calls), tags="suite:ai-sdk")
    rows = report(stack, group_by="provider,model", tags="suite:ai-sdk")
    got = {
        (r["provider"], r["model"]): {
            **{c: r[c] for c in COLUMNS},
            "request_count": r["request_count"],
            "market_cost": Decimal(str(r["market_cost"])),
        }
        for r in rows
    }
    assert got == dict(want)
