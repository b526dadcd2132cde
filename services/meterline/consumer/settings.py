from __future__ import annotations

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from meterline.common.settings import CommonSettings


class ConsumerSettings(CommonSettings):
    model_config = SettingsConfigDict(env_prefix="METERLINE_", extra="ignore")

    consumer_group: str = "meterline-consumer"
    consumer_http_host: str = "0.0.0.0"
    """Where ``/metrics``, ``/livez`` and ``/readyz`` listen (metrics and probes only)."""
    consumer_http_port: int = Field(default=9464, ge=0, le=65535)
    """0: no HTTP server (the all-in-one serves the consumer's metrics on its own port)."""
    max_batch_rows: int = Field(default=100_000, ge=1)
    """A batch closes at this many rows... Every insert costs a part per table fed (the raw
    table and each rollup) whatever its size, and the engine merges them all later, so large
    batches are what make a consumer fast when it has a backlog (BENCHMARKS.md, consumer
    throughput by batch size); at lower rates the age limit closes batches first. Two
    batches at most are in memory (BENCHMARKS.md has the peak RSS per batch size)."""
    max_batch_seconds: float = Field(default=1.0, gt=0)
    """...or when its oldest row is this old, whichever comes first."""
    dedupe_window_events: int = Field(default=1_000_000, ge=0)
    """How many recent event ids the consumer remembers, at least, to drop producer-side
    repeats (it may hold up to twice as many, about 120 bytes each)."""
    kafka_session_timeout_ms: int = Field(default=10_000, ge=1)
    """How long the group waits for a member that stopped heartbeating (a crash) before
    handing its partitions to the others; the broker bounds it (group.min/max.session...)."""
    insert_retry_max_seconds: float = Field(default=30.0, gt=0)
    """Longest pause between two attempts at an insert that failed."""
    dead_letter_breaker_ratio: float = Field(default=0.5, gt=0, le=1)
    """Stop, rather than dead-letter everything, when more than this share fails..."""
    dead_letter_breaker_min_messages: int = Field(default=1_000, ge=1)
    """...over a window of at least this many messages."""
    kafka_stall_seconds: float = Field(default=10.0, gt=0)
    """A Kafka client that fetched nothing for this long while the broker answered and its
    partitions held unread messages is replaced by a new one (aiokafka can stop fetching
    after a broker outage without raising anything: consumer/source.py)."""
    kafka_stall_check_seconds: float = Field(default=2.0, gt=0)
    """How often, while polls come back empty, the broker is asked where the topic ends."""
    kafka_client_timeout_seconds: float = Field(default=15.0, gt=0)
    """Longest wait for one call into the Kafka client (a poll past its own timeout, a
    commit, a stop), after which it is given up: aiokafka retries some for ever."""
    consumer_stop_timeout_seconds: float = Field(default=25.0, gt=0)
    """After SIGTERM, how long the consumer may take to write and commit its open batches;
    past it they are left uncommitted, to be read again by the next consumer. Below the
    grace period that compose (``stop_grace_period``) and Helm
    (``terminationGracePeriodSeconds``) give the process, with room for the client's stop."""
