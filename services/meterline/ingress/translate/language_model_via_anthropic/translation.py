"""AI SDK language-model calls <-> Anthropic Messages, for whole requests and answers (the
stream: ``stream.py``; the protocol: ``translate/language_model.py``).

Request mapping:

- ``system`` messages -> the top-level ``system`` blocks, in order (Messages has no system
  turn elsewhere);
- ``user`` text -> text blocks, files by media type: ``image/*`` -> image blocks,
  ``application/pdf`` -> document blocks (base64 or URL sources), ``text/plain`` data ->
  a plain-text document; other files are a 400;
- ``assistant`` text -> text blocks, tool calls -> ``tool_use``, reasoning -> ``thinking``
  with the signature the answer gave it (``providerOptions.anthropic.signature``) or
  ``redacted_thinking`` (``redactedData``); reasoning without either cannot be sent back
  (Anthropic checks the signature) and is left out, with a warning;
- ``tool`` messages -> ``tool_result`` blocks in a user turn (``is_error`` for error
  outputs; ``content`` outputs keep their text and images); consecutive turns of one role
  are merged, as Messages wants alternating turns;
- ``providerOptions.anthropic.cacheControl`` (or ``cache_control``) on a message, a part or
  a tool -> ``cache_control`` on its block (a message's on its last block), as the AI SDK's
  Anthropic provider reads it;
- ``maxOutputTokens`` -> ``max_tokens`` (required by Messages: ``DEFAULT_MAX_TOKENS``
  without it), ``stopSequences`` -> ``stop_sequences``, ``temperature``, ``topP``, ``topK``
  as they are; ``seed``, ``presencePenalty`` and ``frequencyPenalty`` have no equivalent (a
  warning each);
- ``providerOptions.anthropic.thinking`` (``{type: "enabled", budgetTokens}``) ->
  ``thinking``, and without it ``providerOptions.openai.reasoningEffort`` -> a budget
  (``THINKING_BUDGETS``). As the AI SDK's Anthropic provider does, the budget is added to
  ``max_tokens`` (thinking counts toward it) and ``temperature``, ``topP`` and ``topK`` are
  left out (Anthropic refuses them with thinking), with a warning each;
- ``responseFormat`` JSON -> an instruction (with the schema) after the system prompt:
  Messages has no JSON mode (a ``compatibility`` warning);
- ``tools`` / ``toolChoice`` -> tools / ``tool_choice`` (``required`` is ``any``),
  ``providerOptions.anthropic.disableParallelToolUse`` -> ``disable_parallel_tool_use``.

Answer mapping: text -> text parts, ``thinking`` -> reasoning parts (the signature in
``providerMetadata.anthropic.signature``, which the SDK sends back on the next turn),
``redacted_thinking`` -> empty reasoning with ``redactedData``, ``tool_use`` -> tool-call
parts; stop reasons as in ``FINISH_REASONS``; usage as the event records it.
"""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any, Final

from meterline.ingress.errors import BadRequest
from meterline.ingress.sse import dumps
from meterline.ingress.translate.chat_via_anthropic.translation import (
    DEFAULT_MAX_TOKENS,
    THINKING_BUDGETS,
)
from meterline.ingress.translate.language_model import (
    FileData,
    answer_error,
    cannot_send,
    file_data,
    finish_reason,
    function_tools,
    gateway_metadata,
    json_format,
    messages_of,
    provider_options,
    tool_choice,
    tool_input,
    tool_output_text,
    unknown_role,
    unsupported,
    usage_v3,
)
from meterline.ingress.usage import NO_USAGE, from_anthropic_usage

WIRE: Final = "anthropic"

FINISH_REASONS: Final[dict[str, str]] = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "pause_turn": "stop",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "tool_use": "tool-calls",
    "refusal": "content-filter",
}

_UNSUPPORTED: Final = ("seed", "presencePenalty", "frequencyPenalty")
_SAMPLING: Final = (("temperature", "temperature"), ("topP", "top_p"), ("topK", "top_k"))

LANGUAGE_MODEL_USAGE_CANNOT_SAY: Final = {
    "cache_creation.ephemeral_1h_input_tokens": "V3 usage has no cache lifetimes: the "
    "writes are in cacheWrite whatever their TTL, the split in raw and the event",
    "server_tool_use.web_search_requests": "V3 usage has no field for server-side "
    "searches: they are in raw and the event",
}
"""The Anthropic usage fields (``usage.MESSAGES_FIELDS``) whose own meaning the V3 usage
cannot carry, and why (README, "Using the AI SDK")."""


def finish(raw: object) -> dict[str, Any]:
    if not isinstance(raw, str):
        return finish_reason("other", None)
    return finish_reason(FINISH_REASONS.get(raw, "other"), raw)


def messages_request(
    options: dict[str, Any], model: str, *, stream: bool
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The Messages request for the SDK's call ``options``, and the warnings for what it
    could not say."""
    warnings: list[dict[str, Any]] = []
    system: list[dict[str, Any]] = []
    turns: list[dict[str, Any]] = []
    for where, message, content in messages_of(options):
        role = message.get("role")
        if role == "system":
            assert isinstance(content, str)
            system.append(_cached({"type": "text", "text": content}, message))
            continue
        assert isinstance(content, list)
        if role == "user":
            turn, blocks = "user", _user_blocks(content, where)
        elif role == "assistant":
            turn, blocks = "assistant", _assistant_blocks(content, where, warnings)
        elif role == "tool":
            turn, blocks = "user", _tool_results(content, where)
        else:
            raise unknown_role(message, where)
        if blocks:
            _cached(blocks[-1], message)
            _append(turns, turn, blocks)
    wanted = json_format(options)
    if wanted is not None:
        system.append({"type": "text", "text": _json_instruction(wanted)})
        warnings.append(
            {
                "type": "compatibility",
                "feature": "responseFormat",
                "details": "Anthropic has no JSON mode: the gateway asks for JSON in the "
                "system prompt",
            }
        )
    request: dict[str, Any] = {"model": model}
    if system:
        request["system"] = system
    request["messages"] = turns
    limit = options.get("maxOutputTokens")
    request["max_tokens"] = DEFAULT_MAX_TOKENS if limit is None else limit
    thinking = _thinking(options)
    if thinking is not None:
        request["thinking"] = thinking
        budget = thinking.get("budget_tokens")
        if isinstance(budget, int) and isinstance(request["max_tokens"], int):
            request["max_tokens"] += budget
    for name, field in _SAMPLING:
        if options.get(name) is None:
            continue
        if thinking is not None and thinking.get("type") != "disabled":
            warnings.append(unsupported(name, f"{name} is not supported with thinking"))
        else:
            request[field] = options[name]
    for name in _UNSUPPORTED:
        if options.get(name) is not None:
            warnings.append(unsupported(name, f"Anthropic has no {name}"))
    if options.get("stopSequences"):
        request["stop_sequences"] = options["stopSequences"]
    tools = function_tools(options)
    if tools:
        request["tools"] = [_tool(tool) for tool in tools]
    choice = _tool_choice(options)
    if choice is not None:
        request["tool_choice"] = choice
    if stream:
        request["stream"] = True
    return request, warnings


def _append(turns: list[dict[str, Any]], role: str, blocks: list[dict[str, Any]]) -> None:
    if turns and turns[-1]["role"] == role:
        turns[-1]["content"].extend(blocks)
    else:
        turns.append({"role": role, "content": blocks})


def _cached(block: dict[str, Any], holder: dict[str, Any]) -> dict[str, Any]:
    """``block`` with the cache breakpoint its message, part or tool asks for."""
    anthropic = provider_options(holder, "anthropic")
    control = anthropic.get("cacheControl", anthropic.get("cache_control"))
    if isinstance(control, dict):
        block["cache_control"] = control
    return block


def _user_blocks(parts: list[Any], where: str) -> list[dict[str, Any]]:
    blocks = []
    for index, part in enumerate(parts):
        at = f"{where}.content[{index}]"
        kind = part.get("type")
        if kind == "text" and isinstance(part.get("text"), str):
            blocks.append(_cached({"type": "text", "text": part["text"]}, part))
        elif kind == "file":
            blocks.append(_cached(_file(part, at), part))
        else:
            raise cannot_send(kind, at, WIRE)
    return blocks


def _source(data: FileData) -> dict[str, Any]:
    if data.url is not None:
        return {"type": "url", "url": data.url}
    return {"type": "base64", "media_type": data.media_type, "data": data.base64}


def _file(part: dict[str, Any], where: str) -> dict[str, Any]:
    data = file_data(part, where)
    media_type = data.media_type.lower()
    if media_type.startswith("image/"):
        return {"type": "image", "source": _source(data)}
    if media_type == "application/pdf":
        return {"type": "document", "source": _source(data)}
    if media_type == "text/plain" and data.base64 is not None:
        try:
            text = base64.b64decode(data.base64, validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            raise BadRequest(
                f"{where}.data: a text/plain file must be base64 UTF-8", param=f"{where}.data"
            ) from None
        source = {"type": "text", "media_type": "text/plain", "data": text}
        return {"type": "document", "source": source}
    raise BadRequest(
        f"{where}: a {data.media_type} file{' URL' if data.url else ''} cannot be sent to a "
        "model on the anthropic wire (images, PDFs and text/plain data can)",
        param=f"{where}.mediaType",
    )


def _assistant_blocks(
    parts: list[Any], where: str, warnings: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    blocks: list[dict[str, Any]] = []
    for index, part in enumerate(parts):
        at = f"{where}.content[{index}]"
        kind = part.get("type")
        if kind == "text" and isinstance(part.get("text"), str):
            if part["text"]:
                blocks.append(_cached({"type": "text", "text": part["text"]}, part))
        elif kind == "reasoning":
            block = _thinking_block(part)
            if block is None:
                warnings.append(
                    {
                        "type": "other",
                        "message": f"{at}: reasoning without an Anthropic signature cannot "
                        "be sent back to an Anthropic model and was left out",
                    }
                )
            else:
                blocks.append(block)
        elif kind == "tool-call":
            block = {
                "type": "tool_use",
                "id": part.get("toolCallId"),
                "name": part.get("toolName"),
                "input": tool_input(part),
            }
            blocks.append(_cached(block, part))
        else:
            raise cannot_send(kind, at, WIRE)
    return blocks


def _thinking_block(part: dict[str, Any]) -> dict[str, Any] | None:
    anthropic = provider_options(part, "anthropic")
    signature, redacted = anthropic.get("signature"), anthropic.get("redactedData")
    if isinstance(signature, str) and signature:
        return {"type": "thinking", "thinking": part.get("text", ""), "signature": signature}
    if isinstance(redacted, str) and redacted:
        return {"type": "redacted_thinking", "data": redacted}
    return None


def _tool_results(parts: list[Any], where: str) -> list[dict[str, Any]]:
    blocks = []
    for index, part in enumerate(parts):
        at = f"{where}.content[{index}]"
        kind = part.get("type")
        if kind == "tool-approval-response":
            continue  # answers a provider-executed tool's approval: nothing to send here
        if kind != "tool-result":
            raise cannot_send(kind, at, WIRE)
        output = part.get("output")
        text, is_error = tool_output_text(output, at)
        result: dict[str, Any] = {"type": "tool_result", "tool_use_id": part.get("toolCallId")}
        if isinstance(output, dict) and output.get("type") == "content":
            result["content"] = _result_content(output.get("value"), at)
        else:
            result["content"] = text
        if is_error:
            result["is_error"] = True
        blocks.append(_cached(result, part))
    return blocks


def _result_content(value: object, where: str) -> list[dict[str, Any]]:
    blocks: list[dict[str, Any]] = []
    for index, item in enumerate(value if isinstance(value, list) else []):
        at = f"{where}.output.value[{index}]"
        kind = item.get("type") if isinstance(item, dict) else None
        if kind == "text" and isinstance(item, dict):
            blocks.append({"type": "text", "text": str(item.get("text", ""))})
        elif kind in ("image-data", "file-data") and isinstance(item, dict):
            media_type = str(item.get("mediaType", ""))
            data = FileData(media_type, base64=str(item.get("data", "")))
            block = "document" if media_type == "application/pdf" else "image"
            blocks.append({"type": block, "source": _source(data)})
        elif kind == "image-url" and isinstance(item, dict):
            blocks.append({"type": "image", "source": {"type": "url", "url": item.get("url")}})
        else:
            raise cannot_send(kind, at, WIRE)
    return blocks


def _tool(tool: dict[str, Any]) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "name": tool["name"],
        "input_schema": tool.get("inputSchema") or {"type": "object", "properties": {}},
    }
    if tool.get("description"):
        entry["description"] = tool["description"]
    return _cached(entry, tool)


def _tool_choice(options: dict[str, Any]) -> dict[str, Any] | None:
    choice = tool_choice(options)
    converted: dict[str, Any] | None = None
    if choice is not None:
        kind, name = choice
        if kind == "required":
            converted = {"type": "any"}
        elif kind == "tool":
            converted = {"type": "tool", "name": name}
        else:
            converted = {"type": kind}
    if provider_options(options, "anthropic").get("disableParallelToolUse") is True:
        converted = converted or {"type": "auto"}
        if converted["type"] != "none":
            converted["disable_parallel_tool_use"] = True
    return converted


def _thinking(options: dict[str, Any]) -> dict[str, Any] | None:
    """Extended thinking as Messages takes it; None for none asked."""
    param = "providerOptions.anthropic.thinking"
    thinking = provider_options(options, "anthropic").get("thinking")
    if thinking is None:
        effort = provider_options(options, "openai").get("reasoningEffort")
        if effort in THINKING_BUDGETS:
            return {"type": "enabled", "budget_tokens": THINKING_BUDGETS[str(effort)]}
        return None
    kind = thinking.get("type") if isinstance(thinking, dict) else None
    if kind == "enabled" and isinstance(thinking, dict):
        budget = thinking.get("budgetTokens")
        if not isinstance(budget, int) or isinstance(budget, bool) or budget <= 0:
            raise BadRequest(f"{param}.budgetTokens must be a positive integer", param=param)
        return {"type": "enabled", "budget_tokens": budget}
    if kind in ("disabled", "adaptive"):
        return {"type": kind}
    raise BadRequest(f"{param}.type must be enabled, adaptive or disabled", param=param)


def _json_instruction(wanted: dict[str, Any]) -> str:
    instruction = "Answer with a single JSON value and nothing else"
    if isinstance(wanted.get("schema"), dict):
        instruction += " that conforms to this JSON schema: " + json.dumps(wanted["schema"])
    for name in ("name", "description"):
        if isinstance(wanted.get(name), str) and wanted[name]:
            instruction += f"\n{name.capitalize()}: {wanted[name]}"
    return instruction


def reasoning_part(block: dict[str, Any]) -> dict[str, Any] | None:
    """A ``thinking`` or ``redacted_thinking`` block as a reasoning part."""
    if block.get("type") == "thinking":
        metadata = {"anthropic": {"signature": block.get("signature")}}
        text = block.get("thinking", "")
        return {"type": "reasoning", "text": text, "providerMetadata": metadata}
    if block.get("type") == "redacted_thinking":
        metadata = {"anthropic": {"redactedData": block.get("data")}}
        return {"type": "reasoning", "text": "", "providerMetadata": metadata}
    return None


def generate_result(
    message: dict[str, Any], *, event_id: str, warnings: list[dict[str, Any]]
) -> dict[str, Any]:
    """A ``LanguageModelV3GenerateResult`` for an Anthropic ``message``."""
    content: list[dict[str, Any]] = []
    for block in message.get("content") or []:
        if not isinstance(block, dict):
            continue
        kind = block.get("type")
        if kind == "text" and isinstance(block.get("text"), str):
            content.append({"type": "text", "text": block["text"]})
        elif kind == "tool_use":
            content.append(
                {
                    "type": "tool-call",
                    "toolCallId": block.get("id"),
                    "toolName": block.get("name"),
                    "input": dumps(block.get("input") or {}).decode(),
                }
            )
        else:
            reasoning = reasoning_part(block)
            if reasoning is not None:
                content.append(reasoning)
    return {
        "content": content,
        "finishReason": finish(message.get("stop_reason")),
        "usage": usage_v3(from_anthropic_usage(message.get("usage")) or NO_USAGE),
        "providerMetadata": gateway_metadata(event_id),
        "warnings": warnings,
    }


def translate_answer(
    status: int, body: bytes, *, event_id: str, warnings: list[dict[str, Any]]
) -> bytes:
    """A whole Messages answer (or an error) as the gateway provider reads it."""
    try:
        payload = json.loads(body)
    except ValueError:
        payload = None
    if not isinstance(payload, dict):
        payload = {}
    if 200 <= status < 300:
        return dumps(generate_result(payload, event_id=event_id, warnings=warnings))
    return answer_error(status, payload)
