"""deploy/Dockerfile read as a builder reads it: the base pinned by digest, uv only in the
build stages, the gateway image without the embedded engine, a HEALTHCHECK that needs no
curl, a non-root user, OCI labels; the build context holds only what it copies. And the
gateway's install, made as its stage makes it, has no chDB and still runs the ingress."""

from __future__ import annotations

import itertools
import os
import re
import shlex
import shutil
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from meterline.processes import free_port

REPO = Path(__file__).resolve().parents[2]
DOCKERFILE = REPO / "deploy" / "Dockerfile"
DOCKERIGNORE = REPO / ".dockerignore"
TARGETS = ("gateway", "full")
OCI_LABELS = {
    "org.opencontainers.image.title",
    "org.opencontainers.image.description",
    "org.opencontainers.image.version",
    "org.opencontainers.image.revision",
    "org.opencontainers.image.licenses",
}


@dataclass
class Stage:
    name: str
    base: str
    instructions: list[tuple[str, str]] = field(default_factory=list)


@dataclass
class Dockerfile:
    args: dict[str, str]
    stages: dict[str, Stage]

    def chain(self, name: str) -> list[Stage]:
        """The stage and those it is built FROM, base first."""
        stages = [self.stages[name]]
        while stages[0].base in self.stages:
            stages.insert(0, self.stages[stages[0].base])
        return stages

    def instructions(self, name: str, keyword: str) -> list[str]:
        chain = self.chain(name)
        return [arg for stage in chain for kw, arg in stage.instructions if kw == keyword]

    def copied_from(self, name: str) -> set[str]:
        sources = set()
        for copy in self.instructions(name, "COPY"):
            sources |= set(re.findall(r"--from=(\S+)", copy))
        return sources


def parse() -> Dockerfile:
    lines, pending = [], ""
    for raw in DOCKERFILE.read_text().splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        lines.append(pending + line)
        pending = ""
    args: dict[str, str] = {}
    stages: dict[str, Stage] = {}
    current: Stage | None = None
    for line in lines:
        keyword, _, rest = line.partition(" ")
        keyword = keyword.upper()
        if keyword == "FROM":
            words = rest.split()
            base = re.sub(r"\$\{(\w+)\}", lambda m: args[m.group(1)], words[0])
            name = words[2] if len(words) == 3 and words[1].upper() == "AS" else base
            current = stages[name] = Stage(name, base)
        elif current is None:
            assert keyword == "ARG", line
            name, _, default = rest.partition("=")
            args[name] = default
        else:
            current.instructions.append((keyword, rest.strip()))
    return Dockerfile(args, stages)


@pytest.fixture(scope="module")
def dockerfile() -> Dockerfile:
    return parse()


def test_the_targets_exist_and_full_is_the_default(dockerfile: Dockerfile) -> None:
    assert set(TARGETS) <= set(dockerfile.stages)
    # `docker build` without --target builds the last stage: every service can run from it.
    assert list(dockerfile.stages)[-1] == "full"


def test_every_base_image_is_pinned_by_digest(dockerfile: Dockerfile) -> None:
    outside = [s.base for s in dockerfile.stages.values() if s.base not in dockerfile.stages]
    assert outside
    for base in outside:
        assert re.fullmatch(r"[\w./:-]+@sha256:[0-9a-f]{64}", base), base
    # Fully qualified: podman refuses short names it has no alias for.
    assert outside[0].startswith("docker.io/library/python:3.11-slim@")


def test_uv_stays_in_the_build_stages(dockerfile: Dockerfile) -> None:
    for target in TARGETS:
        runtime = [s for s in dockerfile.chain(target) if s.base not in dockerfile.stages]
        assert [s.name for s in runtime] == ["runtime"], target
        for stage in dockerfile.chain(target):
            for keyword, argument in stage.instructions:
                if keyword == "RUN":
                    assert "uv" not in shlex.split(argument), (stage.name, argument)
        # What comes from the build stages is the virtualenv, nothing else.
        for copy in dockerfile.instructions(target, "COPY"):
            assert re.fullmatch(r"--from=venv-\w+ /opt/meterline /opt/meterline", copy), copy


def sync_commands(dockerfile: Dockerfile, stage: str) -> list[list[str]]:
    return [
        shlex.split(run)
        for run in dockerfile.instructions(stage, "RUN")
        if run.startswith("uv sync")
    ]


def installs_embedded(command: list[str]) -> bool:
    return "--all-extras" in command or ("--extra", "embedded") in itertools.pairwise(command)


def test_only_the_full_image_installs_the_embedded_engine(dockerfile: Dockerfile) -> None:
    [gateway_venv] = dockerfile.copied_from("gateway")
    [full_venv] = dockerfile.copied_from("full")
    gateway, full = sync_commands(dockerfile, gateway_venv), sync_commands(dockerfile, full_venv)
    assert gateway and full
    assert not any(installs_embedded(c) for c in gateway), gateway
    assert all(installs_embedded(c) for c in full), full
    # Both exactly as uv.lock pins them, without the dev tools (pytest, mypy, the SDKs).
    for command in gateway + full:
        assert "--frozen" in command and "--no-dev" in command, command


def test_healthcheck_user_and_labels(dockerfile: Dockerfile) -> None:
    for target in TARGETS:
        [healthcheck] = dockerfile.instructions(target, "HEALTHCHECK")
        exec_form = healthcheck[healthcheck.index("CMD ") + 4 :]
        command = [part.strip().strip('"') for part in exec_form.strip("[]").split('", "')]
        # The slim base has no curl or wget: Python's standard library asks.
        assert command[:2] == ["python", "-c"], command
        assert "urllib.request.urlopen" in command[2] and "timeout=" in command[2]
        env = " ".join(dockerfile.instructions(target, "ENV"))
        assert "HEALTHCHECK_URL=http://127.0.0.1:8080/healthz" in env

        user = dockerfile.instructions(target, "USER")[-1]
        assert user.split(":")[0] not in {"root", "0"}, user
        runs = " ".join(dockerfile.instructions(target, "RUN"))
        assert re.search(rf"useradd --uid {user.split(':')[0]}\b", runs), runs

        labels = " ".join(dockerfile.instructions(target, "LABEL"))
        named = set(re.findall(r"(org\.opencontainers\.image\.[\w.]+)=", labels))
        assert named >= OCI_LABELS, named


def test_the_build_context_holds_only_what_is_copied(dockerfile: Dockerfile) -> None:
    patterns = [
        line.strip()
        for line in DOCKERIGNORE.read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    # Everything out, then back in only what the build copies.
    assert patterns[0] == "*"
    included = {p[1:].rstrip("/") for p in patterns if p.startswith("!")}
    copied = {
        word.rstrip("/")
        for stage in dockerfile.stages.values()
        for keyword, argument in stage.instructions
        if keyword == "COPY" and "--from=" not in argument
        for word in argument.split()[:-1]
    }
    assert copied == included
    for source in copied:
        assert (REPO / source).exists(), source
    for kept_out in (".venv", ".cache", "var", ".git", "tests", "node_modules"):
        assert kept_out not in included


@pytest.fixture(scope="module")
def gateway_install(dockerfile: Dockerfile, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The gateway stage's last `uv sync`, run into a fresh virtualenv here."""
    uv = os.environ.get("UV") or shutil.which("uv")
    if uv is None:
        pytest.fail("uv is needed to install the gateway: run the tests with `make test`")
    [venv_stage] = dockerfile.copied_from("gateway")
    command = sync_commands(dockerfile, venv_stage)[-1]
    venv = tmp_path_factory.mktemp("gateway") / "venv"
    env = {**os.environ, "UV_PROJECT_ENVIRONMENT": str(venv)}
    env.pop("VIRTUAL_ENV", None)
    subprocess.run(
        # uv keeps a built wheel of this project by version: rebuild it from this tree.
        [uv, *command[1:], "--refresh-package", "meterline"],
        cwd=REPO,
        env=env,
        check=True,
        capture_output=True,
        timeout=600,
    )
    return venv


def test_the_gateway_install_has_no_chdb_and_runs_the_ingress(
    gateway_install: Path, tmp_path: Path
) -> None:
    python = gateway_install / "bin" / "python"
    probe = (
        "import importlib.util, sys\n"
        "assert importlib.util.find_spec('chdb') is None, 'chdb is installed'\n"
        "import meterline.ingress.app, meterline.ingress.publishing.kafka, meterline.cli\n"
        "from meterline.common.clickhouse import EmbeddedEngineMissing, connect\n"
        "try:\n"
        "    connect('chdb:///nonexistent', 'meterline')\n"
        "except EmbeddedEngineMissing as error:\n"
        "    print(error)\n"
    )
    result = subprocess.run(
        [str(python), "-c", probe], cwd=tmp_path, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert "install meterline[embedded], or set CLICKHOUSE_URL" in result.stdout

    meterline = gateway_install / "bin" / "meterline"
    config = tmp_path / "meterline.toml"
    subprocess.run([str(meterline), "init", "--config", str(config)], check=True, timeout=60)
    port = free_port()
    env = {
        "PATH": os.environ["PATH"],
        "METERLINE_CONFIG_FILE": str(config),
        "METERLINE_DATA_DIR": str(tmp_path / "data"),
        # Nothing listens there: the gateway spools, and serves.
        "KAFKA_BOOTSTRAP_SERVERS": f"127.0.0.1:{free_port()}",
    }
    log = tmp_path / "ingress.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [str(meterline), "ingress", "--port", str(port)], env=env, stdout=out, stderr=out
        )
    try:
        deadline = time.monotonic() + 60
        status = None
        while status is None and time.monotonic() < deadline:
            assert proc.poll() is None, log.read_text()[-4000:]
            try:
                status = httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code
            except httpx.HTTPError:
                time.sleep(0.2)
        assert status == 200, log.read_text()[-4000:]
    finally:
        proc.terminate()
        proc.wait(30)
