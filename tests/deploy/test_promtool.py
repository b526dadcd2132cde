"""The alert rules the chart ships pass `promtool check rules`."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.deploy.chart import RULES, run


@pytest.mark.skipif(
    not RULES.exists(),
    reason="deploy/helm/meterline/files/prometheus-rules.yaml is not in this tree",
)
def test_the_alert_rules_pass_promtool(promtool: Path) -> None:
    result = run([promtool, "check", "rules", RULES])
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_promtool_refuses_a_broken_rule(promtool: Path, tmp_path: Path) -> None:
    broken = tmp_path / "rules.yaml"
    broken.write_text(
        "groups:\n  - name: x\n    rules:\n"
        "      - alert: X\n        expr: rate(requests_total[5m]\n"
    )
    result = run([promtool, "check", "rules", broken])
    assert result.returncode != 0
    assert "FAILED" in result.stdout + result.stderr
