"""What the contract tests share: a valid usage event, and the way to wait for a real
implementation (Kafka, the engine) to catch up without sleeping blindly."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any, TypeVar

from meterline.common.events import UsageEvent

T = TypeVar("T")


def usage_event(**overrides: Any) -> UsageEvent:
    values: dict[str, Any] = {
        "event_id": UsageEvent.new_id(),
        "team_id": "acme",
        "api_key_name": "prod",
        "api_surface": "chat_completions",
        "started_at": datetime(2026, 3, 2, 9, tzinfo=UTC),
        "duration_ms": 100,
        "model_requested": "openai/gpt-4o-mini",
        "model": "gpt-4o-mini",
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


async def gather_until(
    take: Callable[[], Awaitable[list[T]]], count: int, seconds: float = 30
) -> list[T]:
    """Call ``take`` until ``count`` items came or ``seconds`` passed; all that came."""
    got: list[T] = []
    deadline = time.monotonic() + seconds
    while len(got) < count and time.monotonic() < deadline:
        got += await take()
        await asyncio.sleep(0)
    return got
