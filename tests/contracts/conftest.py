"""What the contract tests share: a valid usage event, and the way to wait for a real
implementation (Kafka, the engine) to catch up without sleeping blindly."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from meterline.common.events import UsageEvent
from tests.support import events

T = TypeVar("T")


def usage_event(**overrides: Any) -> UsageEvent:
    """An event of a model genai-prices knows, so the real price source prices it too."""
    values: dict[str, Any] = {"model_requested": "openai/gpt-4o-mini", "model": "gpt-4o-mini"}
    return events.usage_event(**(values | overrides))


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
