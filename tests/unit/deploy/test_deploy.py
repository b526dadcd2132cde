"""The deployment files say only what Meterline understands: every command is a meterline
command, every setting a setting the services read, every Helm value one values.yaml has;
and the wheel the container image installs carries the migrations and schemas."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import AliasChoices
from pydantic_settings import BaseSettings

from meterline.cli import build_parser
from meterline.common.settings import CommonSettings
from meterline.consumer.settings import ConsumerSettings
from meterline.ingress.settings import IngressSettings
from meterline.query.settings import QuerySettings

REPO = Path(__file__).resolve().parents[3]
DEPLOY = REPO / "deploy"
CHART = DEPLOY / "helm" / "meterline"
PROVIDER_KEY_VARIABLES = {"OPENAI_API_KEY", "ANTHROPIC_API_KEY", "METERLINE_SIMULATOR_KEY"}
"""Named by the starter configuration's ``api_key_env``: read by the ingress, not settings."""
CLICKHOUSE_CREDENTIALS = {"CLICKHOUSE_USER", "CLICKHOUSE_PASSWORD"}
"""The chart's building blocks of CLICKHOUSE_URL (Kubernetes' $(VAR) expansion)."""


def setting_variables(settings: type[BaseSettings]) -> set[str]:
    prefix = str(settings.model_config.get("env_prefix", ""))
    names = set()
    for name, field in settings.model_fields.items():
        alias = field.validation_alias
        if isinstance(alias, AliasChoices):
            names |= {str(choice) for choice in alias.choices}
        else:
            names.add(f"{prefix}{name}".upper())
    return names


KNOWN_VARIABLES = set().union(
    *(
        setting_variables(s)
        for s in (CommonSettings, IngressSettings, ConsumerSettings, QuerySettings)
    )
)


def assert_meterline_command(args: list[str]) -> None:
    """Parses as the CLI would parse it (argparse exits on anything unknown)."""
    parsed = build_parser().parse_args(args)
    assert parsed.handler is not None


def test_the_settings_are_read_from_the_variables_the_files_use() -> None:
    # The check below is only as good as this list: it must hold what the services read.
    assert {
        "KAFKA_BOOTSTRAP_SERVERS",
        "CLICKHOUSE_URL",
        "METERLINE_CONFIG_FILE",
        "METERLINE_MAX_BATCH_ROWS",
        "METERLINE_INGRESS_SPOOL_MAX_BYTES",
        "METERLINE_QUERY_CURSOR_SECRET",
    } <= KNOWN_VARIABLES
    assert "METERLINE_QUERY_HOST" in KNOWN_VARIABLES and "METERLINE_HOST" in KNOWN_VARIABLES


def compose() -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load((DEPLOY / "compose" / "compose.yaml").read_text())
    return document


def test_compose_runs_meterline_commands_with_known_settings() -> None:
    services = compose()["services"]
    images = {"meterline:dev", "meterline-gateway:dev"}
    meterline = {name: s for name, s in services.items() if s.get("image") in images}
    assert set(meterline) == {"init", "migrate", "ingress", "consumer", "query", "simulator"}
    for name, service in meterline.items():
        assert_meterline_command(service["command"])
        unknown = set(service.get("environment", {})) - KNOWN_VARIABLES - PROVIDER_KEY_VARIABLES
        assert not unknown, (name, unknown)
    # Each service runs on its own, reading Kafka and the ClickHouse server.
    assert services["consumer"]["environment"]["KAFKA_BOOTSTRAP_SERVERS"] == "kafka:9092"
    assert services["query"]["environment"]["CLICKHOUSE_URL"].startswith("http://")
    # The ports published are the ones the services listen on.
    for name in ("ingress", "query"):
        port = services[name]["command"][services[name]["command"].index("--port") + 1]
        assert services[name]["ports"] == [f"{port}:{port}"]


def test_compose_creates_the_topics_the_services_use() -> None:
    topics = compose()["services"]["kafka-topics"]["command"][0]
    assert "usage-events usage-events-dlq" in topics
    fields = CommonSettings.model_fields
    assert fields["usage_topic"].default == "usage-events"
    assert fields["dead_letter_topic"].default == "usage-events-dlq"


def lookup(values: dict[str, Any], dotted: str) -> Any:
    node: Any = values
    for part in dotted.split("."):
        assert isinstance(node, dict) and part in node, f".Values.{dotted} is not in values.yaml"
        node = node[part]
    return node


def templates() -> dict[str, str]:
    return {p.name: p.read_text() for p in (CHART / "templates").iterdir()}


def test_helm_templates_use_only_values_that_exist() -> None:
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    used = {ref for text in templates().values() for ref in re.findall(r"\.Values\.([\w.]+)", text)}
    assert len(used) > 15
    for ref in used:
        lookup(values, ref)


def test_helm_containers_run_meterline_commands_with_known_settings() -> None:
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    commands = []
    for name, text in templates().items():
        for args in re.findall(r"^\s+args: \[(.*)\]$", text, flags=re.MULTILINE):
            rendered = re.sub(
                r"\{\{ \.Values\.([\w.]+) \}\}", lambda m: str(lookup(values, m.group(1))), args
            )
            command = [shlex.split(part)[0] for part in rendered.split(",")]
            assert_meterline_command(command)
            commands.append(command[0])
        variables = set(re.findall(r"- name: ([A-Z][A-Z0-9_]+)$", text, flags=re.MULTILINE))
        unknown = variables - KNOWN_VARIABLES - CLICKHOUSE_CREDENTIALS
        assert not unknown, (name, unknown)
    assert sorted(commands) == ["consumer", "ingress", "migrate", "query"]


def test_the_image_copies_what_exists() -> None:
    dockerfile = (DEPLOY / "Dockerfile").read_text()
    sources = [
        word
        for line in dockerfile.splitlines()
        if line.startswith("COPY ") and "--from=" not in line
        for word in line.split()[1:-1]
    ]
    assert sources
    for source in sources:
        assert (REPO / source).exists(), source


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    # uv builds the wheel the image installs (`uv sync --no-editable`), with the same backend.
    # `uv run` names itself in UV; the test suite runs under it (make test).
    uv = os.environ.get("UV") or shutil.which("uv")
    if uv is None:
        pytest.fail("uv is needed to build the wheel: run the tests with `make test`")
    subprocess.run(
        [uv, "build", "--wheel", "--out-dir", str(out), str(REPO)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    [built] = out.glob("meterline-*.whl")
    return built


def test_the_wheel_carries_migrations_and_schemas(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    migrations = sorted(p.name for p in (REPO / "schemas" / "clickhouse").glob("*.sql"))
    avro = sorted(p.name for p in (REPO / "schemas" / "avro").glob("*.avsc"))
    assert migrations and avro
    for name in migrations:
        assert f"meterline/_schemas/clickhouse/{name}" in names
    for name in avro:
        assert f"meterline/_schemas/avro/{name}" in names


def test_an_installed_wheel_finds_its_migrations(wheel: Path, tmp_path: Path) -> None:
    target = tmp_path / "site"
    with zipfile.ZipFile(wheel) as archive:
        archive.extractall(target)
    probe = (
        "from meterline.common.migrations import migrations_dir, load_migrations;"
        "from meterline.common import codec;"
        "print(migrations_dir()); print(len(load_migrations()))"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe],
        env={"PYTHONPATH": str(target)},
        cwd=tmp_path,
        check=True,
        capture_output=True,
        text=True,
    )
    directory, count = result.stdout.split()
    assert Path(directory).is_relative_to(target)
    assert int(count) == len(list((REPO / "schemas" / "clickhouse").glob("*.sql")))
