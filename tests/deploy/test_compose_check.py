"""deploy/compose/compose.yaml as `docker compose` reads it: loaded by the Compose
Specification's own loader (deploy/tools/compose-check, built with Go into .cache/tools/bin),
it starts only with its secrets set and names the one missing; every service has a
healthcheck; the warehouse is published on loopback only; the configuration volume is
written by init alone."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
COMPOSE_FILE = REPO / "deploy" / "compose" / "compose.yaml"
TOOL_SOURCE = REPO / "deploy" / "tools" / "compose-check"
TOOL_BINARY = REPO / ".cache" / "tools" / "bin" / "compose-check"
SECRETS = {
    "CLICKHOUSE_PASSWORD": "pw-from-the-test",
    "METERLINE_QUERY_CURSOR_SECRET": "cursor-secret-from-the-test",
}


@pytest.fixture(scope="module")
def compose_check_bin() -> Path:
    """The tool, built from its source when Go is here (Go's build cache makes a rebuild of
    unchanged source instant); a build that fails fails the tests."""
    go = shutil.which("go")
    if go is None:
        if TOOL_BINARY.exists():
            return TOOL_BINARY
        pytest.skip("`go` is not installed: compose-check cannot be built")
    TOOL_BINARY.parent.mkdir(parents=True, exist_ok=True)
    build = subprocess.run(
        [go, "build", "-o", str(TOOL_BINARY), "."],
        cwd=TOOL_SOURCE,
        capture_output=True,
        text=True,
        timeout=600,
    )
    if build.returncode != 0:
        pytest.fail(f"building compose-check failed:\n{build.stderr}")
    return TOOL_BINARY


def load(binary: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    args = [str(binary)]
    for name, value in env.items():
        args += ["-env", f"{name}={value}"]
    return subprocess.run(
        [*args, str(COMPOSE_FILE)], capture_output=True, text=True, timeout=60, check=False
    )


@pytest.fixture(scope="module")
def compose_project(compose_check_bin: Path) -> dict[str, Any]:
    result = load(compose_check_bin, SECRETS)
    assert result.returncode == 0, result.stderr
    project: dict[str, Any] = json.loads(result.stdout)
    return project


def test_the_shipped_file_loads_with_its_secrets_set(compose_project: dict[str, Any]) -> None:
    services = compose_project["services"]
    assert set(services) == {
        "kafka",
        "kafka-topics",
        "clickhouse",
        "init",
        "migrate",
        "ingress",
        "consumer",
        "query",
        "simulator",
    }
    # The values given are the values used: no default stands in for a secret.
    password = SECRETS["CLICKHOUSE_PASSWORD"]
    assert services["clickhouse"]["environment"]["CLICKHOUSE_PASSWORD"] == password
    for name in ("migrate", "consumer", "query"):
        url = services[name]["environment"]["CLICKHOUSE_URL"]
        assert url == f"http://meterline:{password}@clickhouse:8123", name
    cursor = services["query"]["environment"]["METERLINE_QUERY_CURSOR_SECRET"]
    assert cursor == SECRETS["METERLINE_QUERY_CURSOR_SECRET"]
    # The gateway never opens the warehouse, so it is not given its password.
    assert "CLICKHOUSE_URL" not in services["ingress"]["environment"]


@pytest.mark.parametrize("missing", sorted(SECRETS))
def test_it_refuses_to_load_without_a_secret_and_names_it(
    compose_check_bin: Path, missing: str
) -> None:
    env = {name: value for name, value in SECRETS.items() if name != missing}
    result = load(compose_check_bin, env)
    assert result.returncode != 0
    assert f"required variable {missing} is missing a value: set {missing}" in result.stderr
    # Only the missing one is named.
    for other in set(SECRETS) - {missing}:
        assert f"required variable {other}" not in result.stderr


def test_without_any_secret_both_are_named(compose_check_bin: Path) -> None:
    result = load(compose_check_bin, {})
    assert result.returncode != 0
    for name in SECRETS:
        assert f"required variable {name} is missing a value" in result.stderr


def jobs(services: dict[str, Any]) -> set[str]:
    """Services others wait for to finish: one-shot, with nothing to probe."""
    return {
        name
        for service in services.values()
        for name, dependency in (service.get("depends_on") or {}).items()
        if dependency["condition"] == "service_completed_successfully"
    }


def test_every_service_has_a_healthcheck(compose_project: dict[str, Any]) -> None:
    services = compose_project["services"]
    one_shot = jobs(services)
    assert one_shot == {"init", "migrate", "kafka-topics"}
    for name, service in services.items():
        healthcheck = service.get("healthcheck")
        assert healthcheck, f"{name} has no healthcheck"
        if healthcheck.get("disable"):
            assert name in one_shot, f"{name} runs on but disables its healthcheck"
            assert service.get("restart", "no") == "no", name
            continue
        test = healthcheck["test"]
        assert test[0] in {"CMD", "CMD-SHELL"} and len(test) > 1, (name, test)
    # Meterline's own probe their own HTTP endpoint, with Python (no curl in the image).
    probes = {
        "ingress": "http://127.0.0.1:8080/healthz",
        "query": "http://127.0.0.1:8081/healthz",
        "consumer": "http://127.0.0.1:9464/livez",
        "simulator": "http://127.0.0.1:8090/healthz",
    }
    for name, url in probes.items():
        test = services[name]["healthcheck"]["test"]
        assert test[:3] == ["CMD", "python", "-c"], (name, test)
        assert f"urlopen('{url}'" in test[3], (name, test)


def test_clickhouse_is_published_on_loopback_only(compose_project: dict[str, Any]) -> None:
    services = compose_project["services"]
    ports = services["clickhouse"]["ports"]
    assert ports
    for port in ports:
        assert port.get("host_ip") == "127.0.0.1", port
    # No other service republishes the warehouse's ports.
    for name, service in services.items():
        for port in service.get("ports") or []:
            if name != "clickhouse":
                assert port["target"] not in {8123, 9000}, (name, port)


def test_only_init_writes_the_configuration(compose_project: dict[str, Any]) -> None:
    services = compose_project["services"]
    for name, service in services.items():
        for volume in service.get("volumes") or []:
            if volume["target"] != "/etc/meterline":
                continue
            # A named volume: it takes the image user's ownership of /etc/meterline, where a
            # bind mount would keep the host's and refuse that user.
            assert volume["type"] == "volume" and volume["source"] == "config", (name, volume)
            assert bool(volume.get("read_only")) == (name != "init"), (name, volume)
    assert services["init"]["command"][:3] == ["init", "--config", "/etc/meterline/meterline.toml"]
    # The image's user, not root, and read-only roots everywhere Meterline runs.
    for name in ("init", "migrate", "ingress", "consumer", "query", "simulator"):
        assert services[name].get("user") in (None, ""), name
        assert services[name]["read_only"] is True, name
