"""A Kafka broker of the fault tests' own: they crash and restart it, which the session's
shared broker must never see."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from tests.faults.harness import stop_leftovers
from tests.support.kafka_broker import LocalKafkaBroker


@pytest.fixture(autouse=True)
def no_process_outlives_its_test() -> Iterator[None]:
    yield
    stop_leftovers()


@pytest.fixture(scope="module")
def own_broker() -> Iterator[LocalKafkaBroker]:
    if os.environ.get("KAFKA_BOOTSTRAP_SERVERS"):
        pytest.skip("crashes a broker: needs the local broker, not KAFKA_BOOTSTRAP_SERVERS")
    broker = LocalKafkaBroker()
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()
