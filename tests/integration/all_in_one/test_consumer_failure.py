"""The all-in-one stops when its consumer stops by itself, instead of answering requests
that are no longer counted."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from meterline.all_in_one.app import AllInOne
from meterline.common.config import GatewayConfig
from tests.support.all_in_one import embedded_settings
from tests.support.gateway import ServerThread

pytestmark = [pytest.mark.clickhouse]


def test_a_consumer_stopped_by_its_circuit_breaker_stops_the_process(
    tmp_path: Path, clickhouse_url: str, clickhouse_database: str
) -> None:
    settings = embedded_settings(
        tmp_path,
        clickhouse_url,
        clickhouse_database,
        max_batch_seconds=0.2,
        dead_letter_breaker_min_messages=10,
    )
    app = AllInOne(settings, GatewayConfig())
    stopped = threading.Event()
    app.on_consumer_failure = stopped.set
    # Messages that are no usage event: every one is dead-lettered, and the breaker opens.
    for _ in range(20):
        app.bus.publish_nowait(None, b"not an Avro usage event")
    with ServerThread(app):
        assert stopped.wait(30), "the process was not told to stop"
