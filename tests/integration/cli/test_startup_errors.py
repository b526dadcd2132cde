"""Bad configuration and start-up failures, as an operator meets them: the real command in a
subprocess, one line on stderr saying what is wrong, no traceback, exit status 2 for
configuration and 1 for run time."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from meterline.processes import free_port, meterline_process, wait_http


def meterline(args: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "meterline.cli", *args],
        env={**os.environ, **env},
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
    )


def one_line(done: subprocess.CompletedProcess[str]) -> str:
    assert "Traceback" not in done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    return lines[0]


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    config = tmp_path / "meterline.toml"
    done = meterline(["init", "--config", str(config)], {}, tmp_path)
    assert done.returncode == 0, done.stderr
    return tmp_path


def base_env(workdir: Path) -> dict[str, str]:
    return {
        "METERLINE_CONFIG_FILE": str(workdir / "meterline.toml"),
        "METERLINE_DATA_DIR": str(workdir / "data"),
        "CLICKHOUSE_URL": "",
        "KAFKA_BOOTSTRAP_SERVERS": "",
    }


def test_invalid_toml_names_the_file_line_and_column(workdir: Path) -> None:
    bad = workdir / "bad.toml"
    bad.write_text('[[providers]]\nslug = "x"\nbase_url = "http://a\n')
    done = meterline(
        ["all-in-one"], {**base_env(workdir), "METERLINE_CONFIG_FILE": str(bad)}, workdir
    )
    assert done.returncode == 2
    line = one_line(done)
    assert str(bad) in line and "line 3" in line and "column" in line and "invalid TOML" in line


def test_a_configuration_that_does_not_validate_says_where(workdir: Path) -> None:
    bad = workdir / "bad.toml"
    bad.write_text('[[teams]]\nid = "acme"\n[[teams.keys]]\nname = "k"\nsha256 = "nothex"\n')
    done = meterline(["query"], {**base_env(workdir), "METERLINE_CONFIG_FILE": str(bad)}, workdir)
    assert done.returncode == 2
    line = one_line(done)
    assert str(bad) in line and "teams[0].keys[0].sha256" in line


def test_a_bad_setting_names_the_variable_and_what_it_expects(workdir: Path) -> None:
    done = meterline(
        ["all-in-one"], {**base_env(workdir), "METERLINE_MAX_BATCH_ROWS": "abc"}, workdir
    )
    assert done.returncode == 2
    line = one_line(done)
    assert "METERLINE_MAX_BATCH_ROWS='abc'" in line and "valid integer" in line


def test_a_bad_log_format_is_a_configuration_error(workdir: Path) -> None:
    done = meterline(["migrate"], {**base_env(workdir), "METERLINE_LOG_FORMAT": "xml"}, workdir)
    assert done.returncode == 2
    assert "METERLINE_LOG_FORMAT" in one_line(done)


def test_an_unreachable_clickhouse_for_migrate_is_named_without_its_password(
    workdir: Path,
) -> None:
    url = f"http://default:hunter2@127.0.0.1:{free_port()}"
    done = meterline(["migrate"], {**base_env(workdir), "CLICKHOUSE_URL": url}, workdir)
    assert done.returncode == 1
    line = one_line(done)
    assert "cannot reach ClickHouse at http://default:***@127.0.0.1:" in line
    assert "hunter2" not in done.stderr + done.stdout


def test_a_second_process_on_the_same_chdb_directory(workdir: Path) -> None:
    env = {**os.environ, **base_env(workdir)}
    port = free_port()
    log = workdir / "first.log"
    with meterline_process(["all-in-one", "--port", str(port)], env, log) as first:
        wait_http(f"http://127.0.0.1:{port}/healthz", first, log)
        for args in (["migrate"], ["all-in-one", "--port", str(free_port())]):
            done = meterline(args, base_env(workdir), workdir)
            assert done.returncode == 1
            line = one_line(done)
            assert f"{workdir / 'data' / 'chdb'} is in use by another process" in line
            assert f"pid {first.pid}" in line


def test_json_logs_from_the_service_and_uvicorn_and_the_unset_key_warning(
    workdir: Path,
) -> None:
    env = {**os.environ, **base_env(workdir), "METERLINE_LOG_FORMAT": "json"}
    env.pop("OPENAI_API_KEY", None)
    port = free_port()
    log = workdir / "json.log"
    with meterline_process(["all-in-one", "--port", str(port)], env, log) as proc:
        wait_http(f"http://127.0.0.1:{port}/healthz", proc, log)
    records = [json.loads(line) for line in log.read_text().splitlines() if line.strip()]
    assert all({"time", "level", "logger", "message"} <= set(r) for r in records)
    assert any(r["logger"].startswith("uvicorn") for r in records)
    warnings = [r["message"] for r in records if r["level"] == "WARNING"]
    assert any("OPENAI_API_KEY is not set" in m for m in warnings)
