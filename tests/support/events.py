"""A valid usage event for tests, every field given; a test overrides what it is about."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

from meterline.common.events import UsageEvent
from meterline.ingress.metering import RequestRecord


def usage_event(**overrides: Any) -> UsageEvent:
    values: dict[str, Any] = {
        "event_id": UsageEvent.new_id(),
        "team_id": "acme",
        "api_key_name": "prod",
        "api_surface": "chat_completions",
        "started_at": datetime(2026, 3, 2, 9, tzinfo=UTC),
        "duration_ms": 100,
        "model_requested": "openai/gpt-x",
        "model": "gpt-x",
        "provider": "openai",
        "credential_type": "system",
        "streamed": False,
        "status": "success",
        "http_status": 200,
        "input_tokens": 100,
        "output_tokens": 10,
    }
    values.update(overrides)
    return UsageEvent(**values)


def million_token_event(**overrides: Any) -> UsageEvent:
    """A million input and output tokens, half the input read from the cache: its costs
    read as the per-million rates themselves."""
    values: dict[str, Any] = {
        "input_tokens": 1_000_000,
        "output_tokens": 1_000_000,
        "cached_input_tokens": 500_000,
    }
    return usage_event(**(values | overrides))


def numbered_event(n: int, team: str = "acme") -> UsageEvent:
    """The ``n``-th of a run of distinct events: its tokens and duration say which."""
    return usage_event(team_id=team, duration_ms=100 + n, input_tokens=100 + n)


def request_record(**overrides: Any) -> RequestRecord:
    """What the gateway knows of a request before the provider answers, as a router builds
    it (``ingress/routers/call.py``)."""
    values: dict[str, Any] = {
        "team_id": "acme",
        "api_key_name": "prod",
        "api_surface": "chat_completions",
        "model_requested": "sim/gpt-4o",
        "model": "gpt-4o",
        "provider": "sim",
        "credential_type": "system",
        "streamed": False,
        "user_id": None,
        "tags": [],
        "started_at": datetime.now(UTC),
        "started": time.perf_counter(),
    }
    values.update(overrides)
    return RequestRecord(**values)
