"""Process settings from the environment (prefix METERLINE_, plus the two standard
variables KAFKA_BOOTSTRAP_SERVERS and CLICKHOUSE_URL). Bad values fail at start-up."""

from __future__ import annotations

from pathlib import Path

from pydantic import AliasChoices, Field, SecretStr, ValidationError
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


def settings_error(error: ValidationError) -> str | None:
    """A settings class's validation error in one line, naming each environment variable
    and what it expects; None when ``error`` is not a settings class's."""
    settings = next((c for c in _settings_classes() if c.__name__ == error.title), None)
    if settings is None:
        return None
    prefix = settings.model_config.get("env_prefix", "")
    problems = []
    for item in error.errors(include_url=False):
        field = str(item["loc"][0]) if item["loc"] else ""
        info = settings.model_fields.get(field)
        alias = info.validation_alias if info is not None else None
        if isinstance(alias, AliasChoices):
            variable = " or ".join(str(choice) for choice in alias.choices)
        else:
            variable = f"{prefix}{field}".upper()
        # The value is shown unless the setting holds a secret.
        shown = "" if info is None or _is_secret(info.annotation) else f"={item['input']!r}"
        problems.append(f"{variable}{shown}: {item['msg'].removeprefix('Value error, ')}")
    return "invalid setting " + "; ".join(problems)


def _settings_classes() -> list[type[BaseSettings]]:
    found: list[type[BaseSettings]] = []
    pending: list[type[BaseSettings]] = [BaseSettings]
    while pending:
        cls = pending.pop()
        found.append(cls)
        pending.extend(cls.__subclasses__())
    return found


def _is_secret(annotation: object) -> bool:
    return "SecretStr" in str(annotation) or annotation is SecretStr
