"""OpenAI Responses, ``POST /v1/responses``: ``response`` objects and the streamed event
sequence (``response.created`` ... ``response.completed``), each event with a
``sequence_number``.

A reply cut by ``max_output_tokens`` is ``status: "incomplete"`` with
``incomplete_details.reason: "max_output_tokens"``, and its stream ends with
``response.incomplete`` instead of ``response.completed``, as the API does; both carry usage.
Tools are echoed in the response but never called.
"""

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
)
from meterline.simulator.usage import (
    Plan,
    Prompt,
    compact_json,
    measure,
    openai_cache_writes,
    plan,
    split_text,
)


def usage_body(result: Plan) -> dict[str, Any]:
    return {
        "input_tokens": result.prompt_tokens,
        "input_tokens_details": {
            "cached_tokens": result.cache_read_tokens,
            "cache_write_tokens": result.cache_write_tokens,
        },
        "output_tokens": result.output_tokens,
        "output_tokens_details": {"reasoning_tokens": result.reasoning_tokens},
        "total_tokens": result.prompt_tokens + result.output_tokens,
    }


def _prompt(body: dict[str, Any]) -> Prompt | None:
    """The prompt size, or None when ``input`` is neither a string nor a list."""
    items = body.get("input", "")
    if isinstance(items, str):
        chars, images, messages = len(items), 0, 1
    elif isinstance(items, list):
        chars, images = measure(items)
        messages = len(items)
    else:
        return None
    instructions = body.get("instructions")
    if isinstance(instructions, str) and instructions:
        chars += len(instructions)
        messages += 1
    tools = body.get("tools")
    if tools:
        chars += len(compact_json(tools))
    return Prompt(chars=chars, messages=messages, images=images)


class _Shell:
    """The parts of a ``response`` object that do not change while it is generated."""

    def __init__(self, body: dict[str, Any], model: str) -> None:
        self.id = new_id("resp_")
        self.message_id = new_id("msg_")
        self.created_at = int(time.time())
        self.body = body
        self.model = model

    def response(
        self, status: str, output: list[dict[str, Any]], usage: dict[str, Any] | None
    ) -> dict[str, Any]:
        body = self.body
        return {
            "id": self.id,
            "object": "response",
            "created_at": self.created_at,
            "status": status,
            "background": False,
            "completed_at": int(time.time()) if status == "completed" else None,
            "error": None,
            "incomplete_details": (
                {"reason": "max_output_tokens"} if status == "incomplete" else None
            ),
            "instructions": body.get("instructions"),
            "max_output_tokens": body.get("max_output_tokens"),
            "model": self.model,
            "output": output,
            "parallel_tool_calls": body.get("parallel_tool_calls", True),
            "previous_response_id": body.get("previous_response_id"),
            "prompt_cache_key": body.get("prompt_cache_key"),
            "reasoning": body.get("reasoning") or {"effort": None, "summary": None},
            "service_tier": "default",
            "store": body.get("store", True),
            "temperature": body.get("temperature", 1.0),
            "text": body.get("text") or {"format": {"type": "text"}},
            "tool_choice": body.get("tool_choice", "auto"),
            "tools": body.get("tools") or [],
            "top_p": body.get("top_p", 1.0),
            "truncation": body.get("truncation", "disabled"),
            "usage": usage,
            "user": body.get("user"),
            "metadata": body.get("metadata") or {},
        }

    def message(self, status: str, content: list[dict[str, Any]]) -> dict[str, Any]:
        return {
            "id": self.message_id,
            "type": "message",
            "status": status,
            "role": "assistant",
            "content": content,
        }


def _text_part(text: str) -> dict[str, Any]:
    return {"type": "output_text", "text": text, "annotations": [], "logprobs": []}


async def responses(request: Request) -> Response:
    call = await begin(request, openai_error)
    if isinstance(call, Response):
        return call
    body, headers = call.body, call.headers
    model = body.get("model")
    if not isinstance(model, str) or not model:
        return openai_error(400, "You must provide a model parameter.", headers)
    prompt = _prompt(body)
    if prompt is None:
        return openai_error(400, "'input' must be a string or an array of items.", headers)
    raw_cap = body.get("max_output_tokens")
    cap = positive_int(raw_cap)
    if raw_cap is not None and cap is None:
        return openai_error(400, "max_output_tokens must be a positive integer.", headers)

    result = plan(
        body,
        prompt,
        model=model,
        max_tokens=cap,
        cache_hint="prompt_cache_key" in body,
        cache_write_ttls=openai_cache_writes(model),
    )
    shell = _Shell(body, model)
    if body.get("stream") is True:
        return _stream(call, shell, result)
    status = "incomplete" if result.truncated else "completed"
    output = [shell.message(status, [_text_part(result.text)])]
    payload = shell.response(status, output, usage_body(result))
    return Response(dumps(payload).encode(), headers=headers, media_type="application/json")


def _stream(call: Call, shell: _Shell, result: Plan) -> Response:
    status = "incomplete" if result.truncated else "completed"
    events: list[str] = []

    def emit(kind: str, **fields: Any) -> None:
        payload = {"type": kind, "sequence_number": len(events), **fields}
        events.append(f"event: {kind}\ndata: {dumps(payload)}\n\n")

    where = {"item_id": shell.message_id, "output_index": 0, "content_index": 0}
    emit("response.created", response=shell.response("in_progress", [], None))
    emit("response.in_progress", response=shell.response("in_progress", [], None))
    emit("response.output_item.added", output_index=0, item=shell.message("in_progress", []))
    emit("response.content_part.added", **where, part=_text_part(""))
    for piece in split_text(result.text, call.controls.chunks):
        emit("response.output_text.delta", **where, delta=piece, logprobs=[])
    emit("response.output_text.done", **where, text=result.text, logprobs=[])
    emit("response.content_part.done", **where, part=_text_part(result.text))
    item = shell.message(status, [_text_part(result.text)])
    emit("response.output_item.done", output_index=0, item=item)
    emit(f"response.{status}", response=shell.response(status, [item], usage_body(result)))
    failure = {
        "type": "error",
        "code": "server_error",
        "message": FAILURE_MESSAGE,
        "param": None,
        "sequence_number": min(len(events), call.controls.fail_after or 0),
    }
    return sse_response(
        events, call.controls, call.headers, f"event: error\ndata: {dumps(failure)}\n\n"
    )
