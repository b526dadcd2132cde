"""The ``meterline`` command: where each service listens, from its flags or its settings."""

from __future__ import annotations

from pathlib import Path

import pytest

from meterline import cli


@pytest.fixture
def served(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> list[tuple[str, int]]:
    """Where the command would have served, instead of serving."""
    config = tmp_path / "meterline.toml"
    assert cli.main(["init", "--config", str(config)]) == 0
    monkeypatch.setenv("METERLINE_CONFIG_FILE", str(config))
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:1")
    calls: list[tuple[str, int]] = []

    def serve(app: object, host: str, port: int, log_level: str) -> None:
        calls.append((host, port))

    monkeypatch.setattr(cli, "_serve", serve)
    return calls


def test_each_service_listens_where_its_settings_say(
    served: list[tuple[str, int]], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("METERLINE_HOST", "0.0.0.0")
    monkeypatch.setenv("METERLINE_PORT", "9180")
    monkeypatch.setenv("METERLINE_QUERY_HOST", "127.0.0.2")
    monkeypatch.setenv("METERLINE_QUERY_PORT", "9181")
    assert cli.main(["ingress"]) == 0
    assert cli.main(["query"]) == 0
    assert served == [("0.0.0.0", 9180), ("127.0.0.2", 9181)]


def test_the_defaults_and_the_flags(served: list[tuple[str, int]]) -> None:
    assert cli.main(["ingress"]) == 0
    assert cli.main(["query"]) == 0
    assert cli.main(["simulator"]) == 0
    assert cli.main(["query", "--host", "0.0.0.0", "--port", "7001"]) == 0
    assert served == [
        ("127.0.0.1", 8080),
        ("127.0.0.1", 8081),
        ("127.0.0.1", 8090),
        ("0.0.0.0", 7001),
    ]


def test_a_query_setting_is_read_from_its_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    from meterline.query.settings import QuerySettings

    monkeypatch.setenv("METERLINE_QUERY_MAX_ROWS", "12")
    monkeypatch.setenv("METERLINE_QUERY_POOL_SIZE", "3")
    monkeypatch.setenv("METERLINE_MAX_ROWS", "99")  # not the query service's: ignored
    settings = QuerySettings()
    assert (settings.query_max_rows, settings.query_pool_size) == (12, 3)
