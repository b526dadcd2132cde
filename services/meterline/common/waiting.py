"""Waiting with a time limit without losing a cancellation.

On Python 3.11 ``asyncio.wait_for`` returns the awaited result when the waiting task is
cancelled in the same loop iteration that the result arrives, and the cancellation is lost
(bpo-42130, python/cpython#86296; fixed in 3.12). A loop that is stopped by cancelling its
task then runs on, and whoever awaits the task waits for ever (seen here: an alert
delivery loop polling every 10 ms went on for an hour after its stop). ``asyncio.timeout``
counts cancellations and re-raises one that is not its own."""

from __future__ import annotations

import asyncio
import contextlib


async def wait_event(event: asyncio.Event, seconds: float) -> bool:
    """Wait until ``event`` is set, at most ``seconds``; whether it is set."""
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(seconds):
            await event.wait()
    return event.is_set()
