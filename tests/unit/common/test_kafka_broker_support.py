"""The test broker's cluster ids are ones Kafka's storage tool accepts."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from tests.support import kafka_broker


def test_a_cluster_id_never_starts_with_a_dash(monkeypatch: pytest.MonkeyPatch) -> None:
    # 0xF8 encodes to "-" first in URL-safe base64: kafka-storage would take it for an option.
    drawn: Iterator[uuid.UUID] = iter(
        [uuid.UUID(bytes=b"\xf8" + bytes(15)), uuid.UUID(bytes=b"\x01" + bytes(15))]
    )
    monkeypatch.setattr("uuid.uuid4", lambda: next(drawn))
    cluster_id = kafka_broker._cluster_id()
    assert cluster_id == "AQAAAAAAAAAAAAAAAAAAAA"
    assert len(cluster_id) == 22
