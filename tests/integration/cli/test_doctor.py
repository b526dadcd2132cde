"""``meterline doctor`` against the embedded engine, a real Kafka broker and a provider (the
simulator), and with each missing."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from meterline.processes import free_port, meterline_process, wait_http


def doctor(env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "meterline.cli", "doctor", "--timeout", "2"],
        env={**os.environ, **env},
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
    )


def status_of(output: str, what: str) -> str:
    [line] = [line for line in output.splitlines() if line[5:].startswith(what)]
    return line


def write_config(path: Path, simulator_url: str) -> None:
    path.write_text(
        '[[providers]]\nslug = "simulator"\nwire = "openai"\n'
        f'base_url = "{simulator_url}"\napi_key_env = "DOCTOR_TEST_KEY"\n'
    )


def test_everything_in_order_then_each_thing_missing(tmp_path: Path, kafka_bootstrap: str) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}/v1"
    write_config(tmp_path / "meterline.toml", url)
    env = {
        "METERLINE_CONFIG_FILE": str(tmp_path / "meterline.toml"),
        "METERLINE_DATA_DIR": str(tmp_path / "data"),
        "CLICKHOUSE_URL": "",
        "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
        "DOCTOR_TEST_KEY": "sk-test",
    }
    migrated = subprocess.run(
        [sys.executable, "-m", "meterline.cli", "migrate"],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
    )
    assert migrated.returncode == 0, migrated.stderr
    log = tmp_path / "simulator.log"
    with meterline_process(["simulator", "--port", str(port)], {**os.environ}, log) as sim:
        wait_http(f"http://127.0.0.1:{port}/healthz", sim, log)
        done = doctor(env, tmp_path)
        assert done.returncode == 0, done.stdout
        assert status_of(done.stdout, "configuration").startswith("OK")
        assert status_of(done.stdout, "kafka").startswith(f"OK   kafka: {kafka_bootstrap}")
        assert status_of(done.stdout, "clickhouse").startswith("OK")
        assert status_of(done.stdout, "migrations").startswith("OK   migrations: all")
        assert status_of(done.stdout, "provider simulator").startswith("OK")
        assert "FAIL" not in done.stdout and "WARN" not in done.stdout

        # The key variable unset: a warning, not a failure.
        unset = doctor({**env, "DOCTOR_TEST_KEY": ""}, tmp_path)
        assert unset.returncode == 0
        assert "WARN provider simulator: key variable DOCTOR_TEST_KEY is not set" in unset.stdout

    # No broker, no provider, an empty warehouse.
    absent = f"127.0.0.1:{free_port()}"
    broken = doctor(
        {**env, "KAFKA_BOOTSTRAP_SERVERS": absent, "METERLINE_DATA_DIR": str(tmp_path / "new")},
        tmp_path,
    )
    assert broken.returncode == 1
    assert status_of(broken.stdout, "kafka").startswith(f"FAIL kafka: cannot reach {absent}")
    assert "run `meterline migrate`" in status_of(broken.stdout, "migrations")
    assert status_of(broken.stdout, "provider simulator").startswith(
        f"FAIL provider simulator: {url} unreachable"
    )
    assert "Traceback" not in broken.stderr


def test_embedded_mode_skips_kafka_and_a_bad_file_fails(tmp_path: Path) -> None:
    config = tmp_path / "meterline.toml"
    config.write_text("[[providers]\n")
    done = doctor(
        {
            "METERLINE_CONFIG_FILE": str(config),
            "METERLINE_DATA_DIR": str(tmp_path / "data"),
            "CLICKHOUSE_URL": "",
            "KAFKA_BOOTSTRAP_SERVERS": "",
        },
        tmp_path,
    )
    assert done.returncode == 1
    assert status_of(done.stdout, "configuration").startswith(f"FAIL configuration: {config}")
    assert "line 1" in done.stdout
    assert status_of(done.stdout, "kafka").startswith("OK   kafka: not configured")
