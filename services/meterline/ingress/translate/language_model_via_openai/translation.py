"""AI SDK language-model calls <-> OpenAI Chat Completions, for whole requests and answers
(the stream: ``stream.py``; the protocol: ``translate/language_model.py``).

Request mapping:

- ``system`` messages -> system messages; ``user`` text parts -> text (one text part: a
  plain string, which every OpenAI-compatible server takes), file parts by media type:
  ``image/*`` -> ``image_url`` (a URL or a ``data:`` URL), ``audio/wav`` and ``audio/mpeg``
  -> ``input_audio``, ``application/pdf`` -> a ``file`` part; other files are a 400;
- ``assistant`` text -> ``content``, tool calls -> ``tool_calls``; reasoning parts are left
  out (Chat Completions has no field for them);
- ``tool`` messages -> one ``tool`` message per result (its output as text);
- ``maxOutputTokens`` -> ``max_completion_tokens`` (OpenAI's current name: its reasoning
  models refuse the older ``max_tokens``), ``stopSequences`` -> ``stop``, ``temperature``,
  ``topP``, ``seed``, ``presencePenalty``, ``frequencyPenalty`` as they are; ``topK`` has no
  equivalent (a warning);
- ``responseFormat`` JSON -> ``response_format`` ``json_schema`` (with a schema) or
  ``json_object``; ``tools`` / ``toolChoice`` -> function tools / ``tool_choice``;
- ``providerOptions.openai``: ``reasoningEffort`` -> ``reasoning_effort``,
  ``promptCacheKey`` -> ``prompt_cache_key``, ``parallelToolCalls`` ->
  ``parallel_tool_calls``. Without ``reasoningEffort``, ``providerOptions.anthropic.thinking``
  asks for the effort whose Anthropic budget covers it (``THINKING_BUDGETS``), so a request
  written for Claude still reasons on a fallback model;
- a stream always asks for usage.

Answer mapping: ``reasoning_content`` / ``reasoning`` (what OpenAI-compatible servers such
as vLLM and DeepSeek send) -> a reasoning part, ``content`` -> a text part, ``tool_calls``
-> tool-call parts; finish reasons as in ``FINISH_REASONS``; usage as the event records it.
"""

from __future__ import annotations

import json
from typing import Any, Final

from meterline.ingress.errors import BadRequest
from meterline.ingress.sse import dumps
from meterline.ingress.translate.chat_via_anthropic.translation import THINKING_BUDGETS
from meterline.ingress.translate.language_model import (
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
from meterline.ingress.usage import NO_USAGE, from_openai_usage

WIRE: Final = "openai"

FINISH_REASONS: Final[dict[str, str]] = {
    "stop": "stop",
    "length": "length",
    "content_filter": "content-filter",
    "tool_calls": "tool-calls",
    "function_call": "tool-calls",
}

AUDIO_FORMATS: Final[dict[str, str]] = {
    "audio/wav": "wav",
    "audio/x-wav": "wav",
    "audio/mpeg": "mp3",
    "audio/mp3": "mp3",
}

_PASSED: Final = (
    ("temperature", "temperature"),
    ("topP", "top_p"),
    ("seed", "seed"),
    ("presencePenalty", "presence_penalty"),
    ("frequencyPenalty", "frequency_penalty"),
)

LANGUAGE_MODEL_USAGE_CANNOT_SAY: Final = {
    "prompt_tokens_details.audio_tokens": "V3 usage has no audio field: the tokens are in "
    "inputTokens.total and noCache, the audio share in raw and the event",
}
"""The Chat Completions usage fields (``usage.CHAT_COMPLETIONS_FIELDS``) whose own meaning
the V3 usage cannot carry, and why (README, "Using the AI SDK")."""


def finish(raw: object) -> dict[str, Any]:
    if not isinstance(raw, str):
        return finish_reason("other", None)
    return finish_reason(FINISH_REASONS.get(raw, "other"), raw)


def chat_request(
    options: dict[str, Any], model: str, *, stream: bool
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The Chat Completions request for the SDK's call ``options``, and the warnings for
    what it could not say."""
    warnings: list[dict[str, Any]] = []
    messages: list[dict[str, Any]] = []
    for where, message, content in messages_of(options):
        role = message.get("role")
        if role == "system":
            messages.append({"role": "system", "content": content})
        elif role == "user":
            assert isinstance(content, list)
            messages.append({"role": "user", "content": _user_content(content, where)})
        elif role == "assistant":
            assert isinstance(content, list)
            messages.append(_assistant(content, where))
        elif role == "tool":
            assert isinstance(content, list)
            messages.extend(_tool_results(content, where))
        else:
            raise unknown_role(message, where)
    request: dict[str, Any] = {"model": model, "messages": messages}
    if options.get("maxOutputTokens") is not None:
        request["max_completion_tokens"] = options["maxOutputTokens"]
    for name, field in _PASSED:
        if options.get(name) is not None:
            request[field] = options[name]
    if options.get("stopSequences"):
        request["stop"] = options["stopSequences"]
    if options.get("topK") is not None:
        warnings.append(unsupported("topK", "Chat Completions has no top-k sampling"))
    response_format = _response_format(options)
    if response_format is not None:
        request["response_format"] = response_format
    tools = function_tools(options)
    if tools:
        request["tools"] = [_tool(tool) for tool in tools]
    choice = tool_choice(options)
    if choice is not None:
        kind, tool_name = choice
        request["tool_choice"] = (
            {"type": "function", "function": {"name": tool_name}} if kind == "tool" else kind
        )
    request.update(_openai_options(options))
    if stream:
        request["stream"] = True
        request["stream_options"] = {"include_usage": True}
    return request, warnings


def _user_content(parts: list[Any], where: str) -> str | list[dict[str, Any]]:
    converted: list[dict[str, Any]] = []
    for index, part in enumerate(parts):
        at = f"{where}.content[{index}]"
        kind = part.get("type")
        if kind == "text" and isinstance(part.get("text"), str):
            converted.append({"type": "text", "text": part["text"]})
        elif kind == "file":
            converted.append(_file(part, at))
        else:
            raise cannot_send(kind, at, WIRE)
    if len(converted) == 1 and converted[0]["type"] == "text":
        text: str = converted[0]["text"]
        return text
    return converted


def _file(part: dict[str, Any], where: str) -> dict[str, Any]:
    data = file_data(part, where)
    media_type = data.media_type.lower()
    if media_type.startswith("image/"):
        return {"type": "image_url", "image_url": {"url": data.data_url}}
    if media_type in AUDIO_FORMATS and data.base64 is not None:
        audio = {"data": data.base64, "format": AUDIO_FORMATS[media_type]}
        return {"type": "input_audio", "input_audio": audio}
    if media_type == "application/pdf" and data.base64 is not None:
        filename = part.get("filename")
        document = {
            "filename": filename if isinstance(filename, str) and filename else "document.pdf",
            "file_data": data.data_url,
        }
        return {"type": "file", "file": document}
    raise BadRequest(
        f"{where}: a {data.media_type} file{' URL' if data.url else ''} cannot be sent to a "
        "model on the openai wire (images, wav or mp3 audio and PDF data can)",
        param=f"{where}.mediaType",
    )


def _assistant(parts: list[Any], where: str) -> dict[str, Any]:
    text: list[str] = []
    calls: list[dict[str, Any]] = []
    for index, part in enumerate(parts):
        at = f"{where}.content[{index}]"
        kind = part.get("type")
        if kind == "text" and isinstance(part.get("text"), str):
            text.append(part["text"])
        elif kind == "tool-call":
            calls.append(
                {
                    "id": part.get("toolCallId"),
                    "type": "function",
                    "function": {
                        "name": part.get("toolName"),
                        "arguments": dumps(tool_input(part)).decode(),
                    },
                }
            )
        elif kind != "reasoning":
            raise cannot_send(kind, at, WIRE)
    message: dict[str, Any] = {"role": "assistant", "content": "".join(text) or None}
    if calls:
        message["tool_calls"] = calls
    return message


def _tool_results(parts: list[Any], where: str) -> list[dict[str, Any]]:
    results = []
    for index, part in enumerate(parts):
        at = f"{where}.content[{index}]"
        kind = part.get("type")
        if kind == "tool-approval-response":
            continue  # answers a provider-executed tool's approval: nothing to send here
        if kind != "tool-result":
            raise cannot_send(kind, at, WIRE)
        text, _ = tool_output_text(part.get("output"), at)
        results.append({"role": "tool", "tool_call_id": part.get("toolCallId"), "content": text})
    return results


def _tool(tool: dict[str, Any]) -> dict[str, Any]:
    function: dict[str, Any] = {
        "name": tool["name"],
        "parameters": tool.get("inputSchema") or {"type": "object", "properties": {}},
    }
    if tool.get("description"):
        function["description"] = tool["description"]
    if isinstance(tool.get("strict"), bool):
        function["strict"] = tool["strict"]
    return {"type": "function", "function": function}


def _response_format(options: dict[str, Any]) -> dict[str, Any] | None:
    wanted = json_format(options)
    if wanted is None:
        return None
    schema = wanted.get("schema")
    if not isinstance(schema, dict):
        return {"type": "json_object"}
    name = wanted.get("name")
    described: dict[str, Any] = {
        "name": name if isinstance(name, str) and name else "response",
        "schema": schema,
    }
    if isinstance(wanted.get("description"), str):
        described["description"] = wanted["description"]
    return {"type": "json_schema", "json_schema": described}


def _openai_options(options: dict[str, Any]) -> dict[str, Any]:
    openai = provider_options(options, "openai")
    out: dict[str, Any] = {}
    effort = openai.get("reasoningEffort")
    if effort is None:
        effort = _effort_for_thinking(provider_options(options, "anthropic").get("thinking"))
    if effort is not None:
        if not isinstance(effort, str):
            raise BadRequest(
                "providerOptions.openai.reasoningEffort must be a string",
                param="providerOptions.openai.reasoningEffort",
            )
        out["reasoning_effort"] = effort
    if isinstance(openai.get("promptCacheKey"), str):
        out["prompt_cache_key"] = openai["promptCacheKey"]
    if isinstance(openai.get("parallelToolCalls"), bool):
        out["parallel_tool_calls"] = openai["parallelToolCalls"]
    return out


def _effort_for_thinking(thinking: object) -> str | None:
    if not isinstance(thinking, dict) or thinking.get("type") not in ("enabled", "adaptive"):
        return None
    budget = thinking.get("budgetTokens")
    if not isinstance(budget, int):
        return "medium"
    return next((e for e, b in THINKING_BUDGETS.items() if budget <= b), "high")


def reasoning_text(message: dict[str, Any]) -> str | None:
    """The reasoning an OpenAI-compatible server sends beside the content (OpenAI's own
    Chat Completions sends none)."""
    for name in ("reasoning_content", "reasoning"):
        value = message.get(name)
        if isinstance(value, str) and value:
            return value
    return None


def generate_result(
    completion: dict[str, Any], *, event_id: str, warnings: list[dict[str, Any]]
) -> dict[str, Any]:
    """A ``LanguageModelV3GenerateResult`` for a chat completion."""
    choices = completion.get("choices")
    choice = choices[0] if isinstance(choices, list) and choices else {}
    choice = choice if isinstance(choice, dict) else {}
    message = choice.get("message")
    message = message if isinstance(message, dict) else {}
    content: list[dict[str, Any]] = []
    reasoning = reasoning_text(message)
    if reasoning is not None:
        content.append({"type": "reasoning", "text": reasoning})
    if isinstance(message.get("content"), str) and message["content"]:
        content.append({"type": "text", "text": message["content"]})
    for call in message.get("tool_calls") or []:
        function = call.get("function") if isinstance(call, dict) else None
        if not isinstance(call, dict) or not isinstance(function, dict):
            continue
        arguments = function.get("arguments")
        content.append(
            {
                "type": "tool-call",
                "toolCallId": call.get("id"),
                "toolName": function.get("name"),
                "input": arguments if isinstance(arguments, str) and arguments else "{}",
            }
        )
    return {
        "content": content,
        "finishReason": finish(choice.get("finish_reason")),
        "usage": usage_v3(from_openai_usage(completion.get("usage")) or NO_USAGE),
        "providerMetadata": gateway_metadata(event_id),
        "warnings": warnings,
    }


def translate_answer(
    status: int, body: bytes, *, event_id: str, warnings: list[dict[str, Any]]
) -> bytes:
    """A whole chat completion (or an error) as the gateway provider reads it."""
    try:
        payload = json.loads(body)
    except ValueError:
        payload = None
    if not isinstance(payload, dict):
        payload = {}
    if 200 <= status < 300:
        return dumps(generate_result(payload, event_id=event_id, warnings=warnings))
    return answer_error(status, payload)
