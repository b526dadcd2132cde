from __future__ import annotations

from meterline.query.builders.base import BuiltQuery
from meterline.query.builders.tags import build_tag_report
from meterline.query.builders.usage import build_usage_report
from meterline.query.report_query import ReportQuery


def build_report_query(
    team_id: str, query: ReportQuery, *, limit: int | None = None, offset: int = 0
) -> BuiltQuery:
    """The builder for this report's shape."""
    builder = build_tag_report if "tag" in query.group_by else build_usage_report
    return builder(team_id, query, limit=limit, offset=offset)
