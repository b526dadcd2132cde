"""What the report builders share: where a report reads from (:func:`choose_source`), the
team and range and filter predicates, the metric sums, the row order and the page.

Where a report reads from
-------------------------
Reports never scan raw events when a rollup answers exactly. A rollup answers a report when
it keeps every dimension the report groups or filters on, at a fine enough time grain:

- daily rollups hold UTC days, so they answer when the report's time zone is at UTC+0 for
  the whole range and no hour is asked for;
- hourly rollups answer any zone whose offset stays a whole number of hours over the range:
  every local midnight is then a UTC hour boundary, so day, week and month boundaries in
  that zone are exact;
- zones with a fractional offset somewhere in the range (Asia/Kolkata +05:30,
  Asia/Kathmandu +05:45, Australia/Adelaide, America/St_Johns, ...) read ``usage_events``,
  the raw table: exact, but slower, since it scans the team's events for the range.

Of the rollups that answer, the smallest is read. Keeping fewer dimensions makes a rollup
smaller by orders of magnitude for a busy team (usage_daily keeps nearly a row per user,
model, key, credential type and tag set each day; usage_by_model_daily a few hundred rows a
day), so the candidates are listed smallest first and the first that answers wins. Tags are
kept two ways: the request's whole tag set (``tags``, needed to filter on tags) or a row per
tag (``tag``, enough to group by tag); a tag report on a tag-set rollup expands each row's
set with ARRAY JOIN.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from functools import lru_cache
from typing import Any, Final, Literal
from zoneinfo import ZoneInfo

from meterline.query.report_query import METRICS, ReportQuery

Grain = Literal["day", "hour", "event"]


@dataclass(frozen=True, slots=True)
class BuiltQuery:
    sql: str
    parameters: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Source:
    table: str
    grain: Grain
    dimensions: frozenset[str] = frozenset()
    """The dimension columns it keeps: ``user_id``, ``model``, ``provider``,
    ``credential_type``, ``api_key_name``, ``zero_data_retention``, and ``tags`` (each
    request's tag set) or ``tag`` (a row per tag)."""

    @property
    def per_tag(self) -> bool:
        """A row per tag (column ``tag``) rather than the request's tag set (``tags``)."""
        return "tag" in self.dimensions

    @property
    def time_column(self) -> str:
        return {"day": "day", "hour": "hour", "event": "started_at"}[self.grain]


_EVERYTHING: Final = frozenset(
    {
        "user_id",
        "model",
        "provider",
        "credential_type",
        "api_key_name",
        "zero_data_retention",
        "tags",
    }
)
_MODEL: Final = frozenset({"model", "provider", "credential_type", "api_key_name"})
# The model rollups keep zero_data_retention too (schemas/clickhouse/0008): it depends on
# the provider, so it costs them no rows.
_MODEL_ZDR: Final = _MODEL | {"zero_data_retention"}

USAGE_DAILY: Final = Source("usage_daily", "day", _EVERYTHING)
USAGE_HOURLY: Final = Source("usage_hourly", "hour", _EVERYTHING)
USAGE_EVENTS: Final = Source("usage_events", "event", _EVERYTHING)
TAG_DAILY: Final = Source("usage_by_tag_daily", "day", _MODEL | {"tag"})
TAG_HOURLY: Final = Source("usage_by_tag_hourly", "hour", _MODEL | {"tag"})
TAG_MODEL_DAILY: Final = Source(
    "usage_by_tag_model_daily", "day", frozenset({"model", "provider", "tag"})
)
MODEL_DAILY: Final = Source("usage_by_model_daily", "day", _MODEL_ZDR)
MODEL_HOURLY: Final = Source("usage_by_model_hourly", "hour", _MODEL_ZDR)
USER_DAILY: Final = Source("usage_by_user_daily", "day", frozenset({"user_id"}))
USER_MODEL_DAILY: Final = Source("usage_by_user_model_daily", "day", _MODEL | {"user_id"})

# Smallest first (see the module docstring); the last of each answers every report.
DAILY_SOURCES: Final = (
    MODEL_DAILY,
    USER_DAILY,
    USER_MODEL_DAILY,
    TAG_MODEL_DAILY,
    TAG_DAILY,
    USAGE_DAILY,
)
HOURLY_SOURCES: Final = (MODEL_HOURLY, TAG_HOURLY, USAGE_HOURLY)

# Sampling a zone's offset every six hours finds every offset period the tz database holds
# (the shortest last weeks) at a cost of well under a millisecond for a month's range.
_OFFSET_SAMPLE = timedelta(hours=6)


def range_instants(query: ReportQuery) -> tuple[datetime, datetime]:
    """The report's range as UTC instants: local midnight of start_date, up to (excluding)
    local midnight of the day after end_date."""
    zone = ZoneInfo(query.timezone)
    start = datetime.combine(query.start_date, time(), zone).astimezone(UTC)
    end = datetime.combine(query.end_date + timedelta(days=1), time(), zone).astimezone(UTC)
    return start, end


@lru_cache(maxsize=4096)
def zone_offsets(zone_name: str, start_date: date, end_date: date) -> frozenset[int]:
    """Every UTC offset (seconds) the zone has within the report's range: sampled from its
    first instant on, and at its last instant, so a change just before the end counts."""
    zone = ZoneInfo(zone_name)
    start = datetime.combine(start_date, time(), zone).astimezone(UTC)
    end = datetime.combine(end_date + timedelta(days=1), time(), zone).astimezone(UTC)
    instants = [start]
    while instants[-1] + _OFFSET_SAMPLE < end:
        instants.append(instants[-1] + _OFFSET_SAMPLE)
    instants.append(end - timedelta(seconds=1))
    offsets = (at.astimezone(zone).utcoffset() for at in instants)
    return frozenset(int(o.total_seconds()) if o is not None else 0 for o in offsets)


_FILTERS: Final = ("user_id", "model", "provider", "api_key_name", "credential_type")
_COLUMN_OF: Final = {
    "user": "user_id",
    "model": "model",
    "provider": "provider",
    "credential_type": "credential_type",
    "api_key_name": "api_key_name",
    "zero_data_retention": "zero_data_retention",
}


def needed_dimensions(query: ReportQuery) -> frozenset[str]:
    """The dimension columns a report groups or filters on, ``tag`` grouping aside."""
    needed = {_COLUMN_OF[d] for d in query.group_by if d in _COLUMN_OF}
    needed |= {name for name in _FILTERS if getattr(query, name) is not None}
    if query.zero_data_retention is not None:
        needed.add("zero_data_retention")
    if query.model is not None and "/" in query.model:
        needed.add("provider")  # the "provider/model" form (see ``where_clause``)
    if query.tags:
        needed.add("tags")
    return frozenset(needed)


def answers(source: Source, query: ReportQuery) -> bool:
    """Whether the source keeps every dimension the report needs (its grain is checked by
    the caller)."""
    if not needed_dimensions(query) <= source.dimensions:
        return False
    return "tag" not in query.group_by or bool({"tag", "tags"} & source.dimensions)


def choose_source(query: ReportQuery) -> Source:
    offsets = zone_offsets(query.timezone, query.start_date, query.end_date)
    daily_ok = offsets == {0} and not (query.date_part == "hour" and "day" in query.group_by)
    hourly_ok = all(offset % 3600 == 0 for offset in offsets)
    candidates = (DAILY_SOURCES if daily_ok else ()) + (HOURLY_SOURCES if hourly_ok else ())
    for source in candidates:
        if answers(source, query):
            return source
    return USAGE_EVENTS


@dataclass(frozen=True, slots=True)
class Grouping:
    field: str
    """The row field: ``day``/``hour``/``week``/``month``, ``user``, ``model``, ``tag``, ..."""
    key: str
    """What rows are grouped and sorted by: a column or a Date/DateTime expression, so a
    source sorted the same way is read, aggregated and paged in order (see the settings in
    query/warehouse.py) instead of hashing every group and sorting them all."""
    text: str
    """The field's value in the row, a function of ``key``."""


def groupings(source: Source, query: ReportQuery, parameters: dict[str, Any]) -> list[Grouping]:
    """The grouping fields in ``group_by`` order. ``tag`` is the ARRAY JOIN alias unless the
    source holds a row per tag."""
    found = []
    for dimension in query.group_by:
        if dimension == "day":
            key, text = bucket(source, query, parameters)
            field = query.time_field
            found.append(Grouping(field, f"g_{field}" if key == text else key, text))
        elif dimension == "tag":
            column = "tag" if source.per_tag else "g_tag"  # the ARRAY JOIN alias, see assemble()
            found.append(Grouping("tag", column, column))
        else:
            column = _COLUMN_OF[dimension]
            found.append(Grouping(dimension, column, column))
    return found


def bucket(source: Source, query: ReportQuery, parameters: dict[str, Any]) -> tuple[str, str]:
    """The ``day`` grouping's key and text: YYYY-MM-DD for day and week (its Monday),
    YYYY-MM-DDTHH for hour, YYYY-MM for month, all in the report's time zone. The text sorts
    like the key, so ordering by the key orders the rows by their text."""
    column = source.time_column
    part = query.date_part
    if part == "hour":
        parameters["timezone"] = query.timezone
        if query.timezone != "UTC":
            # Where clocks go back, two UTC hours share one local hour's text: group by the
            # text, so they are one row as the report promises.
            text = f"formatDateTime({column}, '%Y-%m-%dT%H', {{timezone:String}})"
            return text, text
        key = column if source.grain == "hour" else f"toStartOfHour({column})"
        return key, f"formatDateTime({key}, '%Y-%m-%dT%H', {{timezone:String}})"
    if source.grain == "day":
        # UTC days, and the zone is at UTC+0 throughout (see choose_source).
        day = column
    else:
        parameters["timezone"] = query.timezone
        day = f"toDate({column}, {{timezone:String}})"
    if part == "week":
        key = f"toMonday({day})"
        return key, f"toString({key})"
    if part == "month":
        key = f"toStartOfMonth({day})"
        return key, f"formatDateTime({key}, '%Y-%m')"
    return day, f"toString({day})"


def range_predicate(source: Source, query: ReportQuery, parameters: dict[str, Any]) -> str:
    if source.grain == "day":
        parameters["start_day"] = query.start_date.isoformat()
        parameters["end_day"] = query.end_date.isoformat()
        return "day >= {start_day:Date} AND day <= {end_day:Date}"
    start, end = range_instants(query)
    parameters["start_at"] = start.strftime("%Y-%m-%d %H:%M:%S")
    parameters["end_at"] = end.strftime("%Y-%m-%d %H:%M:%S")
    kind = "DateTime('UTC')" if source.grain == "hour" else "DateTime64(3, 'UTC')"
    column = source.time_column
    return f"{column} >= {{start_at:{kind}}} AND {column} < {{end_at:{kind}}}"


def where_clause(team_id: str, source: Source, query: ReportQuery) -> tuple[str, dict[str, Any]]:
    """Team first, always; then the range, then the filters that were given."""
    if not team_id:
        raise ValueError("a report is always one team's: team_id is required")
    parameters: dict[str, Any] = {"team_id": team_id}
    predicates = ["team_id = {team_id:String}", range_predicate(source, query, parameters)]
    for name in _FILTERS:
        value = getattr(query, name)
        if value is None:
            continue
        parameters[name] = value
        if name == "model" and "/" in value:
            # As requests name it ("openai/gpt-4o"), or as rows do: a model's own name may
            # hold a slash too ("meta-llama/Llama-3-8B" served by vLLM).
            provider, _, model = value.partition("/")
            parameters |= {"model_provider": provider, "model_name": model}
            predicates.append(
                "(model = {model:String}"
                " OR (provider = {model_provider:String} AND model = {model_name:String}))"
            )
        else:
            predicates.append(f"{name} = {{{name}:String}}")
    if query.zero_data_retention is not None:
        parameters["zero_data_retention"] = query.zero_data_retention
        predicates.append("zero_data_retention = {zero_data_retention:Bool}")
    if query.tags:
        parameters["tags"] = list(query.tags)
        function = "hasAll" if query.tags_match == "all" else "hasAny"
        predicates.append(f"{function}(tags, {{tags:Array(String)}})")
    return "\n  AND ".join(predicates), parameters


def metric_columns(source: Source) -> list[str]:
    """The metric sums, aliased ``m_<metric>``: rollup rows are partial sums (merges are
    eventual), so every read sums again; raw rows are single requests."""
    columns = []
    for metric in METRICS:
        if source.grain == "event" and metric == "request_count":
            expression = "count()"
        elif source.grain == "event" and metric == "unpriced_request_count":
            expression = "countIf(NOT price_known)"
        else:
            expression = f"sum({metric})"
        columns.append(f"{expression} AS m_{metric}")
    return columns


def order_clause(query: ReportQuery, keys: dict[str, str]) -> str:
    """The caller's order, then every grouping field ascending, so the order is total and a
    page offset always names the same rows. Grouping fields sort by their keys."""
    terms: list[str] = []
    named: set[str] = set()
    for name, direction in query.order_by:
        terms.append(f"{f'm_{name}' if name in METRICS else keys[name]} {direction.upper()}")
        named.add(name)
    for field in query.fields():
        if field not in named:
            terms.append(f"{keys[field]} ASC")
    return ", ".join(terms)


def page_clause(parameters: dict[str, Any], limit: int | None, offset: int) -> str:
    if limit is None:
        return ""
    parameters["limit"] = limit
    parameters["offset"] = offset
    return "\nLIMIT {limit:UInt64} OFFSET {offset:UInt64}"


def assemble(
    team_id: str, query: ReportQuery, source: Source, limit: int | None, offset: int
) -> BuiltQuery:
    """One aggregation over one source: grouping fields, metric sums, team-scoped filters,
    a total order and the page."""
    where, parameters = where_clause(team_id, source, query)
    grouped = groupings(source, query, parameters)
    # A request with several tags is counted under each; an untagged one under none.
    array_join = (
        "\nARRAY JOIN tags AS g_tag" if "tag" in query.group_by and not source.per_tag else ""
    )
    dimensions = [
        g.text if g.text == f"g_{g.field}" else f"{g.text} AS g_{g.field}" for g in grouped
    ]
    select = ",\n    ".join([*dimensions, *metric_columns(source)])
    group_by = ", ".join(g.key for g in grouped)
    order_by = order_clause(query, {g.field: g.key for g in grouped})
    sql = (
        f"SELECT\n    {select}\nFROM {source.table}{array_join}\nWHERE {where}\n"
        f"GROUP BY {group_by}\nORDER BY {order_by}"
    ) + page_clause(parameters, limit, offset)
    return BuiltQuery(sql, parameters)
