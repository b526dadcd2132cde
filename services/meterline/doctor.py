"""``meterline doctor``: checks what the services need, one line per check.

Each line is ``OK``, ``WARN`` or ``FAIL``, what was checked and, unless it is OK, what to
fix. The exit status is 1 when a check fails, 0 otherwise. Nothing is changed: no database
created, no migration applied, no key sent to a provider."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Literal

import httpx

from meterline.common.config import ConfigurationError, GatewayConfig, load_config
from meterline.common.migrations import load_migrations
from meterline.common.preflight import StartupFailure, ensure_chdb_free, redact_url
from meterline.common.settings import CommonSettings

Status = Literal["OK", "WARN", "FAIL"]


@dataclass(frozen=True)
class Check:
    status: Status
    what: str

    def __str__(self) -> str:
        return f"{self.status:<4} {self.what}"


def check_config(settings: CommonSettings) -> tuple[Check, GatewayConfig | None]:
    try:
        config = load_config(settings.config_file)
    except ConfigurationError as error:
        return Check("FAIL", f"configuration: {error}"), None
    return Check(
        "OK",
        f"configuration {settings.config_file}: {len(config.providers)} providers, "
        f"{len(config.teams)} teams",
    ), config


def check_kafka(settings: CommonSettings, timeout: float) -> Iterator[Check]:
    servers = settings.kafka_bootstrap_servers
    if not servers:
        yield Check("OK", "kafka: not configured (embedded mode, all-in-one only)")
        return
    reached = []
    for server in servers.split(","):
        host, _, port = server.strip().rpartition(":")
        try:
            with socket.create_connection((host.strip("[]"), int(port)), timeout=timeout):
                reached.append(server.strip())
        except (OSError, ValueError) as error:
            reason = getattr(error, "strerror", None) or error
            yield Check(
                "FAIL",
                f"kafka: cannot reach {server.strip()} ({reason}): start the broker or fix "
                "KAFKA_BOOTSTRAP_SERVERS",
            )
    if reached:
        yield Check("OK", f"kafka: {', '.join(reached)} reachable")


def check_clickhouse(settings: CommonSettings, timeout: float) -> Iterator[Check]:
    from clickhouse_connect.driver.exceptions import ClickHouseError

    from meterline.common.clickhouse import connect, quote_identifier

    url = settings.resolved_clickhouse_url()
    shown = redact_url(url)
    try:
        ensure_chdb_free(url)
        client = connect(url, connect_timeout=timeout, send_receive_timeout=timeout)
    except StartupFailure as error:
        yield Check("FAIL", f"clickhouse: {error}")
        return
    except ClickHouseError as error:
        first = str(error).splitlines()[0] if str(error) else type(error).__name__
        yield Check("FAIL", f"clickhouse: cannot reach {shown}: {first}: check CLICKHOUSE_URL")
        return
    yield Check("OK", f"clickhouse: {shown} reachable")
    database = settings.clickhouse_database
    tables = client.query(
        "SELECT count() FROM system.tables WHERE database = {db:String} "
        "AND name = 'schema_migrations'",
        parameters={"db": database},
    ).result_rows[0][0]
    applied: set[int] = set()
    if tables:
        applied = {
            int(row[0])
            for row in client.query(
                f"SELECT DISTINCT version FROM {quote_identifier(database)}.schema_migrations"
            ).result_rows
        }
    missing = [m.name for m in load_migrations() if m.version not in applied]
    if missing:
        yield Check(
            "FAIL",
            f"migrations: {len(missing)} not applied in database {database} "
            f"({', '.join(missing[:3])}{', ...' if len(missing) > 3 else ''}): "
            "run `meterline migrate`",
        )
    else:
        yield Check("OK", f"migrations: all {len(applied)} applied in database {database}")


def check_providers(config: GatewayConfig, timeout: float) -> Iterator[Check]:
    with httpx.Client(timeout=timeout) as client:
        for provider in config.providers:
            name = f"provider {provider.slug}"
            if provider.api_key_env and not provider.system_key():
                yield Check(
                    "WARN",
                    f"{name}: key variable {provider.api_key_env} is not set: set it, or "
                    "only BYOK keys will work",
                )
            try:
                # No key is sent: any answer, 401 included, means the address is right.
                answer = client.head(provider.base_url)
            except httpx.HTTPError as error:
                yield Check(
                    "FAIL",
                    f"{name}: {provider.base_url} unreachable ({type(error).__name__}: "
                    f"{error}): check its base_url and the network",
                )
                continue
            yield Check("OK", f"{name}: {provider.base_url} reachable (HTTP {answer.status_code})")


def run(timeout: float) -> list[Check]:
    settings = CommonSettings()
    config_check, config = check_config(settings)
    checks = [config_check]
    checks += check_kafka(settings, timeout)
    checks += check_clickhouse(settings, timeout)
    if config is not None:
        checks += check_providers(config, timeout)
    return checks


def main(timeout: float = 3.0) -> int:
    failed = False
    for check in run(timeout):
        print(check, flush=True)
        failed = failed or check.status == "FAIL"
    return 1 if failed else 0
