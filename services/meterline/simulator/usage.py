"""Deterministic usage: every number the simulator reports is a pure function of the request.

Tests, the demo and the benchmarks compare what the gateway recorded against what the
client received, so the simulator must never be random and must agree with itself across
processes (``hashlib``, never ``hash()``).

The rules, for all three wire formats:

* **Prompt tokens** (the whole prompt, cache reads and writes included)
  ``= ceil(chars / 4) + 8 * messages + 85 * images + 200 * audio``, where ``chars`` counts
  every text string of the prompt (message text parts, tool-call arguments, tool results, the system
  prompt / instructions) plus the compact JSON of the ``tools`` definitions, ``messages`` is
  the number of input messages (the system prompt / instructions count as one), ``images``
  the number of image parts and ``audio`` the number of ``input_audio`` parts (Chat
  Completions), whose 200 tokens each are reported as ``prompt_tokens_details.audio_tokens``.
* **Digest**: SHA-256 of the request body as canonical JSON (sorted keys), leaving out the
  fields that only shape delivery: ``stream``, ``stream_options``, the max-token fields and
  the stop sequences. So a streamed and a non-streamed request, or the same request with a
  lower cap, produce the same text up to the cap.
* **Output tokens** ``= 5 + (digest[0:2] % 196)``, i.e. 5..200, capped by the request's max
  tokens (``max_completion_tokens`` / ``max_tokens`` / ``max_output_tokens``); hitting the cap
  is reported as ``length`` / ``max_tokens`` / ``incomplete``.
* **Reasoning tokens**, when the model name contains ``o1``, ``o3``, ``o4``, ``gpt-5``,
  ``reasoning`` or ``thinking``, or the request has ``reasoning``, ``reasoning_effort`` or an
  enabled ``thinking``: ``output * (25 + digest[6] % 51) // 100``; they are part of the output
  tokens (never more than output - 1), and the visible text carries the rest.
* **Reply text**: one word per visible output token, taken from a fixed word stream at an
  offset chosen by the digest. If a stop sequence occurs in it, the text is cut there and the
  output tokens shrink to the words kept (plus reasoning).
* **Audio output**: a Chat Completions request whose ``modalities`` include ``"audio"`` gets
  its visible output as audio: ``completion_tokens_details.audio_tokens`` = output -
  reasoning.
* **Web searches**: a Messages request with a ``web_search_*`` server tool reports
  ``server_tool_use.web_search_requests = 1 + digest[7] % 3``, at most the tool's
  ``max_uses``.
* **Cache reads**: prompts of at least 1024 tokens read the largest multiple of 128 that is
  at most half the prompt's text (audio is never cached). A cache hint (OpenAI
  ``prompt_cache_key``, any Anthropic ``cache_control``) forces the effect for any size:
  half the text, rounded down.
* **Cache writes**: when ``digest[5]`` is even, the cached share is reported as written
  instead of read. On Anthropic only with ``cache_control``, split between the 5-minute and
  1-hour buckets in proportion to the ``cache_control`` breakpoints with ``ttl: "1h"``; on
  the OpenAI wire for the models that report writes (``CACHE_WRITE_MODEL_MARKERS``), as
  ``cache_write_tokens``, with no lifetime.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

CHARS_PER_TOKEN = 4
TOKENS_PER_MESSAGE = 8
TOKENS_PER_IMAGE = 85
TOKENS_PER_AUDIO = 200
MAX_WEB_SEARCHES = 3
MIN_OUTPUT_TOKENS = 5
MAX_OUTPUT_TOKENS = 200
CACHE_MIN_PROMPT_TOKENS = 1024
CACHE_BLOCK_TOKENS = 128

# Fields that change how a reply is delivered or cut, not what it says.
_DELIVERY_FIELDS = frozenset(
    {
        "stream",
        "stream_options",
        "max_tokens",
        "max_completion_tokens",
        "max_output_tokens",
        "stop",
        "stop_sequences",
    }
)
_REASONING_MODEL_MARKERS = ("o1", "o3", "o4", "gpt-5", "reasoning", "thinking")
CACHE_WRITE_MODEL_MARKERS = ("gpt-5.6",)
"""OpenAI models whose usage reports cache writes (``prompt_tokens_details.cache_write_tokens``
on Chat Completions, ``input_tokens_details.cache_write_tokens`` on Responses)."""
_IMAGE_PART_TYPES = frozenset({"image_url", "input_image", "image"})
# Keys under which chat, responses and messages payloads carry prompt text.
_TEXT_KEYS = ("text", "content", "output", "arguments", "thinking", "tool_calls", "function")

_WORDS = (  # noqa: SIM905 - a sentence reads better than a column of fifty words
    "the quick brown fox jumps over lazy dog while meters count every token that passes "
    "through gateway kafka clickhouse report cost usage team model stream cache reads write "
    "latency budget invoice provider simulator answer request reply careful steady simple "
    "boring reliable numbers match exactly across processes and runs today tomorrow always"
).split()
_WORD_STREAM_LENGTH = 4096


def _build_word_stream() -> tuple[str, ...]:
    # Precomputed once so that building a reply is a slice and a join.
    words: list[str] = []
    seed = b"meterline-simulator"
    while len(words) < _WORD_STREAM_LENGTH:
        seed = hashlib.sha256(seed).digest()
        words.extend(_WORDS[byte % len(_WORDS)] for byte in seed)
    return tuple(words[:_WORD_STREAM_LENGTH])


_WORD_STREAM = _build_word_stream()


@dataclass(frozen=True, slots=True)
class Prompt:
    """The size of a request's input, as counted by the rules above."""

    chars: int = 0
    messages: int = 0
    images: int = 0
    audio: int = 0

    @property
    def audio_tokens(self) -> int:
        return TOKENS_PER_AUDIO * self.audio

    @property
    def tokens(self) -> int:
        return (
            -(-self.chars // CHARS_PER_TOKEN)
            + TOKENS_PER_MESSAGE * self.messages
            + TOKENS_PER_IMAGE * self.images
            + self.audio_tokens
        )


@dataclass(frozen=True, slots=True)
class Plan:
    """What the simulated model "does" for one request."""

    prompt_tokens: int  # everything, cache reads and writes included
    cache_read_tokens: int
    cache_write_5m_tokens: int
    cache_write_1h_tokens: int
    output_tokens: int  # reasoning included
    reasoning_tokens: int
    text: str
    truncated: bool  # stopped by the max-token cap
    stop_sequence: str | None  # stopped by this stop sequence
    input_audio_tokens: int = 0  # part of prompt_tokens, never cached
    output_audio_tokens: int = 0  # part of output_tokens
    web_search_requests: int = 0

    @property
    def cache_write_tokens(self) -> int:
        return self.cache_write_5m_tokens + self.cache_write_1h_tokens

    @property
    def uncached_input_tokens(self) -> int:
        """The prompt minus cache reads and writes (Anthropic's ``input_tokens``)."""
        return self.prompt_tokens - self.cache_read_tokens - self.cache_write_tokens


def measure(value: object) -> tuple[int, int]:
    """(characters, images) of a piece of prompt: a string, a list of parts or a part."""
    if isinstance(value, str):
        return len(value), 0
    chars = images = 0
    if isinstance(value, list):
        for item in value:
            item_chars, item_images = measure(item)
            chars += item_chars
            images += item_images
    elif isinstance(value, dict):
        kind = value.get("type")
        if kind in _IMAGE_PART_TYPES:
            return 0, 1
        if kind == "tool_use":
            chars += len(compact_json(value.get("input", {})))
        for key in _TEXT_KEYS:
            if key in value:
                item_chars, item_images = measure(value[key])
                chars += item_chars
                images += item_images
    return chars, images


def plain_text(content: object) -> str:
    """The text of a message's content (string or parts), for keyword triggers."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(
            part["text"]
            for part in content
            if isinstance(part, dict) and isinstance(part.get("text"), str)
        )
    return ""


def compact_json(value: object) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def request_digest(body: Mapping[str, Any]) -> bytes:
    content = {key: value for key, value in body.items() if key not in _DELIVERY_FIELDS}
    canonical = json.dumps(content, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).digest()


def audio_parts(messages: object) -> int:
    """The ``input_audio`` parts of Chat Completions messages."""
    if not isinstance(messages, list):
        return 0
    return sum(
        1
        for message in messages
        if isinstance(message, dict) and isinstance(message.get("content"), list)
        for part in message["content"]
        if isinstance(part, dict) and part.get("type") == "input_audio"
    )


def web_search_limit(tools: object) -> int | None:
    """The most searches a Messages request's ``web_search_*`` server tool allows; None
    without one."""
    if not isinstance(tools, list):
        return None
    for tool in tools:
        if isinstance(tool, dict) and str(tool.get("type", "")).startswith("web_search"):
            uses = tool.get("max_uses")
            return uses if isinstance(uses, int) and uses > 0 else MAX_WEB_SEARCHES
    return None


def openai_cache_writes(model: str) -> tuple[int, int] | None:
    """``plan``'s ``cache_write_ttls`` for an OpenAI model: one kind of write, or none."""
    lowered = model.lower()
    return (1, 0) if any(marker in lowered for marker in CACHE_WRITE_MODEL_MARKERS) else None


def wants_reasoning(model: str, body: Mapping[str, Any]) -> bool:
    lowered = model.lower()
    if any(marker in lowered for marker in _REASONING_MODEL_MARKERS):
        return True
    if body.get("reasoning") is not None or body.get("reasoning_effort") is not None:
        return True
    thinking = body.get("thinking")
    if isinstance(thinking, dict):
        return thinking.get("type") != "disabled"
    return thinking is not None


def plan(
    body: Mapping[str, Any],
    prompt: Prompt,
    *,
    model: str,
    max_tokens: int | None,
    cache_hint: bool = False,
    cache_write_ttls: tuple[int, int] | None = None,
    stop_sequences: Sequence[str] = (),
    audio_output: bool = False,
    web_searches_allowed: int | None = None,
) -> Plan:
    """Apply the module's rules to one request.

    ``cache_write_ttls`` is ``(breakpoints with 5m, breakpoints with 1h)`` for surfaces that
    report cache writes (Anthropic); ``None`` means the surface reports reads only.
    """
    digest = request_digest(body)
    prompt_tokens = prompt.tokens

    natural = MIN_OUTPUT_TOKENS + int.from_bytes(digest[0:2], "big") % (
        MAX_OUTPUT_TOKENS - MIN_OUTPUT_TOKENS + 1
    )
    output = natural if max_tokens is None else min(natural, max_tokens)
    truncated = output < natural
    reasoning = 0
    if wants_reasoning(model, body):
        reasoning = output * (25 + digest[6] % 51) // 100

    visible = output - reasoning
    start = int.from_bytes(digest[2:4], "big") % (_WORD_STREAM_LENGTH - MAX_OUTPUT_TOKENS)
    text = " ".join(_WORD_STREAM[start : start + visible])
    hit: str | None = None
    cut = len(text)
    for sequence in stop_sequences:
        position = text.find(sequence) if sequence else -1
        if 0 <= position < cut:
            hit, cut = sequence, position
    if hit is not None:
        text = text[:cut]
        output = reasoning + max(1, len(text.split()))
        truncated = False

    text_tokens = prompt_tokens - prompt.audio_tokens
    if cache_hint:
        cached = text_tokens // 2
    elif text_tokens >= CACHE_MIN_PROMPT_TOKENS:
        cached = text_tokens // 2 // CACHE_BLOCK_TOKENS * CACHE_BLOCK_TOKENS
    else:
        cached = 0
    read = write_5m = write_1h = 0
    if cache_write_ttls is not None and sum(cache_write_ttls) > 0 and digest[5] % 2 == 0:
        breakpoints_5m, breakpoints_1h = cache_write_ttls
        write_1h = cached * breakpoints_1h // (breakpoints_5m + breakpoints_1h)
        write_5m = cached - write_1h
    else:
        read = cached

    return Plan(
        prompt_tokens=prompt_tokens,
        cache_read_tokens=read,
        cache_write_5m_tokens=write_5m,
        cache_write_1h_tokens=write_1h,
        output_tokens=output,
        reasoning_tokens=reasoning,
        text=text,
        truncated=truncated,
        stop_sequence=hit,
        input_audio_tokens=prompt.audio_tokens,
        output_audio_tokens=output - reasoning if audio_output else 0,
        web_search_requests=0
        if web_searches_allowed is None
        else min(1 + digest[7] % MAX_WEB_SEARCHES, web_searches_allowed),
    )


def split_text(text: str, pieces: int) -> list[str]:
    """``text`` in ``pieces`` consecutive slices (empty ones when there are more pieces than
    characters), so a stream can have any number of content chunks without changing usage."""
    length = len(text)
    return [text[i * length // pieces : (i + 1) * length // pieces] for i in range(pieces)]
