"""Migration numbers may have gaps, and a number below the highest applied one that
arrives later (two branches numbering their migrations apart: 0010 released before 0009)
is applied by the next run, once, after the others."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from meterline.common.clickhouse import connect
from meterline.common.migrations import migrate, migrations_dir

pytestmark = pytest.mark.clickhouse


def test_a_gap_is_accepted_and_filled_later(clickhouse_url: str, tmp_path: Path) -> None:
    for path in migrations_dir().glob("*.sql"):
        if not path.name.startswith("0009_"):
            (tmp_path / path.name).write_text(path.read_text())
    database = f"test_{uuid.uuid4().hex[:12]}"
    client = connect(clickhouse_url, database)
    try:
        applied = migrate(client, tmp_path)
        assert "0010_budget_alerts" in applied
        assert not any(name.startswith("0009_") for name in applied)

        (tmp_path / "0009_from_another_branch.sql").write_text(
            "CREATE TABLE IF NOT EXISTS later_table (x UInt8) ENGINE = MergeTree ORDER BY x;\n"
        )
        assert migrate(client, tmp_path) == ["0009_from_another_branch"]
        assert migrate(client, tmp_path) == []
        assert client.command("EXISTS TABLE later_table") == 1
    finally:
        client.command(f"DROP DATABASE IF EXISTS {database}")
