"""Reports grouped by time, user, model, provider, credential type or API key name (any
combination without ``tag``): one row per combination, from the daily or hourly rollup."""

from __future__ import annotations

from meterline.query.builders.base import BuiltQuery, assemble, choose_source
from meterline.query.report_query import ReportQuery


def build_usage_report(
    team_id: str, query: ReportQuery, *, limit: int | None = None, offset: int = 0
) -> BuiltQuery:
    if "tag" in query.group_by:
        raise ValueError("a report grouped by tag is built by build_tag_report")
    return assemble(team_id, query, choose_source(query), limit, offset)
