"""Anthropic Messages <-> OpenAI Chat Completions, for an Anthropic client calling a model of
an OpenAI-compatible provider: whole requests and answers (the stream: ``stream.py``).

Request mapping: ``system`` -> a system message; text blocks -> text parts, image blocks ->
``image_url`` parts (base64 sources as ``data:`` URLs); ``tool_use`` blocks -> assistant
``tool_calls``; ``tool_result`` blocks -> ``tool`` messages; ``max_tokens`` -> ``max_tokens``,
``stop_sequences`` -> ``stop``, ``tools`` / ``tool_choice`` -> function tools / ``tool_choice``
(``disable_parallel_tool_use`` -> ``parallel_tool_calls: false``), ``metadata.user_id`` ->
``user``; ``temperature``, ``top_p`` as they are. Thinking blocks of earlier turns are left out
(Chat Completions has no field for them). Streams always ask for usage.

Answer mapping: ``content`` -> a text block, ``tool_calls`` -> ``tool_use`` blocks, finish
reasons as in ``STOP_REASONS``, usage in Anthropic's convention: ``input_tokens`` without the
cache reads (``cache_read_input_tokens``) and writes (``cache_creation_input_tokens``), as
Anthropic reports them.
"""

from __future__ import annotations

import json
from typing import Any, Final

from meterline.ingress.errors import BadRequest, anthropic_error_body
from meterline.ingress.sse import dumps
from meterline.ingress.usage import Usage, from_openai_usage

STOP_REASONS: Final[dict[str, str]] = {
    "stop": "end_turn",
    "length": "max_tokens",
    "tool_calls": "tool_use",
    "function_call": "tool_use",
    "content_filter": "refusal",
}


def stop_reason(finish: object) -> str | None:
    if not isinstance(finish, str):
        return None
    return STOP_REASONS.get(finish, "end_turn")


def chat_request(body: dict[str, Any], model: str) -> dict[str, Any]:
    """The Chat Completions request for a Messages request (``providerOptions`` already
    taken out) to ``model``."""
    messages: list[dict[str, Any]] = []
    system = body.get("system")
    if isinstance(system, str) and system:
        messages.append({"role": "system", "content": system})
    elif isinstance(system, list) and system:
        messages.append({"role": "system", "content": _text(system, "system")})
    turns = body.get("messages")
    if not isinstance(turns, list):
        raise BadRequest("messages: must be an array", param="messages")
    for index, turn in enumerate(turns):
        where = f"messages.{index}"
        if not isinstance(turn, dict) or turn.get("role") not in ("user", "assistant"):
            raise BadRequest(f"{where}.role: must be 'user' or 'assistant'", param=f"{where}.role")
        content = turn.get("content")
        if isinstance(content, str):
            messages.append({"role": turn["role"], "content": content})
        elif isinstance(content, list):
            if turn["role"] == "user":
                messages.extend(_user(content, where))
            else:
                messages.append(_assistant(content, where))
        else:
            raise BadRequest(
                f"{where}.content: must be a string or an array of blocks",
                param=f"{where}.content",
            )
    request: dict[str, Any] = {"model": model, "messages": messages}
    if body.get("max_tokens") is not None:
        request["max_tokens"] = body["max_tokens"]
    stops = body.get("stop_sequences")
    if stops:
        request["stop"] = stops
    for name in ("temperature", "top_p"):
        if body.get(name) is not None:
            request[name] = body[name]
    if body.get("stream") is True:
        request["stream"] = True
        request["stream_options"] = {"include_usage": True}
    tools = body.get("tools")
    if tools:
        request["tools"] = _tools(tools)
    choice = body.get("tool_choice")
    if isinstance(choice, dict):
        request.update(_tool_choice(choice))
    metadata = body.get("metadata")
    user = metadata.get("user_id") if isinstance(metadata, dict) else None
    if isinstance(user, str) and user:
        request["user"] = user
    return request


def _text(blocks: list[Any], where: str) -> str:
    parts = []
    for index, block in enumerate(blocks):
        if not isinstance(block, dict) or block.get("type") != "text":
            raise BadRequest(f"{where}.{index}: must be a text block", param=f"{where}.{index}")
        parts.append(str(block.get("text", "")))
    return "\n\n".join(parts)


def _user(blocks: list[Any], where: str) -> list[dict[str, Any]]:
    """A user turn: tool results become ``tool`` messages first (they answer the previous
    assistant turn), the rest one user message."""
    results: list[dict[str, Any]] = []
    parts: list[dict[str, Any]] = []
    for index, block in enumerate(blocks):
        at = f"{where}.content.{index}"
        kind = block.get("type") if isinstance(block, dict) else None
        if kind == "text" and isinstance(block, dict):
            parts.append({"type": "text", "text": block.get("text", "")})
        elif kind == "image" and isinstance(block, dict):
            parts.append({"type": "image_url", "image_url": {"url": _image_url(block, at)}})
        elif kind == "tool_result" and isinstance(block, dict):
            content = block.get("content")
            text = _text(content, f"{at}.content") if isinstance(content, list) else content
            results.append(
                {"role": "tool", "tool_call_id": block.get("tool_use_id"), "content": text or ""}
            )
        else:
            raise BadRequest(
                f"{at}: block type {kind!r} cannot be sent to an OpenAI-compatible model",
                param=f"{at}.type",
            )
    if parts:
        results.append({"role": "user", "content": parts})
    return results


def _image_url(block: dict[str, Any], where: str) -> str:
    source = block.get("source")
    if isinstance(source, dict) and source.get("type") == "base64":
        return f"data:{source.get('media_type')};base64,{source.get('data')}"
    if isinstance(source, dict) and source.get("type") == "url":
        return str(source.get("url"))
    raise BadRequest(f"{where}.source: must be a base64 or url source", param=f"{where}.source")


def _assistant(blocks: list[Any], where: str) -> dict[str, Any]:
    text: list[str] = []
    calls: list[dict[str, Any]] = []
    for index, block in enumerate(blocks):
        kind = block.get("type") if isinstance(block, dict) else None
        if kind == "text" and isinstance(block, dict):
            text.append(str(block.get("text", "")))
        elif kind == "tool_use" and isinstance(block, dict):
            arguments = json.dumps(block.get("input") or {}, ensure_ascii=False)
            calls.append(
                {
                    "id": block.get("id"),
                    "type": "function",
                    "function": {"name": block.get("name"), "arguments": arguments},
                }
            )
        elif kind not in ("thinking", "redacted_thinking"):
            at = f"{where}.content.{index}"
            raise BadRequest(
                f"{at}: block type {kind!r} cannot be sent to an OpenAI-compatible model",
                param=f"{at}.type",
            )
    message: dict[str, Any] = {"role": "assistant", "content": "".join(text) or None}
    if calls:
        message["tool_calls"] = calls
    return message


def _tools(tools: object) -> list[dict[str, Any]]:
    if not isinstance(tools, list):
        raise BadRequest("tools: must be an array", param="tools")
    converted = []
    for index, tool in enumerate(tools):
        if not isinstance(tool, dict) or "input_schema" not in tool:
            raise BadRequest(
                f"tools.{index}: only custom tools (with input_schema) can be sent to an "
                "OpenAI-compatible model",
                param=f"tools.{index}",
            )
        function: dict[str, Any] = {"name": tool.get("name"), "parameters": tool["input_schema"]}
        if tool.get("description"):
            function["description"] = tool["description"]
        converted.append({"type": "function", "function": function})
    return converted


def _tool_choice(choice: dict[str, Any]) -> dict[str, Any]:
    kind = choice.get("type")
    converted: dict[str, Any] = {}
    if kind == "auto":
        converted["tool_choice"] = "auto"
    elif kind == "any":
        converted["tool_choice"] = "required"
    elif kind == "none":
        converted["tool_choice"] = "none"
    elif kind == "tool":
        converted["tool_choice"] = {"type": "function", "function": {"name": choice.get("name")}}
    if choice.get("disable_parallel_tool_use") is True:
        converted["parallel_tool_calls"] = False
    return converted


MESSAGES_USAGE_CANNOT_SAY: Final = {
    "prompt_tokens_details.audio_tokens": "Messages usage has no audio field: the tokens are "
    "in input_tokens, the audio share in the event only",
    "completion_tokens_details.audio_tokens": "Messages usage has no audio field: the tokens "
    "are in output_tokens, the audio share in the event only",
}
"""The Chat Completions usage fields (``usage.CHAT_COMPLETIONS_FIELDS``) whose own meaning
a Messages client's usage cannot carry, and why (README, "API surfaces")."""


def anthropic_usage(usage: Usage) -> dict[str, Any]:
    """The event's usage convention in Anthropic's: reads and writes beside the input, and
    the reasoning tokens (inside ``output_tokens``) as thinking tokens, so the client can
    reconcile what it is billed for."""
    converted: dict[str, Any] = {
        "input_tokens": usage.input_tokens
        - usage.cached_input_tokens
        - usage.cache_creation_input_tokens,
        "cache_creation_input_tokens": usage.cache_creation_input_tokens,
        "cache_read_input_tokens": usage.cached_input_tokens,
        "output_tokens": usage.output_tokens,
    }
    if usage.reasoning_tokens:
        converted["output_tokens_details"] = {"thinking_tokens": usage.reasoning_tokens}
    return converted


def message(completion: dict[str, Any]) -> dict[str, Any]:
    """An Anthropic ``message`` for a chat completion."""
    choices = completion.get("choices")
    choice = choices[0] if isinstance(choices, list) and choices else {}
    reply = choice.get("message") if isinstance(choice, dict) else None
    reply = reply if isinstance(reply, dict) else {}
    content: list[dict[str, Any]] = []
    if isinstance(reply.get("content"), str) and reply["content"]:
        content.append({"type": "text", "text": reply["content"]})
    for call in reply.get("tool_calls") or []:
        function = call.get("function") if isinstance(call, dict) else None
        if not isinstance(function, dict):
            continue
        content.append(
            {
                "type": "tool_use",
                "id": call.get("id"),
                "name": function.get("name"),
                "input": _arguments(function.get("arguments")),
            }
        )
    usage = from_openai_usage(completion.get("usage")) or Usage()
    return {
        "id": completion.get("id"),
        "type": "message",
        "role": "assistant",
        "model": completion.get("model"),
        "content": content,
        "stop_reason": stop_reason(
            choice.get("finish_reason") if isinstance(choice, dict) else None
        ),
        "stop_sequence": None,
        "usage": anthropic_usage(usage),
    }


def _arguments(arguments: object) -> dict[str, Any]:
    """Tool arguments as an object; a model's malformed JSON is passed on as a string under
    ``_raw`` rather than lost."""
    if not isinstance(arguments, str) or not arguments:
        return {}
    try:
        decoded = json.loads(arguments)
    except ValueError:
        return {"_raw": arguments}
    return decoded if isinstance(decoded, dict) else {"_raw": arguments}


def translate_answer(status: int, body: bytes) -> bytes:
    """A whole chat completion (or an OpenAI-format error) as the Messages client gets it."""
    try:
        payload = json.loads(body)
    except ValueError:
        return body
    if not isinstance(payload, dict):
        return body
    if 200 <= status < 300 and isinstance(payload.get("choices"), list):
        return dumps(message(payload))
    error = payload.get("error")
    if isinstance(error, dict):
        text = error.get("message")
        return anthropic_error_body(status, text if isinstance(text, str) else f"HTTP {status}")
    return body
