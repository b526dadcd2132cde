"""No usage field is dropped silently: every numeric field of the official SDKs' usage types
is either carried into the event (and setting it moves the event field it names) or listed
with the reason it is not; and the gateway reads each provider answer as genai-prices does."""

from __future__ import annotations

import copy
import typing
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import genai_prices
import pytest
from anthropic.types import MessageDeltaUsage
from anthropic.types import Usage as MessagesUsage
from openai.types import CompletionUsage
from openai.types.responses import ResponseUsage
from pydantic import BaseModel

from meterline.common.pricing import TOKEN_FIELDS, GenaiPrices, TokenCounts
from meterline.ingress.translate.chat_via_anthropic.translation import (
    CHAT_USAGE_CANNOT_SAY,
    chat_usage,
)
from meterline.ingress.translate.language_model import usage_v3
from meterline.ingress.translate.language_model_via_anthropic.translation import (
    LANGUAGE_MODEL_USAGE_CANNOT_SAY as LANGUAGE_MODEL_VIA_ANTHROPIC_CANNOT_SAY,
)
from meterline.ingress.translate.language_model_via_openai.translation import (
    LANGUAGE_MODEL_USAGE_CANNOT_SAY as LANGUAGE_MODEL_VIA_OPENAI_CANNOT_SAY,
)
from meterline.ingress.translate.messages_via_openai.translation import (
    MESSAGES_USAGE_CANNOT_SAY,
    anthropic_usage,
)
from meterline.ingress.usage import (
    CHAT_COMPLETIONS_FIELDS,
    CHAT_COMPLETIONS_NOT_CARRIED,
    MESSAGES_FIELDS,
    MESSAGES_NOT_CARRIED,
    RESPONSES_FIELDS,
    RESPONSES_NOT_CARRIED,
    Usage,
    from_anthropic_usage,
    from_openai_usage,
    from_responses_usage,
)

Extract = Callable[[object], Usage | None]


def numeric_fields(model: type[BaseModel], prefix: str = "") -> set[str]:
    found: set[str] = set()
    for name, field in model.model_fields.items():
        for kind in typing.get_args(field.annotation) or (field.annotation,):
            if isinstance(kind, type) and issubclass(kind, BaseModel):
                found |= numeric_fields(kind, f"{prefix}{name}.")
            elif kind in (int, float):
                found.add(prefix + name)
    return found


WIRES: dict[str, tuple[list[type[BaseModel]], dict[str, str], dict[str, str], Extract]] = {
    "chat completions": (
        [CompletionUsage],
        CHAT_COMPLETIONS_FIELDS,
        CHAT_COMPLETIONS_NOT_CARRIED,
        from_openai_usage,
    ),
    "responses": ([ResponseUsage], RESPONSES_FIELDS, RESPONSES_NOT_CARRIED, from_responses_usage),
    "messages": (
        [MessagesUsage, MessageDeltaUsage],
        MESSAGES_FIELDS,
        MESSAGES_NOT_CARRIED,
        from_anthropic_usage,
    ),
}
# The wholes the parts belong to, so a part set alone is not capped to zero.
WHOLES: dict[str, dict[str, Any]] = {
    "chat completions": {"prompt_tokens": 1000, "completion_tokens": 1000},
    "responses": {"input_tokens": 1000, "output_tokens": 1000},
    "messages": {"output_tokens": 1000},
}


@pytest.mark.parametrize("wire", list(WIRES))
def test_every_sdk_usage_field_is_carried_or_has_a_reason(wire: str) -> None:
    types, carried, not_carried, _ = WIRES[wire]
    sdk = set().union(*(numeric_fields(t) for t in types))
    assert not carried.keys() & not_carried.keys()
    unlisted = sdk - carried.keys() - not_carried.keys()
    assert not unlisted, f"{wire}: usage fields neither carried nor explained: {unlisted}"
    assert not (carried.keys() | not_carried.keys()) - sdk, "listed fields the SDK lacks"
    assert all(len(reason.split()) >= 4 for reason in not_carried.values())


def with_field(usage: dict[str, Any], path: str, value: int) -> dict[str, Any]:
    changed = copy.deepcopy(usage)
    *parents, name = path.split(".")
    node = changed
    for parent in parents:
        node = node.setdefault(parent, {})
    node[name] = value
    return changed


@pytest.mark.parametrize(
    ("wire", "path"), [(wire, path) for wire, spec in WIRES.items() for path in spec[1]]
)
def test_each_carried_field_moves_the_event_field_it_names(wire: str, path: str) -> None:
    _, carried, _, extract = WIRES[wire]
    base = WHOLES[wire]
    before = extract(base)
    after = extract(with_field(base, path, 7 if path not in base else 1007))
    assert before is not None and after is not None
    target = carried[path]
    assert getattr(after, target) == getattr(before, target) + 7, (path, target)


def v3_counts(usage: Usage | None) -> dict[str, Any]:
    """The V3 usage a language-model client gets, without ``raw`` (the provider's usage
    object, which says every field, the ones V3 has no field for too)."""
    counts = usage_v3(usage or Usage())
    del counts["raw"]
    return counts


TRANSLATIONS: dict[str, tuple[str, dict[str, str], Callable[[dict[str, Any]], Any]]] = {
    # A Chat Completions client of an Anthropic provider gets chat_usage(provider's usage).
    "chat completions via anthropic": ("messages", CHAT_USAGE_CANNOT_SAY, chat_usage),
    # A Messages client of an OpenAI-compatible provider gets anthropic_usage(the event's).
    "messages via openai": (
        "chat completions",
        MESSAGES_USAGE_CANNOT_SAY,
        lambda usage: anthropic_usage(from_openai_usage(usage) or Usage()),
    ),
    # An AI SDK language-model client gets usage_v3(the event's), from either wire.
    "language model via openai": (
        "chat completions",
        LANGUAGE_MODEL_VIA_OPENAI_CANNOT_SAY,
        lambda usage: v3_counts(from_openai_usage(usage)),
    ),
    "language model via anthropic": (
        "messages",
        LANGUAGE_MODEL_VIA_ANTHROPIC_CANNOT_SAY,
        lambda usage: v3_counts(from_anthropic_usage(usage)),
    ),
}


@pytest.mark.parametrize(
    ("translation", "path"),
    [(name, path) for name, (wire, _, _) in TRANSLATIONS.items() for path in WIRES[wire][1]],
)
def test_each_carried_field_reaches_the_translated_client_or_says_why_not(
    translation: str, path: str
) -> None:
    """A field the event carries changes the usage the translated client gets, unless the
    translation lists it as one the client's surface has no field for."""
    wire, cannot_say, translate = TRANSLATIONS[translation]
    assert cannot_say.keys() <= WIRES[wire][1].keys()
    if path in cannot_say:
        assert len(cannot_say[path].split()) >= 4
        return
    base = WHOLES[wire]
    changed = with_field(base, path, 7 if path not in base else 1007)
    assert translate(changed) != translate(base), f"{translation} drops {path}"


# Provider answers as they come, each for a model whose price uses what it reports: cache
# reads and writes (with Anthropic's lifetimes, and OpenAI's lifetimes genai-prices does not
# price either), reasoning, audio, web searches, and long-context tiers.
CORPUS: list[tuple[str, str, str, dict[str, Any]]] = [
    ("openai", "chat", "gpt-4o", {"prompt_tokens": 11, "completion_tokens": 5}),
    (
        "openai",
        "chat",
        "gpt-5.6-luna",
        {
            "prompt_tokens": 2100,
            "completion_tokens": 300,
            "prompt_tokens_details": {"cached_tokens": 128, "cache_write_tokens": 1920},
            "completion_tokens_details": {"reasoning_tokens": 256},
        },
    ),
    (  # the long-context tier: the whole prompt is priced at the higher rates
        "openai",
        "chat",
        "gpt-5.6-luna",
        {
            "prompt_tokens": 300_000,
            "completion_tokens": 2_000,
            "prompt_tokens_details": {"cached_tokens": 100_000, "cache_write_tokens": 150_000},
        },
    ),
    (
        "openai",
        "chat",
        "gpt-audio",
        {
            "prompt_tokens": 2100,
            "completion_tokens": 900,
            "prompt_tokens_details": {"audio_tokens": 1600, "text_tokens": 500},
            "completion_tokens_details": {"audio_tokens": 780, "text_tokens": 120},
        },
    ),
    (
        "openai",
        "responses",
        "gpt-5",
        {
            "input_tokens": 5000,
            "input_tokens_details": {"cached_tokens": 4096},
            "output_tokens": 900,
            "output_tokens_details": {"reasoning_tokens": 640},
        },
    ),
    (
        "openai",
        "responses",
        "gpt-5.6-sol",
        {
            "input_tokens": 9000,
            "input_tokens_details": {
                "cached_tokens": 1024,
                "cache_write_tokens": 6000,
                "cache_write_tokens_details": {"ttl_30m_tokens": 4000, "ttl_12h_tokens": 2000},
            },
            "output_tokens": 700,
            "output_tokens_details": {"reasoning_tokens": 512},
        },
    ),
    (
        "anthropic",
        "default",
        "claude-sonnet-4-6",
        {
            "input_tokens": 100,
            "cache_read_input_tokens": 50,
            "cache_creation_input_tokens": 70,
            "cache_creation": {"ephemeral_5m_input_tokens": 30, "ephemeral_1h_input_tokens": 40},
            "output_tokens": 20,
        },
    ),
    (  # long context
        "anthropic",
        "default",
        "claude-sonnet-4-5",
        {"input_tokens": 250_000, "output_tokens": 4000},
    ),
    (
        "anthropic",
        "default",
        "claude-sonnet-4-6",
        {
            "input_tokens": 12_400,
            "output_tokens": 650,
            "output_tokens_details": {"thinking_tokens": 400},
            "server_tool_use": {"web_search_requests": 3, "web_fetch_requests": 1},
        },
    ),
    (  # tiered, with cache writes of both lifetimes and searches
        "anthropic",
        "default",
        "claude-haiku-5-5",
        {
            "input_tokens": 150_000,
            "cache_read_input_tokens": 20_000,
            "cache_creation_input_tokens": 5_000,
            "cache_creation": {
                "ephemeral_5m_input_tokens": 1_000,
                "ephemeral_1h_input_tokens": 4_000,
            },
            "output_tokens": 3_000,
            "server_tool_use": {"web_search_requests": 2},
        },
    ),
]
AT = datetime(2026, 11, 20, 12, tzinfo=UTC)


def ours(provider: str, flavor: str, usage: dict[str, Any]) -> Usage:
    if provider == "anthropic":
        found = from_anthropic_usage(usage)
    elif flavor == "responses":
        found = from_responses_usage(usage)
    else:
        found = from_openai_usage(usage)
    assert found is not None
    return found


@pytest.mark.parametrize(("provider", "flavor", "model", "usage"), CORPUS)
def test_the_gateway_reads_usage_as_genai_prices_does(
    provider: str, flavor: str, model: str, usage: dict[str, Any]
) -> None:
    extracted = genai_prices.extract_usage(
        {"model": model, "usage": usage}, provider_id=provider, api_flavor=flavor
    ).usage
    read = ours(provider, flavor, usage)
    assert read.input_tokens == (extracted.input_tokens or 0)
    assert read.output_tokens == (extracted.output_tokens or 0)
    assert read.cached_input_tokens == (extracted.cache_read_tokens or 0)
    assert read.cache_creation_input_tokens == (extracted.cache_write_tokens or 0)
    assert read.cache_creation_1h_input_tokens == (extracted.cache_write_1h_tokens or 0)
    assert read.reasoning_tokens == (extracted.output_reasoning_tokens or 0)
    assert read.input_audio_tokens == (extracted.input_audio_tokens or 0)
    assert read.output_audio_tokens == (extracted.output_audio_tokens or 0)
    assert read.web_search_requests == (extracted.web_searches or 0)


@pytest.mark.parametrize(("provider", "flavor", "model", "usage"), CORPUS)
def test_the_event_is_priced_as_genai_prices_prices_the_answer(
    provider: str, flavor: str, model: str, usage: dict[str, Any]
) -> None:
    expected = genai_prices.calc_price(
        genai_prices.extract_usage(
            {"model": model, "usage": usage}, provider_id=provider, api_flavor=flavor
        ).usage,
        model_ref=model,
        provider_id=provider,
        genai_request_timestamp=AT,
    ).total_price
    read = ours(provider, flavor, usage)
    counts = TokenCounts(*(getattr(read, name) for name in TOKEN_FIELDS))
    assert GenaiPrices().market_cost(provider, model, AT, counts) == expected
    assert expected > 0
