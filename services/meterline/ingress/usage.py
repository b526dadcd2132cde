"""Provider usage -> the event's token convention (ARCHITECTURE.md, "The usage event").

OpenAI Chat Completions already counts the way the event does: ``prompt_tokens`` includes
cached tokens and ``completion_tokens`` includes reasoning tokens, so the mapping is a
renaming:

=========================================== ======================
OpenAI                                      event
=========================================== ======================
``prompt_tokens``                           ``input_tokens``
``prompt_tokens_details.cached_tokens``     ``cached_input_tokens``
``completion_tokens``                       ``output_tokens``
``completion_tokens_details.reasoning_tokens`` ``reasoning_tokens``
=========================================== ======================

The provider's usage object is kept verbatim as JSON so prices can be recomputed later.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class Usage:
    input_tokens: int = 0
    output_tokens: int = 0
    cached_input_tokens: int = 0
    cache_creation_input_tokens: int = 0
    cache_creation_1h_input_tokens: int = 0
    reasoning_tokens: int = 0
    raw: str = "{}"


NO_USAGE = Usage()


def from_openai_usage(usage: object) -> Usage | None:
    """The ``usage`` object of a chat completion (or of a stream's usage chunk); None when
    there is none."""
    if not isinstance(usage, dict):
        return None
    input_tokens = _count(usage.get("prompt_tokens"))
    output_tokens = _count(usage.get("completion_tokens"))
    cached = _count(_detail(usage, "prompt_tokens_details", "cached_tokens"))
    reasoning = _count(_detail(usage, "completion_tokens_details", "reasoning_tokens"))
    return Usage(
        input_tokens=input_tokens,
        output_tokens=output_tokens,
        # A part can never exceed its whole; some OpenAI-compatible servers report it
        # anyway, and the consumer would refuse the whole event. The raw usage keeps what
        # the provider said.
        cached_input_tokens=min(cached, input_tokens),
        reasoning_tokens=min(reasoning, output_tokens),
        raw=json.dumps(usage, separators=(",", ":"), ensure_ascii=False),
    )


def from_openai_completion(completion: object) -> tuple[Usage | None, str | None]:
    """Usage and finish reason of a whole (non-streamed) chat completion."""
    if not isinstance(completion, dict):
        return None, None
    return from_openai_usage(completion.get("usage")), first_finish_reason(completion)


def first_finish_reason(completion_or_chunk: dict[str, Any]) -> str | None:
    choices = completion_or_chunk.get("choices")
    if not isinstance(choices, list):
        return None
    for choice in choices:
        if isinstance(choice, dict) and isinstance(choice.get("finish_reason"), str):
            reason: str = choice["finish_reason"]
            return reason
    return None


def _detail(usage: dict[str, Any], details: str, name: str) -> object:
    found = usage.get(details)
    return found.get(name) if isinstance(found, dict) else None


def _count(value: object) -> int:
    # bool is an int in Python; a true/false token count is nonsense, not 1/0.
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        return value
    return 0
