"""The ingress overhead benchmark at its quick size: the simulator and ``meterline
all-in-one`` as their own processes, a second of open-loop load at 100 requests/s from the
load-generator process, streamed and not, and the numbers it writes are plausible."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench import ingress_overhead

pytestmark = pytest.mark.clickhouse


def test_quick_run_writes_plausible_results(tmp_path: Path) -> None:
    assert ingress_overhead.main(["--quick", "--out", str(tmp_path)]) == 0

    document = json.loads((tmp_path / "ingress_overhead.json").read_text())
    assert document["benchmark"] == "ingress_overhead"
    assert document["params"]["rates"] == [100]
    runs = document["runs"]
    assert {(r["target"], r["streamed"]) for r in runs} == {
        ("direct", False),
        ("direct", True),
        ("all-in-one", False),
        ("all-in-one", True),
    }
    for run in runs:
        assert run["error_count"] == 0, run["errors"]
        assert run["completed"] == run["sent"] == 150
        assert 0 < run["p50_ms"] <= run["p99_ms"] < 30_000
        assert run["ttfb_p50_ms"] <= run["p50_ms"]
        # The gateway meters every answer (its event id header); the simulator has none.
        assert run["event_ids"] == (run["completed"] if run["target"] != "direct" else 0)
        gateway_cpu = run["cpu_us_per_request"]["all-in-one"]
        if run["target"] == "all-in-one":
            assert gateway_cpu > 0
    for row in document["results"]:
        if row["target"] == "direct":
            assert "added_p50_ms" not in row
        else:
            direct = next(
                r
                for r in document["results"]
                if r["target"] == "direct" and r["streamed"] == row["streamed"]
            )
            assert row["added_p50_ms"] == pytest.approx(row["p50_ms"] - direct["p50_ms"], abs=1e-3)
    assert document["peak_rss_mib"]["all-in-one"] > 50
    assert document["peak_rss_mib"]["simulator"] > 10
    markdown = (tmp_path / "ingress_overhead.md").read_text()
    assert "added p50" in markdown and "Peak RSS" in markdown and "Target at 500" not in markdown
