"""Applies ``schemas/clickhouse/NNNN_*.sql`` in order, each once, on the embedded engine or
a ClickHouse server alike.

Migrations are frozen once released: the runner records each file's checksum and refuses to
go on if an applied file has changed, since the warehouse would no longer match the code.
Every statement is idempotent (IF NOT EXISTS), so a run cut short can simply be repeated."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

from clickhouse_connect.driver.client import Client

_FILE = re.compile(r"^(\d{4})_[a-z0-9_]+\.sql$")


class MigrationError(RuntimeError):
    pass


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()

    def statements(self) -> list[str]:
        """Statements end with ``;`` at the end of a line; ``--`` comments are dropped."""
        lines = [line for line in self.sql.splitlines() if not line.lstrip().startswith("--")]
        parts = re.split(r";\s*$", "\n".join(lines), flags=re.MULTILINE)
        return [part.strip() for part in parts if part.strip()]


def migrations_dir() -> Path:
    here = Path(__file__).resolve()
    packaged = here.parents[1] / "_schemas" / "clickhouse"
    if packaged.is_dir():
        return packaged
    return here.parents[3] / "schemas" / "clickhouse"


def load_migrations(directory: Path | None = None) -> list[Migration]:
    found = []
    for path in sorted((directory or migrations_dir()).iterdir()):
        match = _FILE.match(path.name)
        if match:
            found.append(Migration(int(match.group(1)), path.stem, path.read_text()))
    versions = [m.version for m in found]
    if len(versions) != len(set(versions)):
        raise MigrationError(f"two migrations share a number: {versions}")
    return found


def migrate(client: Client, directory: Path | None = None) -> list[str]:
    """Apply what has not been applied; return the names applied."""
    client.command(
        "CREATE TABLE IF NOT EXISTS schema_migrations ("
        " version UInt32, name String, checksum String,"
        " applied_at DateTime64(3, 'UTC') DEFAULT now64(3))"
        " ENGINE = MergeTree ORDER BY version"
    )
    applied = {
        int(version): checksum
        for version, checksum in client.query(
            "SELECT version, any(checksum) FROM schema_migrations GROUP BY version"
        ).result_rows
    }
    done: list[str] = []
    for migration in load_migrations(directory):
        if migration.version in applied:
            if applied[migration.version] != migration.checksum:
                raise MigrationError(
                    f"{migration.name} was changed after it was applied; migrations are frozen "
                    "once released: add a new one instead"
                )
            continue
        for statement in migration.statements():
            client.command(statement)
        client.insert(
            "schema_migrations",
            [[migration.version, migration.name, migration.checksum]],
            column_names=["version", "name", "checksum"],
        )
        done.append(migration.name)
    return done
