"""The freshness benchmark at its quick size: a few probes through ``meterline all-in-one``
(embedded), each found by its event id in ``/v1/generation``, and plausible times; and the
memory table gathered from what it recorded."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench import freshness, memory

pytestmark = pytest.mark.clickhouse


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One quick run's results folder, shared by the tests below (a run takes seconds)."""
    out = tmp_path_factory.mktemp("freshness")
    assert freshness.main(["--quick", "--out", str(out)]) == 0
    return out


def test_quick_run_writes_plausible_results(results: Path) -> None:
    document = json.loads((results / "freshness.json").read_text())
    assert document["benchmark"] == "freshness"
    [row] = document["results"]
    assert row["layout"] == "embedded"
    assert row["samples"] == len(row["times_s"]) == document["params"]["samples"]
    assert 0 < row["min_s"] <= row["p50_s"] <= row["p95_s"] <= row["max_s"]
    # An event cannot be in the warehouse before the consumer has written a batch, nor
    # (with the default 1 s batch age and background load) take many times that.
    assert row["max_s"] < 30
    assert 50 < row["peak_rss_mib"]["all-in-one"] < 4096
    assert row["met"] == (row["p95_s"] <= 2.0)
    assert "p95" in (results / "freshness.md").read_text()


def test_memory_gathers_the_services_peak_rss_from_the_results(results: Path) -> None:
    assert memory.main(["--out", str(results)]) == 0

    document = json.loads((results / "memory.json").read_text())
    rows = document["results"]
    assert {r["service"] for r in rows} == {"all-in-one (embedded)"}
    [row] = rows
    # A Python web service with the chDB engine loaded, far from a runaway.
    assert 50 < row["peak_rss_mib"] < 4096
    assert row["benchmark"] == "freshness"
    assert row["quick"] is True
    assert set(document["missing"]) == {
        "consumer_throughput",
        "report_latency",
        "ingress_overhead",
    }
    markdown = (results / "memory.md").read_text()
    assert "| all-in-one (embedded) |" in markdown
    assert "(quick size)" in markdown
