"""The provider simulator: a fake upstream LLM provider speaking the real wire formats.

Endpoints:

* ``POST /v1/chat/completions`` - OpenAI Chat Completions (``openai_chat``)
* ``POST /v1/responses`` - OpenAI Responses (``openai_responses``)
* ``POST /v1/messages`` - Anthropic Messages (``anthropic_messages``)
* ``POST /v1/messages/count_tokens`` - Anthropic token counting
* ``GET /v1/models`` - a model list; Anthropic's shape when ``anthropic-version`` is sent
* ``GET /healthz``

Any model name is accepted and echoed. Usage is deterministic; the rules are in ``usage``.

Credentials: any non-empty ``Authorization: Bearer ...`` or ``x-api-key`` is accepted; a
request with neither gets 401 in the surface's error format. Nothing is recorded.

Faults and pacing on demand, by request header:

* ``x-simulator-status: 400|401|403|404|429|500|503|529|...`` - answer with that status, in
  the surface's own error format (OpenAI ``{"error": {"message", "type", "param", "code"}}``,
  Anthropic ``{"type": "error", "error": {"type", "message"}}``).
* ``x-simulator-delay-ms: N`` - wait N ms before the first byte (errors included).
* ``x-simulator-chunk-delay-ms: N`` - wait N ms between the events of a stream, each event
  then being its own write. Without it the whole stream goes out in one write (same bytes,
  much cheaper under benchmark load).
* ``x-simulator-fail-after: N`` - end a stream after N events with the surface's error event
  (Chat Completions ``data: {"error": ...}``, Responses ``event: error``, Anthropic
  ``event: error`` with ``overloaded_error``), as providers do when they fail mid-answer.
* ``x-simulator-chunks: N`` - split a streamed reply's text into N content events (default
  8; thousands are fine, empty deltas fill in when N exceeds the text's length). Usage does
  not change with N.

Every response to the generating endpoints carries ``x-simulator-request-id`` (also as
``x-request-id`` and ``request-id``, where the OpenAI and Anthropic SDKs look for it).
"""

from __future__ import annotations

import time

from fastapi import FastAPI
from starlette.requests import Request
from starlette.responses import Response

from meterline.simulator.anthropic_messages import count_tokens, messages
from meterline.simulator.common import json_response
from meterline.simulator.openai_chat import chat_completions
from meterline.simulator.openai_responses import responses

MODELS = (
    ("gpt-4o", "openai"),
    ("gpt-4o-mini", "openai"),
    ("gpt-4.1-mini", "openai"),
    ("gpt-5-mini", "openai"),
    ("o3-mini", "openai"),
    ("claude-sonnet-4-6", "anthropic"),
    ("claude-haiku-4-5", "anthropic"),
    ("claude-opus-4-6", "anthropic"),
)
_CREATED = 1_700_000_000


async def list_models(request: Request) -> Response:
    if request.headers.get("anthropic-version"):
        data = [
            {
                "type": "model",
                "id": model,
                "display_name": model,
                "created_at": "2025-01-01T00:00:00Z",
            }
            for model, _owner in MODELS
        ]
        page = {
            "data": data,
            "has_more": False,
            "first_id": data[0]["id"],
            "last_id": data[-1]["id"],
        }
        return json_response(page, 200, {})
    listing = {
        "object": "list",
        "data": [
            {"id": model, "object": "model", "created": _CREATED, "owned_by": owner}
            for model, owner in MODELS
        ],
    }
    return json_response(listing, 200, {})


async def healthz(request: Request) -> Response:
    return json_response({"status": "ok", "time": int(time.time())}, 200, {})


def create_app() -> FastAPI:
    # Plain Starlette routes: the handlers parse JSON themselves, which keeps FastAPI's
    # validation and dependency machinery off the hot path.
    app = FastAPI(title="Meterline provider simulator", docs_url=None, redoc_url=None)
    app.add_route("/v1/chat/completions", chat_completions, methods=["POST"])
    app.add_route("/v1/responses", responses, methods=["POST"])
    app.add_route("/v1/messages", messages, methods=["POST"])
    app.add_route("/v1/messages/count_tokens", count_tokens, methods=["POST"])
    app.add_route("/v1/models", list_models, methods=["GET"])
    app.add_route("/healthz", healthz, methods=["GET"])
    return app
