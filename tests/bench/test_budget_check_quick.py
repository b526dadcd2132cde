"""The budget check benchmark at its quick size, so the harness cannot rot: it runs the
guard the ingress runs, and its numbers must be plausible."""

from __future__ import annotations

import json
from pathlib import Path

from bench import budget_check


def test_quick_run_writes_plausible_results(tmp_path: Path) -> None:
    assert budget_check.main(["--quick", "--out", str(tmp_path)]) == 0
    document = json.loads((tmp_path / "budget_check.json").read_text())
    assert document["benchmark"] == "budget_check"
    [result] = document["results"]
    assert result["requests"] == document["params"]["requests"] == 2_000
    assert 0 < result["check_us_p50"] <= result["check_us_p99"] <= result["check_us_max"]
    assert 0 < result["settle_us_p50"] <= result["settle_us_p99"]
    assert "| 2,000 | 1,000 | 5 |" in (tmp_path / "budget_check.md").read_text()
