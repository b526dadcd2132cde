"""One request's facts and costs, from the raw table (the only place that has them)."""

from __future__ import annotations

from typing import Final
from uuid import UUID

from meterline.query.builders.base import BuiltQuery

GENERATION_COLUMNS: Final = (
    "event_id",
    "api_key_name",
    "api_surface",
    "started_at",
    "duration_ms",
    "time_to_first_token_ms",
    "user_id",
    "tags",
    "model_requested",
    "model",
    "provider",
    "credential_type",
    "streamed",
    "status",
    "http_status",
    "finish_reason",
    "error_type",
    "input_tokens",
    "output_tokens",
    "cached_input_tokens",
    "cache_creation_input_tokens",
    "cache_creation_1h_input_tokens",
    "reasoning_tokens",
    "market_cost",
    "total_cost",
    "price_known",
    "price_source",
    "raw_usage",
    "ingested_at",
)


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
