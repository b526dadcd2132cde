"""Provider usage -> the event's token convention (written in ``common/events.py``).

Which field of each wire's usage goes to which event field is listed once, below
(``CHAT_COMPLETIONS_FIELDS``, ``RESPONSES_FIELDS``, ``MESSAGES_FIELDS``, and the fields not
carried, with the reason). How the counts fit together:

- OpenAI (Chat Completions, and Responses under other names) already counts the way the
  event does: the prompt includes its cache reads and writes, the completion its reasoning
  tokens, so the mapping is a renaming. OpenAI reports no lifetime for its cache writes, so
  none is counted as a 1-hour write.
- Anthropic counts cache reads and writes *beside* ``input_tokens``, so the event's input is
  the sum of the three; ``cache_creation.ephemeral_1h_input_tokens`` are the 1-hour writes,
  and the 5-minute ones the rest of ``cache_creation_input_tokens``: the two kinds are
  priced differently. Thinking tokens are part of ``output_tokens``.
- Audio (OpenAI's ``audio_tokens`` details) is a part of the prompt or the completion, as
  the event counts it, with prices of its own. Web searches (Anthropic's
  ``server_tool_use.web_search_requests``) are counted per search.

The provider's usage object is kept verbatim as JSON so prices can be recomputed later.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Final

# Every numeric field of each wire's usage object (the official SDKs' types), and where it
# goes: an event field (Anthropic's cache reads and writes also add to ``input_tokens``), or
# why it has none. tests/unit/ingress/test_usage_fields.py walks the
# SDKs' types and fails on a field listed in neither, so none is dropped without a reason.
# What is not carried stays in the event's ``raw_usage``, for a later re-pricing.

CHAT_COMPLETIONS_FIELDS: Final = {
    "prompt_tokens": "input_tokens",
    "prompt_tokens_details.cached_tokens": "cached_input_tokens",
    "prompt_tokens_details.cache_write_tokens": "cache_creation_input_tokens",
    "completion_tokens": "output_tokens",
    "completion_tokens_details.reasoning_tokens": "reasoning_tokens",
    "prompt_tokens_details.audio_tokens": "input_audio_tokens",
    "completion_tokens_details.audio_tokens": "output_audio_tokens",
}
CHAT_COMPLETIONS_NOT_CARRIED: Final = {
    "total_tokens": "the sum of prompt_tokens and completion_tokens",
    "prompt_tokens_details.text_tokens": "a part of prompt_tokens, priced as input",
    "prompt_tokens_details.image_tokens": "a part of prompt_tokens, priced as input",
    "completion_tokens_details.text_tokens": "a part of completion_tokens, priced as output",
    "completion_tokens_details.accepted_prediction_tokens": "a part of completion_tokens, "
    "billed as output",
    "completion_tokens_details.rejected_prediction_tokens": "a part of completion_tokens, "
    "billed as output",
}
RESPONSES_FIELDS: Final = {
    "input_tokens": "input_tokens",
    "input_tokens_details.cached_tokens": "cached_input_tokens",
    "input_tokens_details.cache_write_tokens": "cache_creation_input_tokens",
    "output_tokens": "output_tokens",
    "output_tokens_details.reasoning_tokens": "reasoning_tokens",
}
RESPONSES_NOT_CARRIED: Final = {
    "total_tokens": "the sum of input_tokens and output_tokens",
    "input_tokens_details.cache_write_tokens_details.ttl_30m_tokens": "a part of the cache "
    "writes by lifetime; the event prices every OpenAI write at the one write rate",
    "input_tokens_details.cache_write_tokens_details.ttl_12h_tokens": "a part of the cache "
    "writes by lifetime; the event prices every OpenAI write at the one write rate",
}
MESSAGES_FIELDS: Final = {
    "input_tokens": "input_tokens",
    "cache_read_input_tokens": "cached_input_tokens",
    "cache_creation_input_tokens": "cache_creation_input_tokens",
    "cache_creation.ephemeral_5m_input_tokens": "cache_creation_input_tokens",
    "cache_creation.ephemeral_1h_input_tokens": "cache_creation_1h_input_tokens",
    "output_tokens": "output_tokens",
    "output_tokens_details.thinking_tokens": "reasoning_tokens",
    "server_tool_use.web_search_requests": "web_search_requests",
}
MESSAGES_NOT_CARRIED: Final = {
    "server_tool_use.web_fetch_requests": "web fetches are billed as the tokens they add "
    "to the input, which input_tokens counts",
}


@dataclass(frozen=True, slots=True)
class Usage:
    input_tokens: int = 0
    output_tokens: int = 0
    cached_input_tokens: int = 0
    cache_creation_input_tokens: int = 0
    cache_creation_1h_input_tokens: int = 0
    reasoning_tokens: int = 0
    input_audio_tokens: int = 0
    output_audio_tokens: int = 0
    web_search_requests: int = 0
    raw: str = "{}"


NO_USAGE = Usage()


def from_openai_usage(usage: object) -> Usage | None:
    """The ``usage`` object of a chat completion (or of a stream's usage chunk); None when
    there is none."""
    if not isinstance(usage, dict):
        return None
    input_tokens = _count(usage.get("prompt_tokens"))
    output_tokens = _count(usage.get("completion_tokens"))
    # A part can never exceed its whole; some OpenAI-compatible servers report it anyway,
    # and the consumer would refuse the whole event. The raw usage keeps what the provider
    # said.
    cached = min(_count(_detail(usage, "prompt_tokens_details", "cached_tokens")), input_tokens)
    written = _count(_detail(usage, "prompt_tokens_details", "cache_write_tokens"))
    reasoning = _count(_detail(usage, "completion_tokens_details", "reasoning_tokens"))
    audio_in = _count(_detail(usage, "prompt_tokens_details", "audio_tokens"))
    audio_out = _count(_detail(usage, "completion_tokens_details", "audio_tokens"))
    written = min(written, input_tokens - cached)
    return Usage(
        input_tokens=input_tokens,
        output_tokens=output_tokens,
        cached_input_tokens=cached,
        cache_creation_input_tokens=written,
        reasoning_tokens=min(reasoning, output_tokens),
        # OpenAI reports no cached audio on this wire: audio is taken as uncached input.
        input_audio_tokens=min(audio_in, input_tokens - cached - written),
        output_audio_tokens=min(audio_out, output_tokens),
        raw=_raw(usage),
    )


def from_responses_usage(usage: object) -> Usage | None:
    """The ``usage`` object of a Responses API ``response``; None when there is none."""
    if not isinstance(usage, dict):
        return None
    input_tokens = _count(usage.get("input_tokens"))
    output_tokens = _count(usage.get("output_tokens"))
    cached = min(_count(_detail(usage, "input_tokens_details", "cached_tokens")), input_tokens)
    written = _count(_detail(usage, "input_tokens_details", "cache_write_tokens"))
    reasoning = _count(_detail(usage, "output_tokens_details", "reasoning_tokens"))
    return Usage(
        input_tokens=input_tokens,
        output_tokens=output_tokens,
        cached_input_tokens=cached,
        cache_creation_input_tokens=min(written, input_tokens - cached),
        reasoning_tokens=min(reasoning, output_tokens),
        raw=_raw(usage),
    )


def from_anthropic_usage(usage: object) -> Usage | None:
    """An Anthropic ``usage`` object (of a message, or ``message_start`` merged with the
    ``message_delta`` usage of a stream); None when there is none."""
    if not isinstance(usage, dict):
        return None
    read = _count(usage.get("cache_read_input_tokens"))
    split_5m = _count(_detail(usage, "cache_creation", "ephemeral_5m_input_tokens"))
    split_1h = _count(_detail(usage, "cache_creation", "ephemeral_1h_input_tokens"))
    # The total when given; the split's sum when only the split is (it is the same number).
    written = _count(usage.get("cache_creation_input_tokens")) or split_5m + split_1h
    output_tokens = _count(usage.get("output_tokens"))
    thinking = _count(_detail(usage, "output_tokens_details", "thinking_tokens"))
    return Usage(
        input_tokens=_count(usage.get("input_tokens")) + read + written,
        output_tokens=output_tokens,
        cached_input_tokens=read,
        cache_creation_input_tokens=written,
        cache_creation_1h_input_tokens=min(split_1h, written),
        reasoning_tokens=min(thinking, output_tokens),
        web_search_requests=_count(_detail(usage, "server_tool_use", "web_search_requests")),
        raw=_raw(usage),
    )


def merge_anthropic_usage(start: dict[str, Any], delta: dict[str, Any]) -> dict[str, Any]:
    """A stream's usage: ``message_start`` has the input side (and an early output count);
    each ``message_delta`` carries cumulative counts that replace what came before. Counts
    the delta leaves out or sends as null keep their earlier value."""
    merged = dict(start)
    for name, value in delta.items():
        if value is None:
            continue
        if isinstance(value, dict) and isinstance(merged.get(name), dict):
            merged[name] = {**merged[name], **value}
        else:
            merged[name] = value
    return merged


def first_finish_reason(completion_or_chunk: dict[str, Any]) -> str | None:
    choices = completion_or_chunk.get("choices")
    if not isinstance(choices, list):
        return None
    for choice in choices:
        if isinstance(choice, dict) and isinstance(choice.get("finish_reason"), str):
            reason: str = choice["finish_reason"]
            return reason
    return None


def _raw(usage: dict[str, Any]) -> str:
    return json.dumps(usage, separators=(",", ":"), ensure_ascii=False)


def _detail(usage: dict[str, Any], details: str, name: str) -> object:
    found = usage.get(details)
    return found.get(name) if isinstance(found, dict) else None


def _count(value: object) -> int:
    # bool is an int in Python; a true/false token count is nonsense, not 1/0.
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        return value
    return 0
