"""OpenAI Chat Completions, ``POST /v1/chat/completions``: ``chat.completion`` objects and
``chat.completion.chunk`` SSE streams, with usage as the API reports it (cached tokens inside
``prompt_tokens``, reasoning tokens inside ``completion_tokens``)."""

from __future__ import annotations

import time
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from meterline.simulator.common import (
    FAILURE_MESSAGE,
    Call,
    begin,
    dumps,
    new_id,
    openai_error,
    positive_int,
    sse_response,
    tool_arguments,
)
from meterline.simulator.usage import (
    Plan,
    Prompt,
    audio_parts,
    compact_json,
    measure,
    openai_cache_writes,
    plain_text,
    plan,
    split_text,
)

TOOL_TRIGGER = "call a tool"


def usage_body(result: Plan) -> dict[str, Any]:
    prompt_details: dict[str, Any] = {
        "cached_tokens": result.cache_read_tokens,
        "audio_tokens": result.input_audio_tokens,
    }
    if result.cache_write_tokens:
        prompt_details["cache_write_tokens"] = result.cache_write_tokens
    return {
        "prompt_tokens": result.prompt_tokens,
        "completion_tokens": result.output_tokens,
        "total_tokens": result.prompt_tokens + result.output_tokens,
        "prompt_tokens_details": prompt_details,
        "completion_tokens_details": {
            "reasoning_tokens": result.reasoning_tokens,
            "audio_tokens": result.output_audio_tokens,
            "accepted_prediction_tokens": 0,
            "rejected_prediction_tokens": 0,
        },
    }


def _stop_sequences(stop: object) -> list[str]:
    if isinstance(stop, str):
        return [stop]
    if isinstance(stop, list):
        return [item for item in stop if isinstance(item, str)]
    return []


def _tool_call(messages: list[Any], tools: object) -> dict[str, Any] | None:
    """A call of the first function tool, when the last user message asks for one."""
    if not isinstance(tools, list):
        return None
    last_user = next(
        (m for m in reversed(messages) if isinstance(m, dict) and m.get("role") == "user"), None
    )
    if last_user is None or TOOL_TRIGGER not in plain_text(last_user.get("content")).lower():
        return None
    for tool in tools:
        function = tool.get("function") if isinstance(tool, dict) else None
        if isinstance(function, dict) and isinstance(function.get("name"), str):
            return {
                "id": new_id("call_"),
                "type": "function",
                "function": {
                    "name": function["name"],
                    "arguments": compact_json(tool_arguments(function.get("parameters"))),
                },
            }
    return None


async def chat_completions(request: Request) -> Response:
    call = await begin(request, openai_error)
    if isinstance(call, Response):
        return call
    body, headers = call.body, call.headers
    model, messages = body.get("model"), body.get("messages")
    if not isinstance(model, str) or not model:
        return openai_error(400, "You must provide a model parameter.", headers)
    if not isinstance(messages, list) or not messages:
        return openai_error(400, "'messages' must be a non-empty array.", headers)
    raw_cap = body.get("max_completion_tokens", body.get("max_tokens"))
    cap = positive_int(raw_cap)
    if raw_cap is not None and cap is None:
        return openai_error(400, "max_completion_tokens must be a positive integer.", headers)

    chars, images = measure(messages)
    tools = body.get("tools")
    if tools:
        chars += len(compact_json(tools))
    result = plan(
        body,
        Prompt(chars=chars, messages=len(messages), images=images, audio=audio_parts(messages)),
        model=model,
        max_tokens=cap,
        cache_hint="prompt_cache_key" in body,
        cache_write_ttls=openai_cache_writes(model),
        stop_sequences=_stop_sequences(body.get("stop")),
        audio_output=isinstance(body.get("modalities"), list) and "audio" in body["modalities"],
    )
    tool_call = _tool_call(messages, tools)
    if tool_call is not None:
        finish_reason = "tool_calls"
    elif result.truncated:
        finish_reason = "length"
    else:
        finish_reason = "stop"
    if body.get("stream") is True:
        return _stream(call, model, result, tool_call, finish_reason)

    message: dict[str, Any] = {
        "role": "assistant",
        "content": None if tool_call else result.text,
        "refusal": None,
        "annotations": [],
    }
    if tool_call is not None:
        message["tool_calls"] = [tool_call]
    completion = {
        "id": new_id("chatcmpl-"),
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [
            {"index": 0, "message": message, "logprobs": None, "finish_reason": finish_reason}
        ],
        "usage": usage_body(result),
        "service_tier": "default",
        "system_fingerprint": "fp_simulator",
    }
    return Response(dumps(completion).encode(), headers=headers, media_type="application/json")


def _stream(
    call: Call, model: str, result: Plan, tool_call: dict[str, Any] | None, finish_reason: str
) -> Response:
    options = call.body.get("stream_options")
    include_usage = isinstance(options, dict) and options.get("include_usage") is True
    # Chunks differ only in their choice, so the envelope is formatted once; with
    # include_usage every chunk carries "usage": null until the last one, as the API does.
    head = (
        f'data: {{"id":"{new_id("chatcmpl-")}","object":"chat.completion.chunk",'
        f'"created":{int(time.time())},"model":{dumps(model)},"service_tier":"default",'
        f'"system_fingerprint":"fp_simulator","choices":['
    )
    tail = ("]," + '"usage":null}\n\n') if include_usage else "]}\n\n"

    def chunk(delta: str, finish: str = "null") -> str:
        return f'{head}{{"index":0,"delta":{delta},"logprobs":null,"finish_reason":{finish}}}{tail}'

    if tool_call is None:
        events = [chunk('{"role":"assistant","content":"","refusal":null}')]
        events.extend(
            chunk(f'{{"content":{dumps(piece)}}}')
            for piece in split_text(result.text, call.controls.chunks)
        )
    else:
        function = tool_call["function"]
        opening = {
            "index": 0,
            "id": tool_call["id"],
            "type": "function",
            "function": {"name": function["name"], "arguments": ""},
        }
        arguments = {"index": 0, "function": {"arguments": function["arguments"]}}
        events = [
            chunk('{"role":"assistant","content":null,"refusal":null}'),
            chunk(dumps({"tool_calls": [opening]})),
            chunk(dumps({"tool_calls": [arguments]})),
        ]
    events.append(chunk("{}", f'"{finish_reason}"'))
    if include_usage:
        events.append(f'{head}],"usage":{dumps(usage_body(result))}}}\n\n')
    events.append("data: [DONE]\n\n")
    failure = {
        "error": {"message": FAILURE_MESSAGE, "type": "server_error", "param": None, "code": None}
    }
    return sse_response(events, call.controls, call.headers, f"data: {dumps(failure)}\n\n")
