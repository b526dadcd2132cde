"""``meterline all-in-one`` settings for tests: embedded (the local log in ``data_dir``), on
the test's warehouse."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from meterline.all_in_one.app import AllInOneSettings
from meterline.all_in_one.settings import LocalLogSettings
from meterline.consumer.settings import ConsumerSettings
from meterline.ingress.settings import IngressSettings
from meterline.query.settings import QuerySettings


def embedded_settings(
    data_dir: Path, clickhouse_url: str, clickhouse_database: str, **consumer: Any
) -> AllInOneSettings:
    """``consumer``: overrides of the consumer's settings (batch age, breaker, ...)."""
    shared: dict[str, Any] = {
        "clickhouse_url": clickhouse_url,
        "clickhouse_database": clickhouse_database,
        "data_dir": data_dir,
        "kafka_bootstrap_servers": None,
    }
    return AllInOneSettings(
        IngressSettings(**shared),
        ConsumerSettings(**shared, **consumer),
        QuerySettings(**shared),
        LocalLogSettings(**shared),
    )
