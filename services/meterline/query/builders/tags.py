"""Reports grouped by tag (alone or with other fields): a request is counted once under each
of its tags, so tag rows can add up to more than the team's total, and untagged requests
appear under no tag.

Filters apply before grouping, as for every report: ``tags=a&group_by=tag`` selects the
requests tagged ``a`` and then shows each of their tags, ``a`` and the tags it was used with.
That needs each request's full tag set, which the per-tag rollups do not keep, so such a
report (and one on users) reads usage_daily/usage_hourly with ARRAY JOIN (see choose_source).
"""

from __future__ import annotations

from meterline.query.builders.base import BuiltQuery, assemble, choose_source
from meterline.query.report_query import ReportQuery


def build_tag_report(
    team_id: str, query: ReportQuery, *, limit: int | None = None, offset: int = 0
) -> BuiltQuery:
    if "tag" not in query.group_by:
        raise ValueError("build_tag_report is for reports grouped by tag")
    return assemble(team_id, query, choose_source(query), limit, offset)
