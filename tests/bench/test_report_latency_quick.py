"""The report latency benchmark at its quick size: it runs end to end (engine-generated
events, the rollups filled by their views, ``meterline query`` as its own process), every
call's report equals the raw table's answer, and the numbers it writes are plausible."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench import report_latency

pytestmark = pytest.mark.clickhouse

CALLS = {"day_user", "tag_filtered", "model_one_user", "hourly_one_day"}


def test_quick_run_writes_plausible_numbers_and_matches_the_raw_table(tmp_path: Path) -> None:
    out = tmp_path / "results"
    argv = ["--quick", "--out", str(out), "--data-dir", str(tmp_path / "warehouse")]
    assert report_latency.main(argv) == 0

    document = json.loads((out / "report_latency.json").read_text())
    assert document["benchmark"] == "report_latency"
    results = document["results"]
    assert {r["call"] for r in results} == CALLS
    for r in results:
        assert r["events"] == report_latency.QUICK_SIZE
        assert r["equal_to_raw"] is True, r["call"]
        assert r["rows"] > 0, r["call"]
        assert r["requests"] >= 10
        assert 0 < r["p50_ms"] <= r["p95_ms"] < 10_000, r
        assert r["raw_median_ms"] > 0
        # The service's own SQL, run without the service: it reads rows of a rollup.
        assert r["rollup_rows_read"] > 0, r["call"]
        assert 0 < r["engine_p50_ms"] <= r["engine_p95_ms"]
        assert r["query_peak_rss_mib"] > 50  # a Python web service with the engine loaded
    by_call = {r["call"]: r for r in results}
    assert by_call["hourly_one_day"]["rows"] == 24
    assert by_call["day_user"]["rows"] == 1000  # the first page

    [run] = document["runs"]
    rollups = run["rollup_rows"]
    # The lean rollups are what makes reports fast: far smaller than the full daily rollup.
    assert 0 < rollups["usage_by_model_daily"] < rollups["usage_daily"] / 2
    assert 0 < rollups["usage_by_user_daily"] < rollups["usage_daily"]
    assert 0 < run["team_events"] < report_latency.QUICK_SIZE

    markdown = (out / "report_latency.md").read_text()
    assert "| raw events |" in markdown
    assert "Target (p95" in markdown
