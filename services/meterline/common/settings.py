"""Process settings from the environment (prefix METERLINE_, plus the two standard
variables KAFKA_BOOTSTRAP_SERVERS and CLICKHOUSE_URL). Bad values fail at start-up."""

from __future__ import annotations

from pathlib import Path

from pydantic import AliasChoices, Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_DATA_DIR = Path("var")


class CommonSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="METERLINE_", extra="ignore")

    config_file: Path = Path("meterline.toml")
    data_dir: Path = DEFAULT_DATA_DIR
    clickhouse_url: str | None = Field(
        default=None, validation_alias=AliasChoices("CLICKHOUSE_URL", "METERLINE_CLICKHOUSE_URL")
    )
    """chdb:///abs/path (embedded) or http(s)://user:password@host:8123. Unset: embedded
    chDB under data_dir."""
    clickhouse_database: str = "meterline"
    kafka_bootstrap_servers: str | None = Field(
        default=None,
        validation_alias=AliasChoices(
            "KAFKA_BOOTSTRAP_SERVERS", "METERLINE_KAFKA_BOOTSTRAP_SERVERS"
        ),
    )
    """Unset: the in-process bus (all-in-one only)."""
    usage_topic: str = "usage-events"
    dead_letter_topic: str = "usage-events-dlq"
    log_level: str = "INFO"
    metrics_team_label: bool = False
    """Label request metrics by team too: one series per team and surface, provider and
    status class, so only for a bounded number of teams."""
    internal_token: SecretStr | None = None
    """Shared by the ingresses and the query service: ingresses present it to read the
    hard budgets' committed spend (``/internal/v1/budget-spend``). Unset: the query
    service answers no internal path."""

    def resolved_clickhouse_url(self) -> str:
        if self.clickhouse_url:
            return self.clickhouse_url
        return f"chdb://{(self.data_dir / 'chdb').resolve()}"
