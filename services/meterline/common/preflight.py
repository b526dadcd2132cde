"""What a command checks before it opens the warehouse, so that the common ways of failing
to start are said in one line: another process holding the embedded engine's directory, a
ClickHouse server that does not answer."""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
from pathlib import Path
from urllib.parse import urlparse, urlunparse


class StartupFailure(RuntimeError):
    """A failure at start, said in one line (exit status 1)."""


def redact_url(url: str) -> str:
    """``url`` with its password masked: safe for a log line or an error."""
    parsed = urlparse(url)
    if parsed.password is None:
        return url
    host = parsed.hostname or ""
    if parsed.port is not None:
        host = f"{host}:{parsed.port}"
    return urlunparse(parsed._replace(netloc=f"{parsed.username or ''}:***@{host}"))


def chdb_directory(url: str) -> Path | None:
    """The embedded engine's directory for a ``chdb://`` URL; None for a server."""
    parsed = urlparse(url)
    if parsed.scheme != "chdb":
        return None
    return Path(parsed.netloc + parsed.path)


def chdb_holder(directory: Path) -> str | None:
    """The process that holds ``directory`` open as an embedded engine (its pid, as the
    engine recorded it), or None when it is free.

    The engine takes an exclusive ``flock`` on the ``status`` file of its directory for as
    long as it runs, and writes its pid there; a second engine on the same directory fails
    with an unhelpful BAD_ARGUMENTS. Only meaningful before this process opens the engine
    itself."""
    status = directory / "status"
    try:
        file = status.open("rb")
    except FileNotFoundError:
        return None
    with file:
        try:
            fcntl.flock(file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as error:
            if error.errno not in (errno.EWOULDBLOCK, errno.EAGAIN):
                raise
            first = file.readline().decode(errors="replace").strip()
            return first.removeprefix("PID:").strip() or "unknown"
        with contextlib.suppress(OSError):
            fcntl.flock(file, fcntl.LOCK_UN)
    return None


def ensure_chdb_free(url: str) -> None:
    """Fail in one line if another process runs the embedded engine on ``url``'s
    directory."""
    directory = chdb_directory(url)
    if directory is None:
        return
    holder = chdb_holder(directory)
    # This process's own engine (open already, as in one that runs several commands) is
    # the one the client will share, not a competitor.
    if holder is not None and holder != str(os.getpid()):
        raise StartupFailure(
            f"the chDB directory {directory} is in use by another process (pid {holder}); "
            "stop it, or point METERLINE_DATA_DIR or CLICKHOUSE_URL elsewhere"
        )


def warehouse_failure(url: str, error: Exception) -> StartupFailure:
    """A ClickHouse client's failure to connect, in one line naming the URL (without its
    password)."""
    reason = _root_cause(error)
    return StartupFailure(f"cannot reach ClickHouse at {redact_url(url)}: {reason}")


def _root_cause(error: BaseException) -> str:
    """The innermost cause's message, shortened: urllib3 nests the reason three deep."""
    while error.__cause__ is not None:
        error = error.__cause__
    text = str(error)
    for marker in ("Failed to establish a new connection: ", "Caused by "):
        if marker in text:
            text = text.split(marker, 1)[1]
    text = text.split("\n", 1)[0].strip().rstrip(")").strip("'\"")
    return text or type(error).__name__
