"""``meterline report`` through the installed console script, against a query service on
loopback reading the warehouse: every option reaches it, and --help explains them."""

from __future__ import annotations

import csv
import io
import subprocess
import sys
import uuid
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import pytest
from clickhouse_connect.driver.client import Client

from meterline.common.clickhouse import RAW_COLUMNS, connect
from meterline.common.config import GatewayConfig, GatewayKey, TeamConfig, hash_key
from meterline.common.migrations import migrate
from meterline.common.pricing import StaticPrices
from meterline.consumer.enrich import Enricher
from meterline.query.app import create_app
from meterline.query.report_client import build_parser
from meterline.query.settings import QuerySettings
from tests.support.events import usage_event
from tests.support.gateway import ServerThread
from tests.support.prices import RATES

pytestmark = pytest.mark.clickhouse

KEY = "ml_acme_key_for_the_report_cli"
CONFIG = GatewayConfig(
    teams=[TeamConfig(id="acme", keys=[GatewayKey(name="reports", sha256=hash_key(KEY))])]
)
METERLINE = Path(sys.executable).parent / "meterline"


def meterline(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(METERLINE), *args], capture_output=True, text=True, timeout=60, check=False
    )


@pytest.fixture(scope="module")
def query_url(clickhouse_url: str) -> Iterator[str]:
    database = f"test_{uuid.uuid4().hex[:12]}"
    client: Client = connect(clickhouse_url, database)
    migrate(client)
    enricher = Enricher(StaticPrices({("openai", "gpt-x"): RATES}), CONFIG)
    events = [
        usage_event(),
        usage_event(),
        usage_event(model="gpt-y", model_requested="openai/gpt-y"),
    ]
    client.insert("usage_events", [enricher.row(e) for e in events], column_names=RAW_COLUMNS)
    app = create_app(
        QuerySettings(), client_factory=lambda: connect(clickhouse_url, database), config=CONFIG
    )
    try:
        with ServerThread(app) as server:
            yield server.url
    finally:
        client.command(f"DROP DATABASE IF EXISTS {database}")


def test_help_lists_every_option_with_a_sentence() -> None:
    done = meterline("report", "--help")
    assert done.returncode == 0, done.stderr
    options = [a for a in build_parser()._actions if a.option_strings != ["-h", "--help"]]
    assert len(options) == 19
    for action in options:
        assert action.help and len(action.help.split()) >= 3, action.option_strings
        assert action.option_strings[0] in done.stdout
        # The sentence is printed (argparse wraps it, so its first words are checked).
        assert " ".join(action.help.split()[:2]).split("%")[0].strip() in " ".join(
            done.stdout.split()
        ), action.option_strings


def test_a_csv_report_by_model_through_the_console_script(query_url: str) -> None:
    done = meterline(
        "report", "--url", query_url, "--key", KEY, "--start", "2026-03-02",
        "--end", "2026-03-02", "--group-by", "model", "--format", "csv",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    rows = {row["model"]: row for row in csv.DictReader(io.StringIO(done.stdout))}
    assert set(rows) == {"gpt-x", "gpt-y"}
    assert rows["gpt-x"]["request_count"] == "2"
    # 100 input and 10 output tokens each, at the test rates of $2 and $8 per million.
    assert Decimal(rows["gpt-x"]["market_cost"]) == Decimal("0.00056")
    assert rows["gpt-y"]["unpriced_request_count"] == "1"


def test_filters_take_the_model_as_requests_name_it(query_url: str) -> None:
    done = meterline(
        "report", "--url", query_url, "--key", KEY, "--start", "2026-03-02",
        "--end", "2026-03-02", "--group-by", "model", "--model", "openai/gpt-y",
        "--format", "json",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert '"model":"gpt-y"' in done.stdout and "gpt-x" not in done.stdout


def test_a_refusal_and_an_unreachable_service_have_their_exit_status(query_url: str) -> None:
    refused = meterline("report", "--url", query_url, "--key", "ml_wrong", "--group-by", "model")
    assert refused.returncode == 1 and "401" in refused.stderr
    unreachable = meterline("report", "--url", "http://127.0.0.1:9", "--key", KEY)
    assert unreachable.returncode == 2 and "cannot reach" in unreachable.stderr
