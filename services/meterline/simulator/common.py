"""Plumbing shared by the wire formats: fault headers, credentials, ids, JSON and SSE bodies."""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from starlette.datastructures import Headers
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

DEFAULT_CHUNKS = 8
MAX_CHUNKS = 1_000_000
MAX_DELAY_MS = 600_000


@dataclass(frozen=True, slots=True)
class Controls:
    """The ``x-simulator-*`` request headers, parsed once per request."""

    status: int | None
    delay_s: float
    chunk_delay_s: float
    chunks: int
    fail_after: int | None
    """End a stream with the surface's error event after this many events."""


def _int_header(headers: Headers, name: str, default: int, low: int, high: int) -> int:
    raw = headers.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        return default
    return min(max(value, low), high)


def read_controls(headers: Headers) -> Controls:
    status = _int_header(headers, "x-simulator-status", 0, 0, 599)
    fail_after = _int_header(headers, "x-simulator-fail-after", -1, -1, MAX_CHUNKS)
    return Controls(
        status=status if status >= 400 else None,
        delay_s=_int_header(headers, "x-simulator-delay-ms", 0, 0, MAX_DELAY_MS) / 1000,
        chunk_delay_s=_int_header(headers, "x-simulator-chunk-delay-ms", 0, 0, MAX_DELAY_MS) / 1000,
        chunks=_int_header(headers, "x-simulator-chunks", DEFAULT_CHUNKS, 1, MAX_CHUNKS),
        fail_after=fail_after if fail_after >= 0 else None,
    )


def has_credentials(headers: Headers) -> bool:
    """Any non-empty bearer token or ``x-api-key``: the simulator checks presence, not value."""
    authorization = headers.get("authorization", "")
    if authorization[:7].lower() == "bearer " and authorization[7:].strip():
        return True
    return bool(headers.get("x-api-key", "").strip())


def new_id(prefix: str) -> str:
    return prefix + os.urandom(12).hex()


def dumps(value: object) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


async def read_json_object(request: Request) -> dict[str, Any] | None:
    """The body as a JSON object, or None when it is not one."""
    try:
        body = json.loads(await request.body())
    except ValueError:
        return None
    return body if isinstance(body, dict) else None


def json_response(value: object, status: int, headers: Mapping[str, str]) -> Response:
    return Response(
        dumps(value).encode(), status_code=status, headers=headers, media_type="application/json"
    )


FAILURE_MESSAGE = "Simulated failure mid-stream (x-simulator-fail-after)."


def sse_response(
    events: list[str], controls: Controls, headers: Mapping[str, str], error_event: str
) -> StreamingResponse:
    """Send prebuilt SSE events, one write each, sleeping ``chunk_delay_s`` between them;
    with ``fail_after``, only that many of them and then ``error_event``."""
    if controls.fail_after is not None:
        events = [*events[: controls.fail_after], error_event]
    chunk_delay_s = controls.chunk_delay_s

    async def body() -> AsyncIterator[bytes]:
        if not chunk_delay_s:
            # Without pacing, one write per event only costs time: under benchmark load the
            # stream is sent whole (still chunked SSE; the reader sees the same bytes).
            yield "".join(events).encode()
            return
        for index, event in enumerate(events):
            if chunk_delay_s and index:
                await asyncio.sleep(chunk_delay_s)
            yield event.encode()

    return StreamingResponse(
        body(),
        media_type="text/event-stream",
        headers={**headers, "cache-control": "no-cache"},
    )


def tool_arguments(schema: object) -> dict[str, Any]:
    """Plausible arguments for a JSON-schema ``object``: one fixed value per property."""
    properties = schema.get("properties") if isinstance(schema, dict) else None
    if not isinstance(properties, dict):
        return {}
    samples: dict[str, Any] = {
        "string": "simulated",
        "integer": 1,
        "number": 1.0,
        "boolean": True,
        "array": [],
        "object": {},
    }
    arguments: dict[str, Any] = {}
    for name, spec in properties.items():
        kind = spec.get("type") if isinstance(spec, dict) else None
        arguments[name] = samples.get(kind) if isinstance(kind, str) else None
    return arguments


def positive_int(value: object) -> int | None:
    """A max-token field: a positive int, else None (bool is an int in Python; not here)."""
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        return value
    return None


ErrorResponder = Callable[[int, str, Mapping[str, str]], Response]

_OPENAI_ERRORS: dict[int, tuple[str, str | None]] = {
    400: ("invalid_request_error", None),
    401: ("invalid_request_error", "invalid_api_key"),
    403: ("invalid_request_error", "unsupported_country_region_territory"),
    404: ("invalid_request_error", "model_not_found"),
    429: ("requests", "rate_limit_exceeded"),
    500: ("server_error", None),
    503: ("server_error", "service_unavailable"),
}
_ANTHROPIC_ERRORS: dict[int, str] = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    503: "overloaded_error",
    529: "overloaded_error",
}


def openai_error(status: int, message: str, headers: Mapping[str, str]) -> Response:
    kind, code = _OPENAI_ERRORS.get(
        status, ("server_error" if status >= 500 else "invalid_request_error", None)
    )
    body = {"error": {"message": message, "type": kind, "param": None, "code": code}}
    return json_response(body, status, headers)


def anthropic_error(status: int, message: str, headers: Mapping[str, str]) -> Response:
    kind = _ANTHROPIC_ERRORS.get(status, "api_error" if status >= 500 else "invalid_request_error")
    body = {
        "type": "error",
        "error": {"type": kind, "message": message},
        "request_id": headers.get("request-id"),
    }
    return json_response(body, status, headers)


@dataclass(frozen=True, slots=True)
class Call:
    """A request that passed the common checks."""

    body: dict[str, Any]
    controls: Controls
    headers: dict[str, str]  # response headers every reply to this request carries


async def begin(request: Request, error: ErrorResponder) -> Call | Response:
    """The steps every generating endpoint shares: delay, credentials, faults, JSON body.

    The delay comes first so that a slow error (a 503 after 2 s) can be simulated too."""
    controls = read_controls(request.headers)
    request_id = new_id("req_")
    headers = {
        "x-simulator-request-id": request_id,
        "x-request-id": request_id,  # what the OpenAI SDK exposes as _request_id
        "request-id": request_id,  # what the Anthropic SDK exposes as _request_id
    }
    if controls.delay_s:
        await asyncio.sleep(controls.delay_s)
    if not has_credentials(request.headers):
        return error(401, "No API key provided (Authorization: Bearer or x-api-key).", headers)
    if controls.status is not None:
        return error(controls.status, f"Simulated {controls.status} (x-simulator-status).", headers)
    body = await read_json_object(request)
    if body is None:
        return error(400, "The request body is not a JSON object.", headers)
    return Call(body=body, controls=controls, headers=headers)
