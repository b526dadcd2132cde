"""Anthropic Messages, ``POST /v1/messages``: ``message`` objects and the streamed events
(``message_start`` ... ``message_stop``).

Anthropic's ``input_tokens`` excludes cache reads and writes, which are reported beside it
(``cache_read_input_tokens``, ``cache_creation_input_tokens`` and its 5m/1h split); thinking
tokens are part of ``output_tokens`` and reported in ``output_tokens_details``. A stream
reports the input side in ``message_start`` (with ``output_tokens: 1``) and the final,
cumulative counts in ``message_delta``. Requires the ``anthropic-version`` header and
``max_tokens``; errors use Anthropic's ``{"type": "error", "error": {...}}`` shape.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from meterline.simulator.common import (
    FAILURE_MESSAGE,
    Call,
    anthropic_error,
    begin,
    dumps,
    json_response,
    new_id,
    positive_int,
    sse_response,
    tool_arguments,
)
from meterline.simulator.usage import (
    Plan,
    Prompt,
    compact_json,
    measure,
    plain_text,
    plan,
    split_text,
    web_search_limit,
)

TOOL_TRIGGER = "call a tool"


def usage_body(result: Plan) -> dict[str, Any]:
    usage: dict[str, Any] = {
        "input_tokens": result.uncached_input_tokens,
        "cache_creation_input_tokens": result.cache_write_tokens,
        "cache_read_input_tokens": result.cache_read_tokens,
        "cache_creation": {
            "ephemeral_5m_input_tokens": result.cache_write_5m_tokens,
            "ephemeral_1h_input_tokens": result.cache_write_1h_tokens,
        },
        "output_tokens": result.output_tokens,
        "service_tier": "standard",
    }
    if result.reasoning_tokens:
        # Part of output_tokens, as the API reports it for models that think.
        usage["output_tokens_details"] = {"thinking_tokens": result.reasoning_tokens}
    if result.web_search_requests:
        usage["server_tool_use"] = {
            "web_search_requests": result.web_search_requests,
            "web_fetch_requests": 0,
        }
    return usage


def _delta_usage(result: Plan) -> dict[str, Any]:
    """``message_delta`` usage: cumulative counts, the input side repeated as the API does."""
    usage = usage_body(result)
    del usage["cache_creation"], usage["service_tier"]
    return usage


def _cache_breakpoints(body: dict[str, Any]) -> tuple[int, int]:
    """(5-minute, 1-hour) ``cache_control`` breakpoints anywhere in the request."""
    blocks: list[object] = [body]  # top-level cache_control: automatic caching
    for field in (body.get("system"), body.get("tools")):
        if isinstance(field, list):
            blocks.extend(field)
    for message in body.get("messages") or []:
        content = message.get("content") if isinstance(message, dict) else None
        if isinstance(content, list):
            blocks.extend(content)
    five_minutes = one_hour = 0
    for block in blocks:
        control = block.get("cache_control") if isinstance(block, dict) else None
        if isinstance(control, dict):
            if control.get("ttl") == "1h":
                one_hour += 1
            else:
                five_minutes += 1
    return five_minutes, one_hour


def _prompt(body: dict[str, Any], messages: list[Any]) -> Prompt:
    chars, images = measure(messages)
    count = len(messages)
    system = body.get("system")
    if system:
        system_chars, system_images = measure(system)
        chars, images, count = chars + system_chars, images + system_images, count + 1
    tools = body.get("tools")
    if tools:
        chars += len(compact_json(tools))
    return Prompt(chars=chars, messages=count, images=images)


async def _messages_call(request: Request) -> tuple[Call, str, list[Any]] | Response:
    """The call, its model and its messages; or Anthropic's answer to a call without them."""
    call = await begin(request, anthropic_error)
    if isinstance(call, Response):
        return call
    body, headers = call.body, call.headers
    if not request.headers.get("anthropic-version"):
        return anthropic_error(400, "anthropic-version: header is required", headers)
    model, history = body.get("model"), body.get("messages")
    if not isinstance(model, str) or not model:
        return anthropic_error(400, "model: Field required", headers)
    if not isinstance(history, list) or not history:
        return anthropic_error(400, "messages: at least one message is required", headers)
    return call, model, history


async def count_tokens(request: Request) -> Response:
    """``POST /v1/messages/count_tokens``: the whole prompt's size, cache reads and writes
    included, as the API counts it."""
    checked = await _messages_call(request)
    if isinstance(checked, Response):
        return checked
    call, _, history = checked
    return json_response({"input_tokens": _prompt(call.body, history).tokens}, 200, call.headers)


def _tool_use(messages: list[Any], tools: object) -> dict[str, Any] | None:
    """A ``tool_use`` block for the first tool, when the last user message asks for one."""
    if not isinstance(tools, list):
        return None
    last_user = next(
        (m for m in reversed(messages) if isinstance(m, dict) and m.get("role") == "user"), None
    )
    if last_user is None or TOOL_TRIGGER not in plain_text(last_user.get("content")).lower():
        return None
    for tool in tools:
        if isinstance(tool, dict) and isinstance(tool.get("name"), str):
            return {
                "type": "tool_use",
                "id": new_id("toolu_"),
                "name": tool["name"],
                "input": tool_arguments(tool.get("input_schema")),
            }
    return None


async def messages(request: Request) -> Response:
    checked = await _messages_call(request)
    if isinstance(checked, Response):
        return checked
    call, model, history = checked
    body, headers = call.body, call.headers
    cap = positive_int(body.get("max_tokens"))
    if cap is None:
        return anthropic_error(400, "max_tokens: Field required (a positive integer)", headers)

    breakpoints = _cache_breakpoints(body)
    stop_sequences = body.get("stop_sequences")
    result = plan(
        body,
        _prompt(body, history),
        model=model,
        max_tokens=cap,
        cache_hint=sum(breakpoints) > 0,
        cache_write_ttls=breakpoints,
        web_searches_allowed=web_search_limit(body.get("tools")),
        stop_sequences=[s for s in stop_sequences if isinstance(s, str)]
        if isinstance(stop_sequences, list)
        else [],
    )
    tool_use = _tool_use(history, body.get("tools"))
    if tool_use is not None:
        stop_reason = "tool_use"
    elif result.stop_sequence is not None:
        stop_reason = "stop_sequence"
    elif result.truncated:
        stop_reason = "max_tokens"
    else:
        stop_reason = "end_turn"
    message_id = new_id("msg_")
    if body.get("stream") is True:
        return _stream(call, message_id, model, result, tool_use, stop_reason)

    content = [tool_use] if tool_use is not None else [{"type": "text", "text": result.text}]
    message = {
        "id": message_id,
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": content,
        "stop_reason": stop_reason,
        "stop_sequence": result.stop_sequence,
        "usage": usage_body(result),
    }
    return Response(dumps(message).encode(), headers=headers, media_type="application/json")


def _stream(
    call: Call,
    message_id: str,
    model: str,
    result: Plan,
    tool_use: dict[str, Any] | None,
    stop_reason: str,
) -> Response:
    events: list[str] = []

    def emit(payload: dict[str, Any]) -> None:
        events.append(f"event: {payload['type']}\ndata: {dumps(payload)}\n\n")

    emit(
        {
            "type": "message_start",
            "message": {
                "id": message_id,
                "type": "message",
                "role": "assistant",
                "model": model,
                "content": [],
                "stop_reason": None,
                "stop_sequence": None,
                "usage": {**usage_body(result), "output_tokens": 1},
            },
        }
    )
    if tool_use is None:
        start_block: dict[str, Any] = {"type": "text", "text": ""}
        deltas = [
            {"type": "text_delta", "text": piece}
            for piece in split_text(result.text, call.controls.chunks)
        ]
    else:
        start_block = {**tool_use, "input": {}}
        deltas = [
            {"type": "input_json_delta", "partial_json": ""},
            {"type": "input_json_delta", "partial_json": compact_json(tool_use["input"])},
        ]
    emit({"type": "content_block_start", "index": 0, "content_block": start_block})
    emit({"type": "ping"})
    for delta in deltas:
        emit({"type": "content_block_delta", "index": 0, "delta": delta})
    emit({"type": "content_block_stop", "index": 0})
    emit(
        {
            "type": "message_delta",
            "delta": {"stop_reason": stop_reason, "stop_sequence": result.stop_sequence},
            "usage": _delta_usage(result),
        }
    )
    emit({"type": "message_stop"})
    failure = {"type": "error", "error": {"type": "overloaded_error", "message": FAILURE_MESSAGE}}
    return sse_response(
        events, call.controls, call.headers, f"event: error\ndata: {dumps(failure)}\n\n"
    )
