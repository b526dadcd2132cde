"""``python -m tests.faults.crashing COMMAND ...``: ``meterline COMMAND ...`` that kills
itself with SIGKILL at a chosen point of the consumer pipeline, for the crash tests.

``METERLINE_TEST_CRASH_AT`` picks the point, ``METERLINE_TEST_CRASH_AFTER`` (default 1) how
many times it is passed before the crash:

- ``before_batch_log``: a batch is cut, its range not yet recorded (nothing of it written).
- ``after_batch_log``: its range is recorded, the insert has not started.
- ``after_insert``: ClickHouse accepted the batch, the offsets are not committed.
- ``after_commit``: the offsets are committed.

SIGKILL, not an exception: nothing in the process gets to clean up, as in a real crash."""

from __future__ import annotations

import functools
import os
import signal
import sys
from collections.abc import Awaitable, Callable
from typing import Any

from meterline.consumer.batch_log import ClickHouseBatchLog
from meterline.consumer.engine_write import EngineWriter
from meterline.consumer.source import KafkaSource

POINTS = ("before_batch_log", "after_batch_log", "after_insert", "after_commit")


def _crash() -> None:
    sys.stderr.write(f"crashing at {os.environ['METERLINE_TEST_CRASH_AT']}\n")
    sys.stderr.flush()
    os.kill(os.getpid(), signal.SIGKILL)


def _wrap(
    owner: type, name: str, *, before: bool, counts: Callable[[tuple[Any, ...]], bool]
) -> None:
    original: Callable[..., Awaitable[Any]] = getattr(owner, name)
    remaining = int(os.environ.get("METERLINE_TEST_CRASH_AFTER", "1"))

    @functools.wraps(original)
    async def wrapper(*args: Any, **kwargs: Any) -> Any:
        nonlocal remaining
        counted = counts(args)
        if counted and before:
            remaining -= 1
            if remaining <= 0:
                _crash()
        result = await original(*args, **kwargs)
        if counted and not before:
            remaining -= 1
            if remaining <= 0:
                _crash()
        return result

    setattr(owner, name, wrapper)


def install(point: str) -> None:
    every: Callable[[tuple[Any, ...]], bool] = lambda args: True  # noqa: E731
    if point == "before_batch_log":
        _wrap(ClickHouseBatchLog, "record", before=True, counts=every)
    elif point == "after_batch_log":
        _wrap(ClickHouseBatchLog, "record", before=False, counts=every)
    elif point == "after_insert":
        # An empty batch (all repeats or dead letters) is not inserted at all.
        _wrap(EngineWriter, "write", before=False, counts=lambda args: bool(len(args[1])))
    elif point == "after_commit":
        _wrap(KafkaSource, "commit", before=False, counts=every)
    else:
        raise SystemExit(f"METERLINE_TEST_CRASH_AT must be one of {', '.join(POINTS)}")


def main() -> int:
    point = os.environ.get("METERLINE_TEST_CRASH_AT")
    if point:
        install(point)
    from meterline.cli import main as meterline

    return meterline(sys.argv[1:])


if __name__ == "__main__":
    sys.exit(main())
