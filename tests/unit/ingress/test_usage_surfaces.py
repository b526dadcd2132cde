"""Responses and Anthropic usage objects -> the event's one token convention."""

from __future__ import annotations

import json

from meterline.ingress.usage import (
    Usage,
    from_anthropic_usage,
    from_responses_usage,
    merge_anthropic_usage,
)


def counts(usage: Usage | None) -> tuple[int, int, int, int, int, int]:
    assert usage is not None
    return (
        usage.input_tokens,
        usage.cached_input_tokens,
        usage.cache_creation_input_tokens,
        usage.cache_creation_1h_input_tokens,
        usage.output_tokens,
        usage.reasoning_tokens,
    )


def test_responses_usage_is_already_in_the_convention() -> None:
    raw = {
        "input_tokens": 2000,
        "input_tokens_details": {"cached_tokens": 1536},
        "output_tokens": 300,
        "output_tokens_details": {"reasoning_tokens": 120},
        "total_tokens": 2300,
    }
    usage = from_responses_usage(raw)
    assert counts(usage) == (2000, 1536, 0, 0, 300, 120)
    assert usage is not None and json.loads(usage.raw) == raw


def test_responses_cache_writes_of_compatible_servers_are_parts_of_the_input() -> None:
    raw = {
        "input_tokens": 1000,
        "input_tokens_details": {"cached_tokens": 600, "cache_write_tokens": 900},
        "output_tokens": 10,
    }
    # Reads and writes together can never exceed the whole input.
    assert counts(from_responses_usage(raw)) == (1000, 600, 400, 0, 10, 0)


def test_responses_usage_missing_or_malformed() -> None:
    assert from_responses_usage(None) is None
    assert from_responses_usage([1]) is None
    raw = {"input_tokens": True, "output_tokens": -4, "output_tokens_details": None}
    assert counts(from_responses_usage(raw)) == (0, 0, 0, 0, 0, 0)
    # A part larger than its whole is capped (the raw usage keeps what was said).
    capped = {
        "input_tokens": 5,
        "input_tokens_details": {"cached_tokens": 9},
        "output_tokens": 3,
        "output_tokens_details": {"reasoning_tokens": 7},
    }
    assert counts(from_responses_usage(capped)) == (5, 5, 0, 0, 3, 3)


def test_anthropic_cache_reads_and_writes_are_added_to_the_input() -> None:
    raw = {
        "input_tokens": 25,
        "cache_read_input_tokens": 1000,
        "cache_creation_input_tokens": 3000,
        "cache_creation": {"ephemeral_5m_input_tokens": 1000, "ephemeral_1h_input_tokens": 2000},
        "output_tokens": 400,
        "output_tokens_details": {"thinking_tokens": 150},
    }
    usage = from_anthropic_usage(raw)
    assert counts(usage) == (4025, 1000, 3000, 2000, 400, 150)
    assert usage is not None and json.loads(usage.raw) == raw


def test_anthropic_split_without_total_and_total_without_split() -> None:
    only_split = {
        "input_tokens": 1,
        "cache_creation": {"ephemeral_5m_input_tokens": 30, "ephemeral_1h_input_tokens": 70},
        "output_tokens": 2,
    }
    assert counts(from_anthropic_usage(only_split)) == (101, 0, 100, 70, 2, 0)
    # Older API versions report the total alone: all of it is priced as 5-minute writes.
    only_total = {"input_tokens": 1, "cache_creation_input_tokens": 100, "output_tokens": 2}
    assert counts(from_anthropic_usage(only_total)) == (101, 0, 100, 0, 2, 0)
    nulls = {
        "input_tokens": 7,
        "cache_read_input_tokens": None,
        "cache_creation": None,
        "output_tokens": 1,
    }
    assert counts(from_anthropic_usage(nulls)) == (7, 0, 0, 0, 1, 0)


def test_merge_takes_cumulative_delta_counts_over_message_start() -> None:
    start = {
        "input_tokens": 10,
        "cache_read_input_tokens": 500,
        "cache_creation": {"ephemeral_5m_input_tokens": 0, "ephemeral_1h_input_tokens": 0},
        "output_tokens": 1,
    }
    delta = {
        "output_tokens": 90,
        "input_tokens": None,
        "cache_creation": {"ephemeral_1h_input_tokens": 40},
        "output_tokens_details": {"thinking_tokens": 30},
    }
    merged = merge_anthropic_usage(start, delta)
    assert merged == {
        "input_tokens": 10,
        "cache_read_input_tokens": 500,
        "cache_creation": {"ephemeral_5m_input_tokens": 0, "ephemeral_1h_input_tokens": 40},
        "output_tokens": 90,
        "output_tokens_details": {"thinking_tokens": 30},
    }
    assert start["output_tokens"] == 1  # message_start's usage is left as it was
