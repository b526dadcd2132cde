"""Rendering the Helm chart and validating what it renders, for the deployment tests."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import yaml

from tests.support.deploy_tools import REPO, Tools

CHART = REPO / "deploy" / "helm" / "meterline"
RULES = CHART / "files" / "prometheus-rules.yaml"
DASHBOARD = CHART / "files" / "grafana-dashboard.json"
KUBERNETES_VERSION = "1.37.2"
"""The release of k8s.io/kubernetes whose OpenAPI documents the schemas come from."""


def run(args: list[str | Path], stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(a) for a in args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def helm_template(
    tools: Tools,
    values: dict[str, Any] | None = None,
    *,
    release: str = "meterline",
    chart: Path = CHART,
    extra: list[str] | None = None,
    tmp_path: Path,
) -> subprocess.CompletedProcess[str]:
    args: list[str | Path] = [tools.helm, "template", release, chart, "--namespace", "meterline"]
    if values is not None:
        values_file = tmp_path / "values.yaml"
        values_file.write_text(yaml.safe_dump(values))
        args += ["--values", values_file]
    args += extra or []
    return run(args)


def render(tools: Tools, values: dict[str, Any] | None = None, **kwargs: Any) -> str:
    result = helm_template(tools, values, **kwargs)
    assert result.returncode == 0, result.stderr
    return result.stdout


def documents(manifest: str) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(manifest) if d]


def kubeconform(tools: Tools, manifest: str) -> subprocess.CompletedProcess[str]:
    """-strict, and no schema but the generated ones: a kind without a schema fails."""
    return run(
        [
            tools.kubeconform,
            "-strict",
            "-summary",
            "-kubernetes-version",
            KUBERNETES_VERSION,
            "-schema-location",
            tools.schema_location,
            "-",
        ],
        stdin=manifest,
    )


EVERYTHING: dict[str, Any] = {
    "gateway": {"autoscaling": {"enabled": True}},
    "query": {"autoscaling": {"enabled": True}},
    "ingress": {
        "enabled": True,
        "className": "nginx",
        "annotations": {"nginx.ingress.kubernetes.io/proxy-read-timeout": "600"},
        "hosts": [
            {
                "host": "ai.example.com",
                "paths": [
                    {"path": "/v1/report", "pathType": "Prefix", "service": "query"},
                    {"path": "/", "pathType": "Prefix", "service": "gateway"},
                ],
            }
        ],
        "tls": [{"secretName": "meterline-tls", "hosts": ["ai.example.com"]}],
    },
    "metrics": {
        "serviceMonitor": {"enabled": True, "labels": {"release": "prometheus"}},
        "grafanaDashboard": {"enabled": True, "annotations": {"grafana_folder": "Meterline"}},
        "prometheusRule": {"enabled": True, "labels": {"release": "prometheus"}},
    },
    "serviceAccount": {"annotations": {"example.com/role": "meterline"}},
    "imagePullSecrets": [{"name": "registry"}],
    "nodeSelector": {"kubernetes.io/os": "linux"},
    "tolerations": [{"key": "dedicated", "operator": "Equal", "value": "meterline"}],
}

EXTERNAL: dict[str, Any] = {
    "kafka": {
        "bootstrapServers": "b-1.kafka.example.com:9096,b-2.kafka.example.com:9096",
        "usageTopic": "ai-usage",
        "deadLetterTopic": "ai-usage-dlq",
    },
    "clickhouse": {
        "url": "https://clickhouse.example.com:8443",
        "database": "usage",
        "credentialsSecret": "clickhouse-cloud",
    },
    "image": {"repository": "registry.example.com/meterline", "tag": "0.1.0"},
    "migrate": {"enabled": False},
}

LONG_RELEASE = "a" * 20 + "-" + "b" * 29
assert len(LONG_RELEASE) == 50

MATRIX: dict[str, tuple[str, dict[str, Any] | None]] = {
    "defaults": ("meterline", None),
    "everything": ("meterline", EVERYTHING),
    "external": ("usage", EXTERNAL),
    "long-release-name": (LONG_RELEASE, EVERYTHING),
}
