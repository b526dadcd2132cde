"""The metrics' text format: what Prometheus reads, cumulative buckets, escaped labels, and
the PromQL name extraction the dashboard and alert-rule tests rely on."""

from __future__ import annotations

from meterline.common.metrics import Counter, Gauge, Histogram, Registry, process_text, status_class
from tests.support.prometheus import metric_names, names, parse, value


def test_counters_gauges_and_histograms_render_in_the_text_format() -> None:
    registry = Registry()
    requests = registry.add(Counter("x_requests_total", "Requests.", ("surface", "status_class")))
    idle = registry.add(Counter("x_idle_total", "Never incremented."))
    gauge = registry.add(Gauge("x_lag", "Lag.", ("partition",)))
    latency = registry.add(Histogram("x_seconds", "Latency.", (0.1, 1.0), ("route",)))
    requests.inc("chat", "2xx")
    requests.inc("chat", "2xx")
    requests.inc('we"ird\\', "5xx", amount=3)
    gauge.set(7, "0")
    for seconds in (0.05, 0.1, 0.5, 4.0):
        latency.observe(seconds, "/v1/report")
    registry.add_text(lambda: "# TYPE y_total counter\ny_total 5\n")
    text = registry.render()

    assert "# TYPE x_requests_total counter" in text
    assert "# TYPE x_seconds histogram" in text
    assert value(text, "x_requests_total", surface="chat", status_class="2xx") == 2
    assert value(text, "x_requests_total", surface='we\\"ird\\\\') == 3
    assert value(text, "x_idle_total") == 0 and idle.value() == 0
    assert value(text, "x_lag", partition="0") == 7
    buckets = {s.labels["le"]: s.value for s in parse(text) if s.name == "x_seconds_bucket"}
    # Cumulative, an observation on a bound counting in that bucket.
    assert buckets == {"0.1": 2, "1": 3, "+Inf": 4}
    assert value(text, "x_seconds_count", route="/v1/report") == 4
    assert value(text, "x_seconds_sum") == 4.65
    assert value(text, "y_total") == 5
    assert latency.count("/v1/report") == 4


def test_process_series_are_there() -> None:
    text = process_text()
    assert {
        "process_cpu_seconds_total",
        "process_resident_memory_bytes",
        "process_open_fds",
        "process_start_time_seconds",
    } <= names(text)
    assert value(text, "process_resident_memory_bytes") > 1 << 20
    assert value(text, "process_open_fds") >= 3


def test_status_classes() -> None:
    assert [status_class(s) for s in (200, 302, 404, 503, 42)] == [
        "2xx",
        "3xx",
        "4xx",
        "5xx",
        "other",
    ]


def test_metric_names_of_promql_expressions() -> None:
    expression = (
        'histogram_quantile(0.99, sum by (le, route) (rate(a_seconds_bucket{route=~"/v1.*"}'
        '[$__rate_interval]))) / on (job) group_left b_total{x="y"} > 0.5 and c offset 5m'
    )
    assert metric_names(expression) == {"a_seconds_bucket", "b_total", "c"}
    assert metric_names("max(m_open) == 1 or min(m_up) == 0") == {"m_open", "m_up"}
    assert metric_names('process_resident_memory_bytes{job=~"$job"} / 2^20') == {
        "process_resident_memory_bytes"
    }
