"""One request's facts and costs, from the raw table (the only place that has them)."""

from __future__ import annotations

from typing import Final
from uuid import UUID

from meterline.common.clickhouse import RAW_COLUMNS
from meterline.query.builders.base import BuiltQuery

GENERATION_COLUMNS: Final = (
    *(name for name in RAW_COLUMNS if name != "team_id"),
    "ingested_at",
)
"""A request's own columns: its team is the caller's, and when it reached the warehouse
tells how fresh the reports are."""


def build_generation_query(team_id: str, event_id: UUID) -> BuiltQuery:
    """The team is part of the lookup, so another team's id finds nothing (a 404, the same
    as an id that does not exist: the answer says nothing about other teams)."""
    if not team_id:
        raise ValueError("a generation is always looked up within one team: team_id is required")
    sql = (
        f"SELECT {', '.join(GENERATION_COLUMNS)}\n"
        "FROM usage_events\n"
        "WHERE team_id = {team_id:String} AND event_id = {event_id:UUID}\n"
        # Producer-side repeats are dropped by the consumer, but one row is the answer anyway.
        "ORDER BY ingested_at\n"
        "LIMIT 1"
    )
    return BuiltQuery(sql, {"team_id": team_id, "event_id": str(event_id)})
