from __future__ import annotations

from pydantic import AliasChoices, Field, SecretStr
from pydantic_settings import SettingsConfigDict

from meterline.common.settings import CommonSettings


def _env(name: str) -> AliasChoices:
    return AliasChoices(f"METERLINE_QUERY_{name}")


class QuerySettings(CommonSettings):
    """Shared settings keep the METERLINE_ prefix (one configuration file and warehouse for
    every service); the query service's own carry METERLINE_QUERY_."""

    model_config = SettingsConfigDict(env_prefix="METERLINE_", extra="ignore")

    host: str = Field(default="127.0.0.1", validation_alias=_env("HOST"))
    port: int = Field(default=8081, ge=1, le=65535, validation_alias=_env("PORT"))
    cursor_secret: SecretStr | None = Field(default=None, validation_alias=_env("CURSOR_SECRET"))
    """Signs pagination cursors. Unset: a random secret per process, so cursors stop working
    after a restart and across replicas; set it when running several query replicas."""
    clickhouse_pool_size: int = Field(default=4, ge=1, le=64, validation_alias=_env("POOL_SIZE"))
    """ClickHouse clients kept open; one query runs on a client at a time."""
    query_timeout_seconds: float = Field(
        default=30.0, gt=0, validation_alias=_env("TIMEOUT_SECONDS")
    )
    max_limit: int = Field(default=10_000, ge=1, validation_alias=_env("MAX_LIMIT"))
    """Largest page a caller may ask for with ``limit``."""
    max_rows: int = Field(default=100_000, ge=1, validation_alias=_env("MAX_ROWS"))
    """Largest report returned without ``limit``; a bigger one asks the caller to page."""
