"""Every rendering of the chart in the matrix passes `kubeconform -strict` against the
schemas generated offline; the check itself fails on an unknown field or a missing schema."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.deploy.chart import MATRIX, kubeconform, render
from tests.support.deploy_tools import Tools


@pytest.mark.parametrize("case", sorted(MATRIX))
def test_the_rendered_chart_is_valid_kubernetes(tools: Tools, tmp_path: Path, case: str) -> None:
    release, values = MATRIX[case]
    manifest = render(tools, values, release=release, tmp_path=tmp_path)
    result = kubeconform(tools, manifest)
    assert result.returncode == 0, result.stdout + result.stderr
    # -summary: "Summary: N resources found in 1 file - Valid: N, Invalid: 0, Errors: 0 ..."
    assert "Invalid: 0, Errors: 0" in result.stdout, result.stdout
    assert "Valid: 0," not in result.stdout


def test_a_field_kubernetes_does_not_know_is_invalid(tools: Tools) -> None:
    manifest = """\
apiVersion: apps/v1
kind: Deployment
metadata: {name: x}
spec:
  selector: {matchLabels: {app: x}}
  template:
    metadata: {labels: {app: x}}
    spec:
      containers:
        - name: x
          image: x
          readinessProbe: {httpGet: {path: /readyz, port: http}, periodSecond: 5}
"""
    result = kubeconform(tools, manifest)
    assert result.returncode != 0
    assert "periodSecond" in result.stdout


def test_a_kind_without_a_schema_is_an_error(tools: Tools) -> None:
    manifest = "apiVersion: example.com/v1\nkind: Widget\nmetadata: {name: x}\n"
    result = kubeconform(tools, manifest)
    assert result.returncode != 0
    assert "could not find schema for Widget" in result.stdout
