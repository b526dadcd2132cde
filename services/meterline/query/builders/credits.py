"""A team's total cost over all time, for ``GET /v1/credits``: from the smallest rollup
that keeps every request of the team, never the raw table."""

from __future__ import annotations

from meterline.query.builders.base import MODEL_DAILY, BuiltQuery


def build_credits_query(team_id: str) -> BuiltQuery:
    """One row: ``total_cost`` (0 for a team without usage) and ``unpriced_request_count``,
    the requests whose model had no known price and so cost nothing here yet."""
    if not team_id:
        raise ValueError("credits are always one team's: team_id is required")
    # No time bound: all of the team's days. usage_by_model_daily holds a few hundred rows
    # a day for a busy team and is sorted by team first, so this reads the team's rows only.
    sql = (
        "SELECT sum(total_cost) AS total_cost,"
        " sum(unpriced_request_count) AS unpriced_request_count\n"
        f"FROM {MODEL_DAILY.table}\n"
        "WHERE team_id = {team_id:String}"
    )
    return BuiltQuery(sql, {"team_id": team_id})
