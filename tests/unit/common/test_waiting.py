"""A loop stopped by cancelling its task stops, also when the cancel meets the event it
waits for in the same loop iteration (on Python 3.11 ``asyncio.wait_for`` loses that cancel
and the loop runs on)."""

from __future__ import annotations

import asyncio

from meterline.common.waiting import wait_event


async def test_wait_event_says_whether_the_event_was_set() -> None:
    event = asyncio.Event()
    assert await wait_event(event, 0.01) is False
    event.set()
    assert await wait_event(event, 10) is True


async def test_a_cancel_arriving_with_the_event_stops_the_loop() -> None:
    event = asyncio.Event()
    rounds = 0

    async def poll() -> None:
        nonlocal rounds
        while True:
            rounds += 1
            event.clear()
            await wait_event(event, 10)

    for _ in range(50):
        task = asyncio.create_task(poll())
        await asyncio.sleep(0)  # the task now waits on the event
        event.set()  # its waiter wakes in the next iteration ...
        task.cancel()  # ... together with the cancel
        done, _ = await asyncio.wait([task], timeout=5)
        assert task in done and task.cancelled()
    assert rounds == 50
