"""Where alerts and their delivery state are kept: the ``AlertStore`` protocol, kept in the
warehouse (``budget_alerts`` and ``budget_alert_deliveries``, migration 0010) or in memory.

Raising an alert is only this write, so it never waits on a receiver; the delivery loop
reads the pending deliveries from here, so a restarted process picks up where the last one
stopped."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final, Literal, Protocol

from clickhouse_connect.driver.client import Client

from meterline.common.alerts.model import Alert

DeliveryStatus = Literal["pending", "delivered", "failed"]

ALERT_COLUMNS: Final = (
    "alert_id",
    "team_id",
    "kind",
    "subject",
    "scope",
    "period_start",
    "threshold_percent",
    "spend_usd",
    "limit_usd",
    "baseline_usd",
    "message",
    "raised_at",
)
DELIVERY_COLUMNS: Final = (
    "team_id",
    "alert_id",
    "webhook",
    "status",
    "attempts",
    "next_attempt_at",
    "last_attempt_at",
    "last_http_status",
    "last_error",
    "delivered_at",
)


@dataclass(frozen=True, slots=True)
class Delivery:
    """One alert at one webhook."""

    team_id: str
    alert_id: str
    webhook: str
    status: DeliveryStatus
    attempts: int
    next_attempt_at: datetime
    last_attempt_at: datetime | None = None
    last_http_status: int | None = None
    last_error: str = ""
    delivered_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class Due:
    alert: Alert
    delivery: Delivery


class AlertStore(Protocol):
    async def raise_alert(self, alert: Alert, webhooks: Sequence[str]) -> None:
        """Keep the alert and a pending delivery to each named webhook. Idempotent by
        ``alert_id``: raising it again (another replica, a restart) keeps one alert and
        never resets a delivery that was already tried or done."""
        ...

    async def due(self, now: datetime, limit: int) -> list[Due]:
        """Pending deliveries whose next attempt is due at ``now``, oldest due first."""
        ...

    async def record(self, delivery: Delivery) -> None:
        """The state after an attempt (``attempts`` one more than before)."""
        ...

    async def alert(self, alert_id: str) -> Alert | None: ...

    async def deliveries(self, alert_id: str) -> list[Delivery]:
        """The alert's deliveries, by webhook name."""
        ...


def _utc(value: datetime) -> datetime:
    # clickhouse-connect gives DateTime64(3, 'UTC') columns back naive.
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def _utc_or_none(value: datetime | None) -> datetime | None:
    return None if value is None else _utc(value)


def _pair(item: Any) -> tuple[str, str]:
    # A named Tuple comes back as a dict from clickhouse-connect, a tuple elsewhere.
    if isinstance(item, dict):
        return str(item["dimension"]), str(item["value"])
    name, value = item
    return str(name), str(value)


def alert_from_row(row: dict[str, Any]) -> Alert:
    """An alert from a ``budget_alerts`` row read as ``ALERT_COLUMNS``."""
    threshold = row["threshold_percent"]
    return Alert(
        alert_id=row["alert_id"],
        team_id=row["team_id"],
        kind=row["kind"],
        subject=row["subject"],
        scope=tuple(_pair(item) for item in row["scope"]),
        period_start=_utc(row["period_start"]),
        threshold_percent=None if threshold is None else int(threshold),
        spend_usd=row["spend_usd"],
        limit_usd=row["limit_usd"],
        baseline_usd=row["baseline_usd"],
        message=row["message"],
        raised_at=_utc(row["raised_at"]),
    )


def delivery_from_row(row: dict[str, Any]) -> Delivery:
    status = row["last_http_status"]
    return Delivery(
        team_id=row["team_id"],
        alert_id=row["alert_id"],
        webhook=row["webhook"],
        status=row["status"],
        attempts=int(row["attempts"]),
        next_attempt_at=_utc(row["next_attempt_at"]),
        last_attempt_at=_utc_or_none(row["last_attempt_at"]),
        last_http_status=None if status is None else int(status),
        last_error=row["last_error"],
        delivered_at=_utc_or_none(row["delivered_at"]),
    )


def _alert_row(alert: Alert) -> list[Any]:
    return [
        alert.alert_id,
        alert.team_id,
        alert.kind,
        alert.subject,
        [list(pair) for pair in alert.scope],
        alert.period_start,
        alert.threshold_percent,
        alert.spend_usd,
        alert.limit_usd,
        alert.baseline_usd,
        alert.message,
        alert.raised_at,
    ]


def _delivery_row(delivery: Delivery) -> list[Any]:
    return [
        delivery.team_id,
        delivery.alert_id,
        delivery.webhook,
        delivery.status,
        delivery.attempts,
        delivery.next_attempt_at,
        delivery.last_attempt_at,
        delivery.last_http_status,
        delivery.last_error,
        delivery.delivered_at,
    ]


_SELECT_ALERT: Final = ", ".join(f"a.{name} AS {name}" for name in ALERT_COLUMNS)
_SELECT_DELIVERY: Final = ", ".join(f"d.{name} AS d_{name}" for name in DELIVERY_COLUMNS)


class ClickHouseAlertStore:
    """In the warehouse. Several instances on one database (replicas, or a process after
    a restart) see the same alerts and deliveries.

    One client runs one query at a time. The asyncio lock queues callers without holding
    a thread each; the thread lock is what makes it true when a caller is cancelled (the
    delivery loop stopping) while its query still runs in its thread: the next query waits
    for that one instead of running beside it on the same client."""

    def __init__(self, client: Client):
        self._client = client
        self._lock = asyncio.Lock()
        self._client_lock = threading.Lock()

    async def raise_alert(self, alert: Alert, webhooks: Sequence[str]) -> None:
        # The alert row is written only when it is not there yet, so a repeated raise keeps
        # the first raise's text and spend. The pending deliveries are written every time:
        # attempts = 0 never replaces a tried row, and a crash between the two inserts is
        # mended by the next raise.
        if await self.alert(alert.alert_id) is None:
            await self._insert("budget_alerts", [_alert_row(alert)], ALERT_COLUMNS)
        pending = [
            Delivery(alert.team_id, alert.alert_id, name, "pending", 0, alert.raised_at)
            for name in webhooks
        ]
        if pending:
            await self._insert(
                "budget_alert_deliveries", [_delivery_row(d) for d in pending], DELIVERY_COLUMNS
            )

    async def due(self, now: datetime, limit: int) -> list[Due]:
        # FINAL before the filter: a delivered row must hide the pending row it replaced.
        sql = (
            f"SELECT {_SELECT_ALERT}, {_SELECT_DELIVERY}\n"
            "FROM (SELECT * FROM budget_alert_deliveries FINAL"
            " WHERE status = 'pending' AND next_attempt_at <= {now:DateTime64(3, 'UTC')}) AS d\n"
            "INNER JOIN (SELECT * FROM budget_alerts FINAL) AS a"
            " ON a.team_id = d.team_id AND a.alert_id = d.alert_id\n"
            "ORDER BY d.next_attempt_at, d.alert_id, d.webhook\n"
            "LIMIT {limit:UInt32}"
        )
        rows = await self._query(sql, {"now": now.astimezone(UTC), "limit": limit})
        found = []
        for row in rows:
            delivery = {name: row[f"d_{name}"] for name in DELIVERY_COLUMNS}
            found.append(Due(alert_from_row(row), delivery_from_row(delivery)))
        return found

    async def record(self, delivery: Delivery) -> None:
        await self._insert("budget_alert_deliveries", [_delivery_row(delivery)], DELIVERY_COLUMNS)

    async def alert(self, alert_id: str) -> Alert | None:
        rows = await self._query(
            f"SELECT {', '.join(ALERT_COLUMNS)} FROM budget_alerts FINAL"
            " WHERE alert_id = {alert_id:String}",
            {"alert_id": alert_id},
        )
        return alert_from_row(rows[0]) if rows else None

    async def deliveries(self, alert_id: str) -> list[Delivery]:
        rows = await self._query(
            f"SELECT {', '.join(DELIVERY_COLUMNS)} FROM budget_alert_deliveries FINAL"
            " WHERE alert_id = {alert_id:String} ORDER BY webhook",
            {"alert_id": alert_id},
        )
        return [delivery_from_row(row) for row in rows]

    async def _query(self, sql: str, parameters: dict[str, Any]) -> list[dict[str, Any]]:
        def query() -> list[dict[str, Any]]:
            with self._client_lock:
                result = self._client.query(sql, parameters=parameters)
            names = result.column_names
            return [dict(zip(names, row, strict=True)) for row in result.result_rows]

        async with self._lock:
            return await asyncio.to_thread(query)

    async def _insert(self, table: str, rows: list[list[Any]], columns: Sequence[str]) -> None:
        def insert() -> None:
            with self._client_lock:
                self._client.insert(
                    table, rows, column_names=list(columns), settings={"async_insert": 0}
                )

        async with self._lock:
            await asyncio.to_thread(insert)


class MemoryAlertStore:
    def __init__(self) -> None:
        self.alerts: dict[str, Alert] = {}
        self._deliveries: dict[tuple[str, str], Delivery] = {}

    async def raise_alert(self, alert: Alert, webhooks: Sequence[str]) -> None:
        self.alerts.setdefault(alert.alert_id, alert)
        for name in webhooks:
            pending = Delivery(alert.team_id, alert.alert_id, name, "pending", 0, alert.raised_at)
            self._deliveries.setdefault((alert.alert_id, name), pending)

    async def due(self, now: datetime, limit: int) -> list[Due]:
        found = sorted(
            (d for d in self._deliveries.values() if d.status == "pending"),
            key=lambda d: (d.next_attempt_at, d.alert_id, d.webhook),
        )
        return [Due(self.alerts[d.alert_id], d) for d in found if d.next_attempt_at <= now][:limit]

    async def record(self, delivery: Delivery) -> None:
        key = (delivery.alert_id, delivery.webhook)
        current = self._deliveries.get(key)
        # As in the warehouse: the state with the most attempts is the one kept.
        if current is None or delivery.attempts >= current.attempts:
            self._deliveries[key] = delivery

    async def alert(self, alert_id: str) -> Alert | None:
        return self.alerts.get(alert_id)

    async def deliveries(self, alert_id: str) -> list[Delivery]:
        return sorted(
            (d for d in self._deliveries.values() if d.alert_id == alert_id),
            key=lambda d: d.webhook,
        )
