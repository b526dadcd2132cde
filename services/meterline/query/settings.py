from __future__ import annotations

from pydantic import Field, SecretStr
from pydantic_settings import SettingsConfigDict

from meterline.common.settings import CommonSettings


class QuerySettings(CommonSettings):
    """Every variable is ``METERLINE_`` and the setting's name, as for every service; the
    query service's own settings are named ``query_*``, so that they stay apart from the
    ingress's in the all-in-one, which reads both from one environment."""

    model_config = SettingsConfigDict(env_prefix="METERLINE_", extra="ignore")

    query_host: str = "127.0.0.1"
    query_port: int = Field(default=8081, ge=1, le=65535)
    query_cursor_secret: SecretStr | None = None
    """Signs pagination cursors. Unset: a random secret per process, so cursors stop working
    after a restart and across replicas; set it when running several query replicas."""
    query_pool_size: int = Field(default=4, ge=1, le=64)
    """ClickHouse clients kept open; one query runs on a client at a time."""
    query_timeout_seconds: float = Field(default=30.0, gt=0)
    query_max_limit: int = Field(default=10_000, ge=1)
    """Largest page a caller may ask for with ``limit``."""
    query_max_rows: int = Field(default=100_000, ge=1)
    """Largest report returned without ``limit``; a bigger one asks the caller to page."""
