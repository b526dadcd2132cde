"""Settings of ``meterline ingress`` (environment, prefix ``METERLINE_``)."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field

from meterline.common.settings import CommonSettings


class IngressSettings(CommonSettings):
    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=1, le=65535)
    max_request_body_bytes: int = Field(default=32 * 1024 * 1024, gt=0)
    """Larger bodies get a 413. Generous because image inputs travel inline as base64."""
    upstream_connect_timeout_seconds: float = Field(default=10.0, gt=0)
    upstream_pool_timeout_seconds: float = Field(default=10.0, gt=0)
    """How long a request may wait for a free pooled connection to the provider."""
    upstream_read_timeout_seconds: float | None = Field(default=None, gt=0)
    """Longest silence from the provider (before the headers, or between two chunks of a
    stream). Unset: each provider's own ``timeout_seconds`` from the configuration file."""
    upstream_drain_after_disconnect_seconds: float = Field(default=120.0, ge=0)
    """When a client leaves a stream early, keep reading the provider's stream for up to this
    long: the provider bills the whole generation, and the OpenAI wire reports usage only at
    its end. 0: close the provider's stream at once and record only the usage seen so far."""
    upstream_max_connections: int = Field(default=1000, gt=0)
    upstream_max_keepalive_connections: int = Field(default=200, ge=0)
    upstream_keepalive_expiry_seconds: float = Field(default=60.0, ge=0)
    publish_buffer_events: int = Field(default=100_000, gt=0)
    """Usage events held in memory while Kafka is slow; beyond it they go to the spool."""
    publish_flush_timeout_seconds: float = Field(default=10.0, ge=0)
    """On shutdown, how long to wait for buffered events to reach Kafka."""
    publish_stall_seconds: float = Field(default=5.0, gt=0)
    """Kafka acknowledging nothing for this long counts as down: new events go to the spool
    (which survives a restart) rather than memory until it acknowledges again."""
    publish_request_timeout_seconds: float = Field(default=15.0, gt=0)
    """How long the Kafka producer waits for an acknowledgement before a send fails."""
    publish_retry_max_seconds: float = Field(default=30.0, gt=0)
    """Longest pause between two attempts to reach Kafka (the pause doubles from 0.1 s)."""
    ingress_spool_dir: Path | None = None
    """Where events wait on disk while Kafka is down or the buffer is full. Unset:
    ``<data_dir>/ingress-spool``. One ingress process per directory."""
    ingress_spool_max_bytes: int = Field(default=1 << 30, ge=0)
    """Disk the spool may use; past it events are dropped, with an ERROR log and the
    ``meterline_ingress_events_dropped_total`` metric. 0 turns the spool off."""

    budget_refresh_seconds: float = Field(default=2.0, gt=0)
    """How often the hard budgets' committed spend is read from the warehouse (in the
    background). The overshoot bound with several replicas grows with it (README
    "Budgets")."""
    budget_spend_url: str | None = None
    """The query service's base URL, where hard budgets read the committed spend (with
    ``METERLINE_INTERNAL_TOKEN``). Unset: each ingress counts only what it admitted."""
    budget_replicas: int = Field(default=1, ge=1)
    """How many ingress replicas enforce the same budgets: each may reserve at most this
    fraction of what remained at its last refresh (README "Budgets")."""
    budget_default_output_tokens: int = Field(default=4096, gt=0)
    """The output a budget reservation counts for a request that names no output limit."""

    def resolved_spool_dir(self) -> Path:
        return self.ingress_spool_dir or self.data_dir / "ingress-spool"
