"""The freshness benchmark at its quick size: a few probes through ``meterline all-in-one``
(embedded), each found by its event id in ``/v1/generation``, and plausible times."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench import freshness

pytestmark = pytest.mark.clickhouse


def test_quick_run_writes_plausible_results(tmp_path: Path) -> None:
    assert freshness.main(["--quick", "--out", str(tmp_path)]) == 0

    document = json.loads((tmp_path / "freshness.json").read_text())
    assert document["benchmark"] == "freshness"
    [row] = document["results"]
    assert row["layout"] == "embedded"
    assert row["samples"] == len(row["times_s"]) == document["params"]["samples"]
    assert 0 < row["min_s"] <= row["p50_s"] <= row["p95_s"] <= row["max_s"]
    # An event cannot be in the warehouse before the consumer has written a batch, nor
    # (with the default 1 s batch age and background load) take many times that.
    assert row["max_s"] < 30
    assert row["met"] == (row["p95_s"] <= 2.0)
    assert "p95" in (tmp_path / "freshness.md").read_text()
