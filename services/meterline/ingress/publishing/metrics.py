"""A publisher's counters and gauges by name, and their Prometheus text format
(``GET /metrics``)."""

from __future__ import annotations

from collections.abc import Mapping

METRICS: dict[str, tuple[str, str, str]] = {
    # key: (Prometheus name, type, help)
    "sent": ("meterline_ingress_events_sent_total", "counter", "Usage events Kafka acknowledged."),
    "buffered": (
        "meterline_ingress_events_buffered",
        "gauge",
        "Usage events only in memory (not in the spool), waiting for Kafka or in flight.",
    ),
    "spooled": (
        "meterline_ingress_events_spooled",
        "gauge",
        "Usage events in the local spool that Kafka has not acknowledged yet.",
    ),
    "spooled_total": (
        "meterline_ingress_events_spooled_total",
        "counter",
        "Usage events written to the local spool.",
    ),
    "spool_bytes": ("meterline_ingress_spool_bytes", "gauge", "Size of the local spool."),
    "dropped": (
        "meterline_ingress_events_dropped_total",
        "counter",
        "Usage events lost: memory and spool full, or no spool.",
    ),
    "failed": (
        "meterline_ingress_publish_failures_total",
        "counter",
        "Sends to Kafka that failed and were retried, and events that could not be encoded.",
    ),
}


def prometheus_text(metrics: Mapping[str, int]) -> str:
    """The Prometheus text exposition format (version 0.0.4) of a publisher's metrics."""
    lines: list[str] = []
    for key, (name, kind, help_text) in METRICS.items():
        if key in metrics:
            lines += [f"# HELP {name} {help_text}", f"# TYPE {name} {kind}"]
            lines.append(f"{name} {metrics[key]}")
    return "\n".join(lines) + "\n"
