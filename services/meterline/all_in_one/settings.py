"""Settings of ``meterline all-in-one`` beyond its three services' own (environment,
prefix ``METERLINE_``)."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field

from meterline.common.settings import CommonSettings


class LocalLogSettings(CommonSettings):
    local_log_dir: Path | None = None
    """Where the embedded default's bus keeps usage events on disk until the consumer wrote
    them to the warehouse. Unset: ``<data_dir>/usage-log``. One process per directory."""
    local_log_max_bytes: int = Field(default=1 << 30, ge=0)
    """Disk the log may use (it holds only what the consumer has not written yet); past it
    events are dropped, with an ERROR log. 0 turns the log off: the bus is memory only, and
    a crash loses what the consumer had not written yet."""
    local_log_fsync_seconds: float = Field(default=1.0, ge=0)
    """How often the log is fsynced: what a power loss (not a crash) can take. 0: after
    every append, before the answer goes out (an fsync per request)."""

    def resolved_local_log_dir(self) -> Path:
        return self.local_log_dir or self.data_dir / "usage-log"
