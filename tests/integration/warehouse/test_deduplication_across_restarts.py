"""A batch inserted again with its deduplication token after the embedded engine restarted
(a consumer that crashed after its insert, before its commit) counts once in the raw table
and in every rollup. The engine holds one process per data directory, so each insert runs
in a process of its own."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.clickhouse

INSERT_ONCE = """
import json, sys, uuid
import clickhouse_connect
from meterline.common.clickhouse import RAW_COLUMNS
from meterline.common.config import GatewayConfig, TeamConfig
from meterline.common.migrations import migrate
from meterline.common.pricing import StaticPrices
from meterline.consumer.enrich import Enricher
from tests.support.events import usage_event

client = clickhouse_connect.get_client(dsn="chdb://" + sys.argv[1])
migrate(client)
enricher = Enricher(StaticPrices({}), GatewayConfig(teams=[TeamConfig(id="acme")]))
rows = [enricher.row(usage_event(event_id=str(uuid.UUID(int=n + 1)))) for n in range(10)]
client.insert(
    "usage_events",
    rows,
    column_names=list(RAW_COLUMNS),
    settings={
        "insert_deduplication_token": "usage-events/0/0-9",
        "deduplicate_blocks_in_dependent_materialized_views": 1,
    },
)
views = [
    name
    for (name,) in client.query(
        "SELECT name FROM system.tables WHERE database = currentDatabase()"
        " AND engine = 'MaterializedView'"
    ).result_rows
]
counts = {"usage_events": client.query("SELECT count() FROM usage_events").result_rows[0][0]}
for view in views:
    target = view.removesuffix("_mv")
    column = "count()" if target.startswith("usage_by_tag") else "sum(request_count)"
    counts[target] = client.query(f"SELECT {column} FROM {target}").result_rows[0][0]
print(json.dumps(counts))
"""


def insert_in_a_new_process(directory: Path) -> dict[str, int]:
    root = Path(__file__).resolve().parents[3]
    done = subprocess.run(
        [sys.executable, "-c", INSERT_ONCE, str(directory)],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    counts: dict[str, int] = json.loads(done.stdout.strip().splitlines()[-1])
    return counts


def test_a_batch_inserted_again_after_a_restart_counts_once_everywhere(tmp_path: Path) -> None:
    first = insert_in_a_new_process(tmp_path / "chdb")
    # Every rollup that counts each request once, and the per-tag ones (no tags: no rows).
    assert len(first) >= 10
    assert all(count == 10 for name, count in first.items() if not name.startswith("usage_by_tag"))
    again = insert_in_a_new_process(tmp_path / "chdb")
    assert again == first
