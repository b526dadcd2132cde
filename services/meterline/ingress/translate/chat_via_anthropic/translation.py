"""OpenAI Chat Completions <-> Anthropic Messages, for whole requests and answers.

Pure functions on decoded JSON. A request that cannot be said in Messages (several choices,
audio, a legacy ``function`` message) is a 400 naming the parameter; options Messages has no
equivalent for and that do not change the answer's meaning (``seed``, ``logit_bias``,
``presence_penalty`` ...) are left out.

Request mapping:

- ``system`` / ``developer`` messages -> the top-level ``system`` blocks, in order;
- user content parts: ``text`` -> text blocks, ``image_url`` -> image blocks (base64 for
  ``data:`` URLs, else by URL); a ``cache_control`` on a part or a message is kept (it is how
  Chat Completions clients ask an Anthropic model for prompt caching);
- assistant ``tool_calls`` -> ``tool_use`` blocks (``arguments`` decoded from JSON);
- ``tool`` messages -> ``tool_result`` blocks in a user turn; consecutive turns of one role
  are merged, as Messages wants alternating turns;
- ``max_completion_tokens`` / ``max_tokens`` -> ``max_tokens`` (required by Messages;
  ``DEFAULT_MAX_TOKENS`` when the client set none), ``stop`` -> ``stop_sequences``,
  ``tools`` / ``tool_choice`` / ``parallel_tool_calls`` -> ``tools`` / ``tool_choice``, ``user``
  -> ``metadata.user_id``; ``reasoning_effort`` -> ``thinking`` with a budget
  (``THINKING_BUDGETS``); ``temperature``, ``top_p`` and ``stream`` as they are.

Answer mapping: text blocks -> ``content``; ``tool_use`` -> ``tool_calls``; thinking blocks are
not shown (Chat Completions has no field for them; their tokens are in the usage); stop
reasons as in ``FINISH_REASONS``; usage in OpenAI's convention, which is the event's:
``prompt_tokens`` = input + cache reads + cache writes, ``prompt_tokens_details.cached_tokens``
= cache reads, ``prompt_tokens_details.cache_write_tokens`` = cache writes (as OpenRouter
reports them), ``completion_tokens_details.reasoning_tokens`` = thinking tokens.
"""

from __future__ import annotations

import json
import time
from typing import Any, Final

from meterline.ingress.errors import BadRequest
from meterline.ingress.usage import from_anthropic_usage

DEFAULT_MAX_TOKENS: Final = 4096
"""``max_tokens`` when a Chat Completions client sets no limit: Messages requires one. Every
current Claude model allows at least this many output tokens."""

ANTHROPIC_VERSION: Final = "2023-06-01"
"""The Messages API version the translated requests are written for."""

FINISH_REASONS: Final[dict[str, str]] = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "pause_turn": "stop",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
}

_PASSED: Final = ("temperature", "top_p", "stream")

THINKING_BUDGETS: Final[dict[str, int]] = {"low": 1024, "medium": 4096, "high": 16384}
"""``reasoning_effort`` -> extended-thinking ``budget_tokens``."""
MIN_THINKING_BUDGET: Final = 1024
"""The smallest budget Anthropic accepts."""


def finish_reason(stop_reason: object) -> str | None:
    if not isinstance(stop_reason, str):
        return None
    return FINISH_REASONS.get(stop_reason, "stop")


def messages_request(chat: dict[str, Any], model: str) -> dict[str, Any]:
    """The Messages request for a Chat Completions request (``providerOptions`` already
    taken out) to ``model``."""
    n = chat.get("n")
    if n is not None and n != 1:
        raise BadRequest("n: Anthropic models return one choice; leave n out or set 1", param="n")
    request: dict[str, Any] = {"model": model}
    system: list[dict[str, Any]] = []
    turns: list[dict[str, Any]] = []
    messages = chat.get("messages")
    if not isinstance(messages, list):
        raise BadRequest("messages must be an array", param="messages")
    for index, message in enumerate(messages):
        where = f"messages[{index}]"
        if not isinstance(message, dict):
            raise BadRequest(f"{where} must be an object", param=where)
        role = message.get("role")
        if role in ("system", "developer"):
            system.extend(_text_blocks(message.get("content"), f"{where}.content", message))
        elif role == "user":
            blocks = _user_blocks(message.get("content"), f"{where}.content", message)
            _append(turns, "user", blocks)
        elif role == "assistant":
            _append(turns, "assistant", _assistant_blocks(message, where))
        elif role == "tool":
            _append(turns, "user", [_tool_result(message, where)])
        else:
            raise BadRequest(
                f"{where}.role {role!r} cannot be sent to an Anthropic model "
                "(system, developer, user, assistant or tool)",
                param=f"{where}.role",
            )
    if system:
        request["system"] = system
    request["messages"] = turns
    limit = chat.get("max_completion_tokens", chat.get("max_tokens"))
    request["max_tokens"] = DEFAULT_MAX_TOKENS if limit is None else limit
    thinking = _thinking(chat.get("reasoning_effort"), limit)
    if thinking is not None:
        request["thinking"] = thinking
        if limit is None:
            # Thinking counts toward max_tokens: keep the default room for the answer.
            request["max_tokens"] = DEFAULT_MAX_TOKENS + thinking["budget_tokens"]
    stop = chat.get("stop")
    if isinstance(stop, str):
        request["stop_sequences"] = [stop]
    elif isinstance(stop, list):
        request["stop_sequences"] = stop
    for name in _PASSED:
        if chat.get(name) is not None:
            request[name] = chat[name]
    tools = chat.get("tools")
    if tools:
        request["tools"] = _tools(tools)
    choice = _tool_choice(chat.get("tool_choice"), chat.get("parallel_tool_calls"))
    if choice is not None:
        request["tool_choice"] = choice
    user = chat.get("user")
    if isinstance(user, str) and user:
        request["metadata"] = {"user_id": user}
    return request


def _thinking(effort: object, limit: object) -> dict[str, Any] | None:
    """``reasoning_effort`` as an extended-thinking budget; None for no thinking."""
    if effort is None or effort in ("none", "minimal"):
        return None
    if effort not in THINKING_BUDGETS:
        raise BadRequest(
            "reasoning_effort must be one of none, minimal, low, medium, high",
            param="reasoning_effort",
        )
    budget = THINKING_BUDGETS[str(effort)]
    if isinstance(limit, int) and not isinstance(limit, bool):
        # The budget is part of max_tokens and must leave room for the answer.
        budget = min(budget, limit - 1)
        if budget < MIN_THINKING_BUDGET:
            raise BadRequest(
                f"reasoning_effort needs max_completion_tokens above {MIN_THINKING_BUDGET} "
                "on Anthropic models (the thinking budget is part of it)",
                param="reasoning_effort",
            )
    return {"type": "enabled", "budget_tokens": budget}


def _append(turns: list[dict[str, Any]], role: str, blocks: list[dict[str, Any]]) -> None:
    if turns and turns[-1]["role"] == role:
        turns[-1]["content"].extend(blocks)
    else:
        turns.append({"role": role, "content": blocks})


def _with_cache_control(block: dict[str, Any], source: dict[str, Any]) -> dict[str, Any]:
    control = source.get("cache_control")
    if isinstance(control, dict):
        block["cache_control"] = control
    return block


def _text_blocks(content: object, where: str, message: dict[str, Any]) -> list[dict[str, Any]]:
    """Text content (a string or ``text`` parts) as text blocks. A ``cache_control`` on the
    message goes on its last block, which is where Anthropic reads a breakpoint."""
    blocks: list[dict[str, Any]]
    if isinstance(content, str):
        blocks = [{"type": "text", "text": content}]
    elif isinstance(content, list):
        blocks = []
        for index, part in enumerate(content):
            if not isinstance(part, dict) or part.get("type") not in ("text", "refusal"):
                raise BadRequest(
                    f"{where}[{index}] must be a text part here", param=f"{where}[{index}]"
                )
            text = part.get("text", part.get("refusal"))
            if not isinstance(text, str):
                raise BadRequest(
                    f"{where}[{index}].text must be a string", param=f"{where}[{index}].text"
                )
            blocks.append(_with_cache_control({"type": "text", "text": text}, part))
    elif content is None:
        blocks = []
    else:
        raise BadRequest(f"{where} must be a string or an array of parts", param=where)
    if blocks:
        _with_cache_control(blocks[-1], message)
    return blocks


def _user_blocks(content: object, where: str, message: dict[str, Any]) -> list[dict[str, Any]]:
    if not isinstance(content, list):
        return _text_blocks(content, where, message)
    blocks: list[dict[str, Any]] = []
    for index, part in enumerate(content):
        kind = part.get("type") if isinstance(part, dict) else None
        if kind == "image_url" and isinstance(part, dict):
            blocks.append(_with_cache_control(_image(part, f"{where}[{index}]"), part))
        elif kind == "text" and isinstance(part, dict):
            blocks.extend(_text_blocks([part], where, {}))
        else:
            raise BadRequest(
                f"{where}[{index}]: part type {kind!r} cannot be sent to an Anthropic model "
                "(text or image_url)",
                param=f"{where}[{index}].type",
            )
    if blocks:
        _with_cache_control(blocks[-1], message)
    return blocks


def _image(part: dict[str, Any], where: str) -> dict[str, Any]:
    image = part.get("image_url")
    url = image.get("url") if isinstance(image, dict) else image
    if not isinstance(url, str) or not url:
        raise BadRequest(f"{where}.image_url.url must be a string", param=f"{where}.image_url")
    if url.startswith("data:"):
        header, comma, data = url[5:].partition(",")
        media_type, _, encoding = header.partition(";")
        if not comma or encoding != "base64":
            raise BadRequest(
                f"{where}.image_url.url: a data URL must be base64 ('data:<type>;base64,...')",
                param=f"{where}.image_url",
            )
        source = {"type": "base64", "media_type": media_type, "data": data}
        return {"type": "image", "source": source}
    return {"type": "image", "source": {"type": "url", "url": url}}


def _assistant_blocks(message: dict[str, Any], where: str) -> list[dict[str, Any]]:
    blocks = [b for b in _text_blocks(message.get("content"), f"{where}.content", {}) if b["text"]]
    calls = message.get("tool_calls") or []
    if not isinstance(calls, list):
        raise BadRequest(f"{where}.tool_calls must be an array", param=f"{where}.tool_calls")
    for index, call in enumerate(calls):
        at = f"{where}.tool_calls[{index}]"
        function = call.get("function") if isinstance(call, dict) else None
        if not isinstance(call, dict) or not isinstance(function, dict):
            raise BadRequest(f"{at} must be a function call", param=at)
        arguments = function.get("arguments") or "{}"
        try:
            decoded = json.loads(arguments) if isinstance(arguments, str) else arguments
        except ValueError:
            decoded = None
        if not isinstance(decoded, dict):
            raise BadRequest(
                f"{at}.function.arguments must be a JSON object", param=f"{at}.function.arguments"
            )
        blocks.append(
            {
                "type": "tool_use",
                "id": call.get("id"),
                "name": function.get("name"),
                "input": decoded,
            }
        )
    if not blocks:
        # Messages refuses an empty assistant turn; an empty text says the same.
        blocks.append({"type": "text", "text": ""})
    _with_cache_control(blocks[-1], message)
    return blocks


def _tool_result(message: dict[str, Any], where: str) -> dict[str, Any]:
    tool_call_id = message.get("tool_call_id")
    if not isinstance(tool_call_id, str) or not tool_call_id:
        raise BadRequest(
            f"{where}.tool_call_id is required for a tool message", param=f"{where}.tool_call_id"
        )
    content = message.get("content")
    result: dict[str, Any] = {"type": "tool_result", "tool_use_id": tool_call_id}
    if isinstance(content, str):
        result["content"] = content
    else:
        result["content"] = _text_blocks(content, f"{where}.content", {})
    return _with_cache_control(result, message)


def _tools(tools: object) -> list[dict[str, Any]]:
    if not isinstance(tools, list):
        raise BadRequest("tools must be an array", param="tools")
    converted = []
    for index, tool in enumerate(tools):
        function = tool.get("function") if isinstance(tool, dict) else None
        if (
            not isinstance(tool, dict)
            or tool.get("type") != "function"
            or not isinstance(function, dict)
        ):
            raise BadRequest(
                f"tools[{index}]: only function tools can be sent to an Anthropic model",
                param=f"tools[{index}]",
            )
        entry: dict[str, Any] = {
            "name": function.get("name"),
            "input_schema": function.get("parameters") or {"type": "object", "properties": {}},
        }
        if function.get("description"):
            entry["description"] = function["description"]
        converted.append(_with_cache_control(entry, tool))
    return converted


def _tool_choice(choice: object, parallel: object) -> dict[str, Any] | None:
    converted: dict[str, Any] | None
    if choice is None:
        converted = None
    elif choice == "auto":
        converted = {"type": "auto"}
    elif choice == "none":
        converted = {"type": "none"}
    elif choice == "required":
        converted = {"type": "any"}
    elif isinstance(choice, dict) and isinstance(choice.get("function"), dict):
        converted = {"type": "tool", "name": choice["function"].get("name")}
    else:
        raise BadRequest(
            "tool_choice must be 'auto', 'none', 'required' or a function", param="tool_choice"
        )
    if parallel is False:
        converted = converted or {"type": "auto"}
        if converted["type"] != "none":
            converted["disable_parallel_tool_use"] = True
    return converted


CHAT_USAGE_CANNOT_SAY: Final = {
    "cache_creation.ephemeral_1h_input_tokens": "Chat Completions has no cache lifetimes: the "
    "writes are in cache_write_tokens whatever their TTL, the split in the event only",
    "server_tool_use.web_search_requests": "Chat Completions usage has no field for "
    "server-side searches: they are in the event only",
}
"""The Anthropic usage fields (``usage.MESSAGES_FIELDS``) whose own meaning a Chat
Completions client's usage cannot carry, and why (README, "API surfaces")."""


def chat_usage(usage: object) -> dict[str, Any] | None:
    """An Anthropic usage object in Chat Completions' convention."""
    folded = from_anthropic_usage(usage)
    if folded is None:
        return None
    return {
        "prompt_tokens": folded.input_tokens,
        "completion_tokens": folded.output_tokens,
        "total_tokens": folded.input_tokens + folded.output_tokens,
        "prompt_tokens_details": {
            "cached_tokens": folded.cached_input_tokens,
            "cache_write_tokens": folded.cache_creation_input_tokens,
        },
        "completion_tokens_details": {"reasoning_tokens": folded.reasoning_tokens},
    }


def tool_call(block: dict[str, Any], arguments: str) -> dict[str, Any]:
    return {
        "id": block.get("id"),
        "type": "function",
        "function": {"name": block.get("name"), "arguments": arguments},
    }


def chat_completion(message: dict[str, Any], created: int | None = None) -> dict[str, Any]:
    """A chat completion for an Anthropic ``message``."""
    text: list[str] = []
    calls: list[dict[str, Any]] = []
    for block in message.get("content") or []:
        if not isinstance(block, dict):
            continue
        if block.get("type") == "text" and isinstance(block.get("text"), str):
            text.append(block["text"])
        elif block.get("type") == "tool_use":
            arguments = json.dumps(block.get("input") or {}, ensure_ascii=False)
            calls.append(tool_call(block, arguments))
    reply: dict[str, Any] = {
        "role": "assistant",
        "content": "".join(text) if text else None,
        "refusal": None,
    }
    if calls:
        reply["tool_calls"] = calls
    completion: dict[str, Any] = {
        "id": message.get("id"),
        "object": "chat.completion",
        "created": int(time.time()) if created is None else created,
        "model": message.get("model"),
        "choices": [
            {
                "index": 0,
                "message": reply,
                "logprobs": None,
                "finish_reason": finish_reason(message.get("stop_reason")),
            }
        ],
    }
    usage = chat_usage(message.get("usage"))
    if usage is not None:
        completion["usage"] = usage
    return completion


def chat_error(payload: dict[str, Any], status: int) -> dict[str, Any]:
    """An Anthropic error body in OpenAI's error format (what the OpenAI SDK reads)."""
    error = payload.get("error")
    error = error if isinstance(error, dict) else {}
    kind = error.get("type") if isinstance(error.get("type"), str) else f"http_{status}"
    message = error.get("message") if isinstance(error.get("message"), str) else kind
    return {"error": {"message": message, "type": kind, "param": None, "code": kind}}


def translate_answer(status: int, body: bytes) -> bytes:
    """A whole Messages answer (or error) as the Chat Completions client gets it. Bodies
    already in OpenAI's format (errors the gateway wrote itself) pass unchanged."""
    try:
        payload = json.loads(body)
    except ValueError:
        return body
    if not isinstance(payload, dict):
        return body
    if 200 <= status < 300 and payload.get("type") == "message":
        translated = chat_completion(payload)
    elif payload.get("type") == "error":
        translated = chat_error(payload, status)
    else:
        return body
    return json.dumps(translated, ensure_ascii=False, separators=(",", ":")).encode()
