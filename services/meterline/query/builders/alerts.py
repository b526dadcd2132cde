"""A team's alerts for ``GET /v1/alerts``, newest first, and their deliveries."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

from meterline.common.alerts.store import ALERT_COLUMNS, DELIVERY_COLUMNS
from meterline.query.builders.base import BuiltQuery


def build_alerts_query(
    team_id: str, kinds: Sequence[str], since: datetime | None, limit: int
) -> BuiltQuery:
    if not team_id:
        raise ValueError("alerts are always one team's: team_id is required")
    where = ["team_id = {team_id:String}"]
    parameters: dict[str, object] = {"team_id": team_id, "limit": limit}
    if kinds:
        where.append("kind IN {kinds:Array(String)}")
        parameters["kinds"] = list(kinds)
    if since is not None:
        where.append("raised_at >= {since:DateTime64(3, 'UTC')}")
        parameters["since"] = since.astimezone(UTC)
    # FINAL: a raise repeated by another replica is one alert even before the merge.
    sql = (
        f"SELECT {', '.join(ALERT_COLUMNS)}\n"
        "FROM budget_alerts FINAL\n"
        f"WHERE {' AND '.join(where)}\n"
        "ORDER BY raised_at DESC, alert_id DESC\n"
        "LIMIT {limit:UInt32}"
    )
    return BuiltQuery(sql, parameters)


def build_alert_deliveries_query(team_id: str, alert_ids: Sequence[str]) -> BuiltQuery:
    if not team_id:
        raise ValueError("alerts are always one team's: team_id is required")
    sql = (
        f"SELECT {', '.join(DELIVERY_COLUMNS)}\n"
        "FROM budget_alert_deliveries FINAL\n"
        "WHERE team_id = {team_id:String} AND alert_id IN {alert_ids:Array(String)}\n"
        "ORDER BY alert_id, webhook"
    )
    return BuiltQuery(sql, {"team_id": team_id, "alert_ids": list(alert_ids)})
