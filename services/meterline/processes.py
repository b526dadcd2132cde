"""Start Meterline services as child processes and wait for them: used by the demo, the
end-to-end tests and the benchmarks, which all run each service the way an operator would."""

from __future__ import annotations

import contextlib
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextlib.contextmanager
def meterline_process(
    args: list[str], env: dict[str, str], log: Path, stop_timeout: float = 30
) -> Iterator[subprocess.Popen[bytes]]:
    """``meterline ARGS`` with its output in ``log``; SIGTERM (a graceful stop) on exit."""
    with log.open("ab") as out:
        proc = subprocess.Popen(  # noqa: S603 - our own console script
            [sys.executable, "-m", "meterline.cli", *args], env=env, stdout=out, stderr=out
        )
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(stop_timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def wait_http(url: str, proc: subprocess.Popen[bytes], log: Path, seconds: float = 60) -> None:
    """Wait until ``url`` answers below 500; fail with the log's tail if the process dies."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{url}: process exited early:\n{log.read_text()[-4000:]}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(url, timeout=1).status_code < 500:
                return
        time.sleep(0.1)
    raise RuntimeError(f"{url} did not come up in {seconds}s:\n{log.read_text()[-4000:]}")
