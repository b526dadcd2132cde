"""A provider whose key variable is unset is named at start and when a request is routed to
it, once a minute rather than once per request."""

from __future__ import annotations

import logging

import pytest

from meterline.common.config import GatewayConfig, ProviderConfig
from meterline.ingress.credentials import Credentials


def test_the_unset_key_variable_is_named_at_start_and_on_routing(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("UNSET_PROVIDER_KEY", raising=False)
    monkeypatch.setenv("SET_PROVIDER_KEY", "sk-set")
    config = GatewayConfig(
        providers=[
            ProviderConfig(slug="a", base_url="http://a", api_key_env="UNSET_PROVIDER_KEY"),
            ProviderConfig(slug="b", base_url="http://b", api_key_env="SET_PROVIDER_KEY"),
        ]
    )
    with caplog.at_level(logging.WARNING, "meterline.ingress.credentials"):
        credentials = Credentials(config)
        started = [r.getMessage() for r in caplog.records]
        caplog.clear()
        for _ in range(5):
            credentials.for_provider("a", None, {})
            credentials.for_provider("b", None, {})
    assert len(started) == 1 and "provider a" in started[0]
    assert "UNSET_PROVIDER_KEY is not set" in started[0]
    routed = [r.getMessage() for r in caplog.records]
    assert len(routed) == 1
    assert "provider a without a key" in routed[0] and "UNSET_PROVIDER_KEY" in routed[0]
    assert "sk-set" not in " ".join(started + routed)
