"""What both directions of the AI SDK's language-model protocol share: the protocol the
gateway provider (``@ai-sdk/gateway``) speaks to ``POST /v3/ai/language-model``, read from
the package and from ``@ai-sdk/provider``'s ``LanguageModelV3`` types.

The request is the SDK's call options as JSON (``prompt``, ``tools``, ``toolChoice``,
``maxOutputTokens`` ...); the model and whether to stream are headers. A whole answer is a
``LanguageModelV3GenerateResult`` (``content``, ``finishReason``, ``usage``,
``providerMetadata``, ``warnings``); a stream is one ``LanguageModelV3StreamPart`` per
``data:`` event, ending with ``finish``. Errors are ``{"error": {"message", "type", "param",
"code"}}`` (``errors.language_model_error_body``).

Usage goes out in the V3 shape, from the event's own ``Usage`` (``usage.py``), so the client
and the event say the same numbers: ``inputTokens.total`` is the event's input (cache reads
and writes included), ``noCache`` the rest of it; ``outputTokens.total`` the event's output,
``reasoning`` its reasoning share, ``text`` what is neither reasoning nor audio. ``raw`` is
the provider's usage object as it came, which also holds what V3 has no field for (audio,
web searches, the cache writes' lifetimes).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Final

from meterline.ingress.errors import BadRequest, language_model_error_body
from meterline.ingress.sse import data_event, dumps
from meterline.ingress.usage import Usage

SPECIFICATION_VERSION: Final = "3"

UNIFIED_FINISH_REASONS: Final = frozenset(
    {"stop", "length", "content-filter", "tool-calls", "error", "other"}
)


def finish_reason(unified: str, raw: str | None) -> dict[str, Any]:
    assert unified in UNIFIED_FINISH_REASONS
    return {"unified": unified, "raw": raw}


def usage_v3(usage: Usage) -> dict[str, Any]:
    """The event's usage in ``LanguageModelV3Usage``'s shape."""
    return {
        "inputTokens": {
            "total": usage.input_tokens,
            "noCache": usage.input_tokens
            - usage.cached_input_tokens
            - usage.cache_creation_input_tokens,
            "cacheRead": usage.cached_input_tokens,
            "cacheWrite": usage.cache_creation_input_tokens,
        },
        "outputTokens": {
            "total": usage.output_tokens,
            "text": usage.output_tokens - usage.reasoning_tokens - usage.output_audio_tokens,
            "reasoning": usage.reasoning_tokens,
        },
        "raw": json.loads(usage.raw),
    }


def gateway_metadata(event_id: str) -> dict[str, Any]:
    """``providerMetadata`` of an answer: the event id, which ``GET /v1/generation?id=``
    looks up (also in the ``x-meterline-event-id`` header)."""
    return {"gateway": {"generationId": event_id}}


def unsupported(feature: str, details: str) -> dict[str, Any]:
    """A warning the SDK shows for an option the provider's API has no equivalent for."""
    return {"type": "unsupported", "feature": feature, "details": details}


def provider_options(holder: dict[str, Any], provider: str) -> dict[str, Any]:
    """``holder.providerOptions[provider]``: the options the AI SDK's own provider packages
    read (``openai``, ``anthropic``), on the call, a message, a part or a tool."""
    options = holder.get("providerOptions")
    found = options.get(provider) if isinstance(options, dict) else None
    return found if isinstance(found, dict) else {}


def messages_of(options: dict[str, Any]) -> list[tuple[str, dict[str, Any], list[Any] | str]]:
    """``prompt`` as (where, message, content) for each message, its shape checked."""
    prompt = options.get("prompt")
    if not isinstance(prompt, list) or not prompt:
        raise BadRequest("prompt must be a non-empty array of messages", param="prompt")
    out: list[tuple[str, dict[str, Any], list[Any] | str]] = []
    for index, message in enumerate(prompt):
        where = f"prompt[{index}]"
        if not isinstance(message, dict):
            raise BadRequest(f"{where} must be an object", param=where)
        content = message.get("content")
        if message.get("role") == "system":
            if not isinstance(content, str):
                raise BadRequest(f"{where}.content must be a string", param=f"{where}.content")
        elif not isinstance(content, list) or not all(isinstance(p, dict) for p in content):
            raise BadRequest(f"{where}.content must be an array of parts", param=f"{where}.content")
        out.append((where, message, content))
    return out


def unknown_role(message: dict[str, Any], where: str) -> BadRequest:
    return BadRequest(
        f"{where}.role {message.get('role')!r} is not system, user, assistant or tool",
        param=f"{where}.role",
    )


def cannot_send(kind: object, where: str, wire: str) -> BadRequest:
    return BadRequest(
        f"{where}: a {kind!r} part cannot be sent to a model of a provider on the {wire} wire",
        param=f"{where}.type",
    )


@dataclass(frozen=True, slots=True)
class FileData:
    """A file part's data: either a URL the provider fetches itself or base64 data."""

    media_type: str
    url: str | None = None
    base64: str | None = None

    @property
    def data_url(self) -> str:
        return self.url or f"data:{self.media_type};base64,{self.base64}"


def file_data(part: dict[str, Any], where: str) -> FileData:
    """A ``file`` part's data. The gateway provider sends bytes as a ``data:`` URL and URLs as
    strings; any other string is base64, as ``LanguageModelV3DataContent`` says."""
    data, media_type = part.get("data"), part.get("mediaType")
    if not isinstance(media_type, str) or not media_type:
        raise BadRequest(f"{where}.mediaType must be a string", param=f"{where}.mediaType")
    if not isinstance(data, str) or not data:
        raise BadRequest(f"{where}.data must be a string", param=f"{where}.data")
    if data.startswith("data:"):
        header, comma, encoded = data[5:].partition(",")
        declared, _, encoding = header.partition(";")
        if not comma or encoding != "base64":
            raise BadRequest(
                f"{where}.data: a data URL must be base64 ('data:<type>;base64,...')",
                param=f"{where}.data",
            )
        # The URL's type is the exact one when the part names a wildcard (image/*).
        exact = declared if "*" in media_type and declared else media_type
        return FileData(exact, base64=encoded)
    if "://" in data:
        return FileData(media_type, url=data)
    return FileData(media_type, base64=data)


def tool_output_text(output: object, where: str) -> tuple[str, bool]:
    """A tool result's output as text, and whether it reports an error. ``content`` outputs
    keep only their text here; a wire that takes images reads them itself."""
    if not isinstance(output, dict):
        raise BadRequest(f"{where}.output must be an object", param=f"{where}.output")
    kind, value = output.get("type"), output.get("value")
    if kind in ("text", "error-text") and isinstance(value, str):
        return value, kind == "error-text"
    if kind in ("json", "error-json"):
        return dumps(value).decode(), kind == "error-json"
    if kind == "execution-denied":
        reason = output.get("reason")
        return (reason if isinstance(reason, str) and reason else "Tool execution denied."), True
    if kind == "content" and isinstance(value, list):
        texts = [p["text"] for p in value if isinstance(p, dict) and isinstance(p.get("text"), str)]
        return "\n\n".join(texts), False
    raise BadRequest(
        f"{where}.output.type {kind!r} is not text, json, error-text, error-json, "
        "execution-denied or content",
        param=f"{where}.output",
    )


def tool_input(part: dict[str, Any]) -> Any:
    """A prompt's tool call input: a JSON value, sent on as it is (as the SDK's own
    providers do)."""
    value = part.get("input")
    return {} if value is None else value


def function_tools(options: dict[str, Any]) -> list[dict[str, Any]]:
    """The ``function`` tools of the call; provider tools (a provider's or the Vercel
    gateway's own, run on their side) are refused."""
    tools = options.get("tools")
    if tools is None:
        return []
    if not isinstance(tools, list):
        raise BadRequest("tools must be an array", param="tools")
    for index, tool in enumerate(tools):
        where = f"tools[{index}]"
        if not isinstance(tool, dict) or tool.get("type") != "function":
            raise BadRequest(
                f"{where}: only function tools are supported (not provider tools)", param=where
            )
        if not isinstance(tool.get("name"), str) or not tool["name"]:
            raise BadRequest(f"{where}.name must be a string", param=f"{where}.name")
    return tools


def tool_choice(options: dict[str, Any]) -> tuple[str, str | None] | None:
    """``toolChoice`` as (type, tool name): auto, none, required, or tool and its name."""
    choice = options.get("toolChoice")
    if choice is None:
        return None
    kind = choice.get("type") if isinstance(choice, dict) else None
    if kind in ("auto", "none", "required"):
        return str(kind), None
    if kind == "tool" and isinstance(choice, dict) and isinstance(choice.get("toolName"), str):
        return "tool", choice["toolName"]
    raise BadRequest(
        "toolChoice must be auto, none, required or {type: tool, toolName}", param="toolChoice"
    )


def json_format(options: dict[str, Any]) -> dict[str, Any] | None:
    """``responseFormat`` when it asks for JSON (with its optional schema, name and
    description); None for text."""
    found = options.get("responseFormat")
    if found is None:
        return None
    kind = found.get("type") if isinstance(found, dict) else None
    if kind == "text":
        return None
    if kind != "json" or not isinstance(found, dict):
        raise BadRequest("responseFormat.type must be text or json", param="responseFormat")
    return found


def error_part(message: str, kind: str, code: str | None = None) -> dict[str, Any]:
    """A stream's ``error`` part: the SDK hands ``error`` to ``onError`` as it is."""
    return {"type": "error", "error": {"message": message, "type": kind, "code": code}}


class LanguageModelErrors:
    """The gateway's own errors in the protocol's format, for the dialects of both wires
    (mixed in before the provider's dialect, which still reads the provider's answers)."""

    def error_body(self, status: int, message: str, code: str) -> bytes:
        return language_model_error_body(status, message, code=code)

    def stream_error(self, message: str, code: str) -> bytes:
        return data_event(error_part(message, "internal_server_error", code))


PROVIDER_REFUSED_KEY: Final = frozenset({401, 403})


def answer_error(status: int, payload: dict[str, Any]) -> bytes:
    """A provider's error (either wire's format, or one the gateway wrote in this one) in
    the protocol's format. A provider refusing its key is a failed dependency: the SDK
    would report ``authentication_error`` as the caller's own gateway key being wrong."""
    error = payload.get("error")
    error = error if isinstance(error, dict) else {}
    message = error.get("message")
    code = error.get("code") or error.get("type")
    kind = "failed_dependency" if status in PROVIDER_REFUSED_KEY else None
    return language_model_error_body(
        status,
        message if isinstance(message, str) and message else f"the provider answered {status}",
        type_=kind,
        code=code if isinstance(code, str) else None,
    )
