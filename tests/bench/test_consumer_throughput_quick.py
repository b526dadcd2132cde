"""The consumer throughput benchmark at its quick size, so the harness cannot rot: it runs
the real pipeline against the real broker and chDB, and its numbers must be plausible."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench import consumer_throughput

pytestmark = [pytest.mark.kafka, pytest.mark.clickhouse]


def test_quick_run_writes_plausible_results(
    tmp_path: Path, kafka_bootstrap: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The session's broker, rather than a second one started by the benchmark.
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", kafka_bootstrap)
    assert consumer_throughput.main(["--quick", "--out", str(tmp_path)]) == 0

    document = json.loads((tmp_path / "consumer_throughput.json").read_text())
    assert document["benchmark"] == "consumer_throughput"
    assert document["machine"]["cpus"] >= 1
    events = document["params"]["events"]
    assert events >= 1_000
    assert [r["batch_rows"] for r in document["results"]] == document["params"]["batch_sizes"]
    for result in document["results"]:
        assert 0 < result["events_per_second_min"] <= result["events_per_second_median"]
        assert result["events_per_second_median"] <= result["events_per_second_max"]
        assert result["share_of_engine_ceiling"] > 0
        assert result["peak_rss_mib_max"] > 10
        for run in result["runs"]:
            assert run["events"] == events
            # Every run counted its rows in ClickHouse; the rate follows from the clock.
            assert run["events_per_second"] == pytest.approx(events / run["seconds"], rel=0.01)

    ceiling = json.loads((tmp_path / "engine_ceiling.json").read_text())
    assert ceiling["results"] and all(r["rows_per_second"] > 0 for r in ceiling["results"])
    markdown = (tmp_path / "consumer_throughput.md").read_text()
    assert "events/s" in markdown and "Target" in markdown
    assert "rows/s" in (tmp_path / "engine_ceiling.md").read_text()
