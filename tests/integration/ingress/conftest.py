"""The gateway fixtures: one ingress in front of its own simulator per test module."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.gateway import Gateway, serve_gateway


@pytest.fixture(scope="module")
def gateway() -> Iterator[Gateway]:
    with serve_gateway() as served:
        yield served


@pytest.fixture
def gw(gateway: Gateway) -> Gateway:
    """The module's gateway, with no events and no recorded requests yet."""
    gateway.publisher.events.clear()
    gateway.upstream.received.clear()
    gateway.upstream.inject.clear()
    return gateway
