"""The Helm chart: it lints, it renders what an ops team expects on every object, and its
values schema turns a mistyped or unknown value into an error that names it."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.deploy.chart import (
    CHART,
    DASHBOARD,
    EVERYTHING,
    MATRIX,
    RULES,
    documents,
    helm_template,
    kubeconform,
    render,
    run,
)
from tests.support.deploy_tools import Tools

WORKLOADS = {"Deployment", "Job"}


def by_kind(docs: list[dict[str, Any]], kind: str) -> dict[str, dict[str, Any]]:
    return {d["metadata"]["name"]: d for d in docs if d["kind"] == kind}


def component(doc: dict[str, Any]) -> str:
    return str(doc["metadata"]["labels"]["app.kubernetes.io/component"])


def test_the_chart_lints_strictly(tools: Tools, tmp_path: Path) -> None:
    for values in (None, EVERYTHING):
        args: list[str | Path] = [tools.helm, "lint", "--strict", CHART]
        if values is not None:
            (tmp_path / "values.yaml").write_text(yaml.safe_dump(values))
            args += ["--values", tmp_path / "values.yaml"]
        result = run(args)
        assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("case", sorted(MATRIX))
def test_every_object_has_standard_labels_and_a_dns_name(
    tools: Tools, tmp_path: Path, case: str
) -> None:
    release, values = MATRIX[case]
    docs = documents(render(tools, values, release=release, tmp_path=tmp_path))
    assert len(docs) >= 9
    names = [(d["kind"], d["metadata"]["name"]) for d in docs]
    assert len(set(names)) == len(names)
    for doc in docs:
        name = doc["metadata"]["name"]
        assert len(name) <= 63 and not name.endswith("-"), name
        labels = doc["metadata"]["labels"]
        assert labels["helm.sh/chart"] == "meterline-0.2.0"
        assert labels["app.kubernetes.io/managed-by"] == "Helm"
        assert labels["app.kubernetes.io/instance"] == release
        assert labels["app.kubernetes.io/name"] == "meterline"


def test_a_long_release_name_keeps_every_component_suffix(tools: Tools, tmp_path: Path) -> None:
    release, values = MATRIX["long-release-name"]
    docs = documents(render(tools, values, release=release, tmp_path=tmp_path))
    services = by_kind(docs, "Service")
    assert sorted(name.rsplit("-", 1)[1] for name in services) == ["consumer", "gateway", "query"]
    assert max(len(n) for n in services) == 63


def test_pods_run_locked_down(tools: Tools, tmp_path: Path) -> None:
    docs = documents(render(tools, EVERYTHING, tmp_path=tmp_path))
    [account] = by_kind(docs, "ServiceAccount").values()
    assert account["automountServiceAccountToken"] is False
    pods = [d for d in docs if d["kind"] in WORKLOADS]
    assert sorted(component(d) for d in pods) == ["consumer", "gateway", "migrate", "query"]
    for doc in pods:
        pod = doc["spec"]["template"]["spec"]
        assert pod["automountServiceAccountToken"] is False
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
        if doc["kind"] == "Deployment":
            assert pod["serviceAccountName"] == account["metadata"]["name"]
        mounts_by_volume = {v["name"] for v in pod["volumes"]}
        for container in pod["containers"]:
            context = container["securityContext"]
            assert context["readOnlyRootFilesystem"] is True
            assert context["allowPrivilegeEscalation"] is False
            assert context["capabilities"] == {"drop": ["ALL"]}
            assert context["seccompProfile"] == {"type": "RuntimeDefault"}
            assert container["resources"]["requests"] and container["resources"]["limits"]
            mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
            # A read-only root: /tmp is an emptyDir.
            assert "tmp" in mounts_by_volume and mounts["/tmp"] == "tmp"


def test_every_deployment_is_probed_on_a_port_it_declares(tools: Tools, tmp_path: Path) -> None:
    docs = documents(render(tools, tmp_path=tmp_path))
    deployments = by_kind(docs, "Deployment")
    assert sorted(component(d) for d in deployments.values()) == ["consumer", "gateway", "query"]
    for doc in deployments.values():
        [container] = doc["spec"]["template"]["spec"]["containers"]
        ports = {p["name"] for p in container["ports"]}
        for probe, path in (
            ("startupProbe", "/livez"),
            ("readinessProbe", "/readyz"),
            ("livenessProbe", "/livez"),
        ):
            assert container[probe]["httpGet"]["path"] == path
            assert container[probe]["httpGet"]["port"] in ports
    consumer = next(d for d in deployments.values() if component(d) == "consumer")
    [container] = consumer["spec"]["template"]["spec"]["containers"]
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["METERLINE_CONSUMER_HTTP_PORT"] == "9464"
    assert container["ports"] == [{"name": "metrics", "containerPort": 9464}]


def test_the_gateway_leaves_the_service_before_it_stops(tools: Tools, tmp_path: Path) -> None:
    docs = documents(render(tools, tmp_path=tmp_path))
    gateway = next(d for d in by_kind(docs, "Deployment").values() if component(d) == "gateway")
    pod = gateway["spec"]["template"]["spec"]
    [container] = pod["containers"]
    pause = container["lifecycle"]["preStop"]["sleep"]["seconds"]
    assert 0 < pause < pod["terminationGracePeriodSeconds"]


def test_the_migrate_job_has_resources_and_a_ttl(tools: Tools, tmp_path: Path) -> None:
    [job] = by_kind(documents(render(tools, tmp_path=tmp_path)), "Job").values()
    assert job["spec"]["ttlSecondsAfterFinished"] > 0
    assert job["metadata"]["annotations"]["helm.sh/hook"] == "pre-install,pre-upgrade"
    # A pre-install hook runs before the release's ServiceAccount exists.
    assert "serviceAccountName" not in job["spec"]["template"]["spec"]
    [container] = job["spec"]["template"]["spec"]["containers"]
    assert container["args"] == ["migrate"]
    assert container["resources"]["limits"]["memory"]


def test_defaults_render_no_optional_objects(tools: Tools, tmp_path: Path) -> None:
    kinds = {d["kind"] for d in documents(render(tools, tmp_path=tmp_path))}
    assert kinds == {
        "ConfigMap",
        "Deployment",
        "Job",
        "PodDisruptionBudget",
        "Service",
        "ServiceAccount",
    }


def test_autoscaling_targets_the_deployment_and_owns_its_replicas(
    tools: Tools, tmp_path: Path
) -> None:
    docs = documents(render(tools, EVERYTHING, tmp_path=tmp_path))
    deployments = by_kind(docs, "Deployment")
    scalers = by_kind(docs, "HorizontalPodAutoscaler")
    assert sorted(component(h) for h in scalers.values()) == ["gateway", "query"]
    for scaler in scalers.values():
        target = deployments[scaler["spec"]["scaleTargetRef"]["name"]]
        assert "replicas" not in target["spec"]
        assert scaler["spec"]["minReplicas"] <= scaler["spec"]["maxReplicas"]
    consumer = next(d for d in deployments.values() if component(d) == "consumer")
    assert consumer["spec"]["replicas"] == 2


def test_disruption_budgets_select_their_own_pods(tools: Tools, tmp_path: Path) -> None:
    docs = documents(render(tools, tmp_path=tmp_path))
    deployments = {component(d): d for d in by_kind(docs, "Deployment").values()}
    budgets = by_kind(docs, "PodDisruptionBudget").values()
    assert sorted(component(b) for b in budgets) == ["consumer", "gateway", "query"]
    for budget in budgets:
        selected = deployments[component(budget)]
        pod_labels = selected["spec"]["template"]["metadata"]["labels"]
        assert budget["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
        assert budget["spec"]["maxUnavailable"] == 1


def test_the_ingress_and_the_service_monitor_reach_existing_ports(
    tools: Tools, tmp_path: Path
) -> None:
    docs = documents(render(tools, EVERYTHING, tmp_path=tmp_path))
    services = by_kind(docs, "Service")
    [ingress] = by_kind(docs, "Ingress").values()
    assert ingress["apiVersion"] == "networking.k8s.io/v1"
    assert ingress["spec"]["ingressClassName"] == "nginx"
    backends = [p["backend"]["service"] for p in ingress["spec"]["rules"][0]["http"]["paths"]]
    for backend in backends:
        ports = {p["name"] for p in services[backend["name"]]["spec"]["ports"]}
        assert backend["port"]["name"] in ports
    assert sorted(component(services[b["name"]]) for b in backends) == ["gateway", "query"]

    [monitor] = by_kind(docs, "ServiceMonitor").values()
    assert monitor["metadata"]["labels"]["release"] == "prometheus"
    selector = monitor["spec"]["selector"]
    endpoint_ports = {e["port"] for e in monitor["spec"]["endpoints"]}
    assert {e["path"] for e in monitor["spec"]["endpoints"]} == {"/metrics"}
    scraped = set()
    for service in services.values():
        labels = service["metadata"]["labels"]
        if selector["matchLabels"].items() <= labels.items() and all(
            labels.get(e["key"]) in e["values"] for e in selector["matchExpressions"]
        ):
            assert {p["name"] for p in service["spec"]["ports"]} & endpoint_ports
            scraped.add(component(service))
    assert scraped == {"gateway", "consumer", "query"}


@pytest.mark.parametrize(
    ("flag", "named"),
    [
        ("gateway.replicas=two", "at '/gateway/replicas': got string, want integer"),
        ("gateway.replica=3", "at '/gateway': additional properties 'replica' not allowed"),
        ("consumer.httpPort=70000", "at '/consumer/httpPort'"),
        ("ingress.hosts[0].paths[0].service=consumer", "at '/ingress/hosts/0/paths/0/service'"),
        ("metrics.serviceMonitor.interval=often", "at '/metrics/serviceMonitor/interval'"),
        ("monitoring.enabled=true", "additional properties 'monitoring' not allowed"),
    ],
)
def test_a_wrong_value_fails_through_the_schema_naming_it(
    tools: Tools, tmp_path: Path, flag: str, named: str
) -> None:
    result = helm_template(tools, extra=["--set", flag], tmp_path=tmp_path)
    assert result.returncode != 0
    assert "values don't meet the specifications of the schema" in result.stderr
    assert named in result.stderr, result.stderr


def test_the_old_gateway_key_is_refused(tools: Tools, tmp_path: Path) -> None:
    # The gateway Deployment's values were under `ingress:`, which now means a Kubernetes
    # Ingress: an old values file must fail, not silently lose its replicas and port.
    result = helm_template(tools, {"ingress": {"replicas": 4, "port": 8080}}, tmp_path=tmp_path)
    assert result.returncode != 0
    assert "at '/ingress': additional properties" in result.stderr, result.stderr
    assert "'replicas'" in result.stderr and "'port'" in result.stderr


RULES_FIXTURE = """\
groups:
  - name: meterline-test
    rules:
      - alert: MeterlineDeadLetters
        expr: increase(meterline_consumer_dead_letters_total[10m]) > 0
        for: 5m
        labels: {severity: warning}
        annotations:
          summary: "{{ $labels.pod }} sent events to the dead-letter topic"
"""
DASHBOARD_FIXTURE = {
    "title": "Meterline",
    "panels": [{"type": "timeseries", "targets": [{"expr": "rate(meterline_x[5m])"}]}],
}


@pytest.fixture
def chart_copy(tmp_path: Path) -> Path:
    copy = tmp_path / "meterline"
    shutil.copytree(CHART, copy)
    shutil.rmtree(copy / "files", ignore_errors=True)
    return copy


def test_without_their_files_the_dashboard_and_rules_render_nothing(
    tools: Tools, tmp_path: Path, chart_copy: Path
) -> None:
    docs = documents(render(tools, EVERYTHING, chart=chart_copy, tmp_path=tmp_path))
    kinds = {d["kind"] for d in docs}
    assert "PrometheusRule" not in kinds
    assert all(d["metadata"]["name"].endswith("-dashboard") is False for d in docs)
    assert "ServiceMonitor" in kinds


def test_the_dashboard_and_rules_ship_their_files_as_they_are(
    tools: Tools, tmp_path: Path, chart_copy: Path
) -> None:
    (chart_copy / "files").mkdir()
    (chart_copy / "files" / "prometheus-rules.yaml").write_text(RULES_FIXTURE)
    (chart_copy / "files" / "grafana-dashboard.json").write_text(json.dumps(DASHBOARD_FIXTURE))
    manifest = render(tools, EVERYTHING, chart=chart_copy, tmp_path=tmp_path)
    docs = documents(manifest)
    [rule] = by_kind(docs, "PrometheusRule").values()
    assert rule["spec"] == yaml.safe_load(RULES_FIXTURE)
    assert rule["metadata"]["labels"]["release"] == "prometheus"
    [dashboard] = [
        d
        for d in by_kind(docs, "ConfigMap").values()
        if "grafana_dashboard" in d["metadata"]["labels"]
    ]
    assert dashboard["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert dashboard["metadata"]["annotations"] == {"grafana_folder": "Meterline"}
    assert json.loads(dashboard["data"]["meterline.json"]) == DASHBOARD_FIXTURE
    result = kubeconform(tools, manifest)
    assert result.returncode == 0, result.stdout + result.stderr


def test_a_rules_file_that_is_not_a_rules_file_fails(
    tools: Tools, tmp_path: Path, chart_copy: Path
) -> None:
    (chart_copy / "files").mkdir()
    (chart_copy / "files" / "prometheus-rules.yaml").write_text("- alert: X\n")
    result = helm_template(tools, EVERYTHING, chart=chart_copy, tmp_path=tmp_path)
    assert result.returncode != 0
    assert "must be a Prometheus rules file" in result.stderr


@pytest.mark.skipif(
    not (RULES.exists() and DASHBOARD.exists()),
    reason="files/prometheus-rules.yaml and files/grafana-dashboard.json are not in this tree",
)
def test_the_chart_ships_the_real_dashboard_and_rules(tools: Tools, tmp_path: Path) -> None:
    docs = documents(render(tools, EVERYTHING, tmp_path=tmp_path))
    [rule] = by_kind(docs, "PrometheusRule").values()
    assert rule["spec"]["groups"] == yaml.safe_load(RULES.read_text())["groups"]
    [dashboard] = [
        d
        for d in by_kind(docs, "ConfigMap").values()
        if "grafana_dashboard" in d["metadata"]["labels"]
    ]
    assert json.loads(dashboard["data"]["meterline.json"]) == json.loads(DASHBOARD.read_text())
