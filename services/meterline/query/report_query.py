"""``GET /v1/report`` parameters, checked and normalised into a :class:`ReportQuery`.

Every problem is a :class:`BadParameter` naming the parameter. Unknown parameters are
refused rather than ignored: a misspelt filter (``user=`` for ``user_id=``) would otherwise
return the whole team's usage and look right."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import date
from functools import lru_cache
from typing import Final, Literal, TypeVar, cast, get_args
from zoneinfo import available_timezones

from meterline.query.errors import BadParameter

Dimension = Literal[
    "day",
    "user",
    "model",
    "provider",
    "tag",
    "credential_type",
    "api_key_name",
    "zero_data_retention",
]
DatePart = Literal["day", "hour", "week", "month"]
Direction = Literal["asc", "desc"]

DIMENSIONS: Final[tuple[Dimension, ...]] = get_args(Dimension)
DATE_PARTS: Final[tuple[DatePart, ...]] = get_args(DatePart)

METRICS: Final = (
    "total_cost",
    "market_cost",
    "input_tokens",
    "output_tokens",
    "cached_input_tokens",
    "cache_creation_input_tokens",
    "reasoning_tokens",
    "request_count",
    "unpriced_request_count",
)
"""Every row carries these, in this order. ``unpriced_request_count`` is ours: requests
whose model had no known price, so a $0 cost is never mistaken for a free model."""

MONEY_METRICS: Final = frozenset({"total_cost", "market_cost"})

_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_LIMIT = re.compile(r"^[0-9]{1,9}\Z")
MAX_DAYS: Final = 3660
MAX_FILTER_TAGS: Final = 50
MAX_TAG_LENGTH: Final = 64
MAX_FILTER_LENGTH: Final = 256

FILTERS: Final = (
    "user_id",
    "model",
    "provider",
    "api_key_name",
    "credential_type",
    "zero_data_retention",
    "tags",
)
"""The filter parameters; ``tags`` may be repeated, each other parameter given once."""

_SINGLE: Final = frozenset(
    {
        "start_date",
        "end_date",
        "group_by",
        "date_part",
        *(name for name in FILTERS if name != "tags"),
        "tags_match",
        "timezone",
        "limit",
        "cursor",
        "order_by",
        "format",
    }
)
_REPEATABLE: Final = frozenset({"tags"})

T = TypeVar("T", bound=str)


@dataclass(frozen=True, slots=True)
class ReportQuery:
    start_date: date
    end_date: date
    """Both inclusive, as calendar days in ``timezone``."""
    group_by: tuple[Dimension, ...] = ("day",)
    date_part: DatePart = "day"
    user_id: str | None = None
    model: str | None = None
    provider: str | None = None
    api_key_name: str | None = None
    credential_type: Literal["byok", "system"] | None = None
    zero_data_retention: bool | None = None
    """Only requests served (True) or not served (False) by a zero-data-retention provider."""
    tags: tuple[str, ...] = ()
    tags_match: Literal["any", "all"] = "any"
    timezone: str = "UTC"
    order_by: tuple[tuple[str, Direction], ...] = ()
    limit: int | None = None
    cursor: str | None = None
    format: Literal["json", "csv"] = "json"

    @property
    def time_field(self) -> str:
        """The row field of the ``day`` grouping: ``day``, ``hour``, ``week`` or ``month``."""
        return self.date_part

    def fields(self) -> tuple[str, ...]:
        """The grouping fields of each row, in ``group_by`` order."""
        return tuple(self.time_field if d == "day" else d for d in self.group_by)

    def fingerprint(self) -> str:
        """What a cursor must have been issued for: everything that decides the rows and their
        order, but not the page size or the output format."""
        return repr(
            (
                self.start_date.isoformat(),
                self.end_date.isoformat(),
                self.group_by,
                self.date_part,
                self.user_id,
                self.model,
                self.provider,
                self.api_key_name,
                self.credential_type,
                self.zero_data_retention,
                self.tags,
                self.tags_match,
                self.timezone,
                self.order_by,
            )
        )


@lru_cache(maxsize=1)
def _zones() -> frozenset[str]:
    return frozenset(available_timezones()) | {"UTC"}


def parse_report_query(params: Mapping[str, Sequence[str]], max_limit: int) -> ReportQuery:
    """``params`` maps each parameter to all its values (a query string may repeat one)."""
    for name, values in params.items():
        if name not in _SINGLE and name not in _REPEATABLE:
            raise BadParameter(name, "unknown parameter")
        if name in _SINGLE and len(values) > 1:
            raise BadParameter(name, "given more than once")

    def one(name: str) -> str | None:
        values = params.get(name)
        return values[0] if values else None

    start = _date(one("start_date"), "start_date")
    end = _date(one("end_date"), "end_date")
    if end < start:
        raise BadParameter("end_date", "is before start_date")
    if (end - start).days >= MAX_DAYS:
        raise BadParameter("end_date", f"the range may span at most {MAX_DAYS} days")

    group_by = _group_by(one("group_by"))
    date_part = _choice(one("date_part"), "date_part", DATE_PARTS, "day")
    query = ReportQuery(
        start_date=start,
        end_date=end,
        group_by=group_by,
        date_part=date_part,
        user_id=_filter(one("user_id"), "user_id"),
        model=_filter(one("model"), "model"),
        provider=_filter(one("provider"), "provider"),
        api_key_name=_filter(one("api_key_name"), "api_key_name"),
        credential_type=_optional_choice(
            one("credential_type"), "credential_type", ("byok", "system")
        ),
        zero_data_retention=_boolean(one("zero_data_retention"), "zero_data_retention"),
        tags=_tags(params.get("tags")),
        tags_match=_choice(one("tags_match"), "tags_match", ("any", "all"), "any"),
        timezone=_timezone(one("timezone")),
        limit=_limit(one("limit"), max_limit),
        cursor=one("cursor") or None,
        format=_choice(one("format"), "format", ("json", "csv"), "json"),
    )
    order_by = _order_by(one("order_by"), query.fields())
    return replace(query, order_by=order_by)


def _date(value: str | None, name: str) -> date:
    if value is None or value == "":
        raise BadParameter(name, "required, as YYYY-MM-DD")
    if not _DATE.match(value):
        raise BadParameter(name, f"{value!r} is not a date in the form YYYY-MM-DD")
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise BadParameter(name, f"{value!r} is not a valid date") from None


def _group_by(value: str | None) -> tuple[Dimension, ...]:
    if value is None or not value.strip():
        return ("day",)
    items = [item.strip() for item in value.split(",")]
    for item in items:
        if item not in DIMENSIONS:
            raise BadParameter("group_by", f"{item!r} is not one of {', '.join(DIMENSIONS)}")
    if len(set(items)) != len(items):
        raise BadParameter("group_by", "names a dimension twice")
    return tuple(cast(Dimension, item) for item in items)


def _choice(value: str | None, name: str, allowed: tuple[T, ...], default: T) -> T:
    if value is None or value == "":
        return default
    for option in allowed:
        if value == option:
            return option
    raise BadParameter(name, f"{value!r} is not one of {', '.join(allowed)}")


def _optional_choice(value: str | None, name: str, allowed: tuple[T, ...]) -> T | None:
    if value is None or value == "":
        return None
    return _choice(value, name, allowed, allowed[0])


def _boolean(value: str | None, name: str) -> bool | None:
    choice = _optional_choice(value, name, ("true", "false"))
    return None if choice is None else choice == "true"


def _filter(value: str | None, name: str) -> str | None:
    if value is None or value == "":
        return None
    if len(value) > MAX_FILTER_LENGTH:
        raise BadParameter(name, f"longer than {MAX_FILTER_LENGTH} characters")
    return value


def _tags(values: Sequence[str] | None) -> tuple[str, ...]:
    if not values:
        return ()
    # Comma lists and repeated parameters both work; order and repeats do not matter.
    tags = sorted({tag.strip() for value in values for tag in value.split(",") if tag.strip()})
    if not tags:
        raise BadParameter("tags", "names no tag")
    if len(tags) > MAX_FILTER_TAGS:
        raise BadParameter("tags", f"at most {MAX_FILTER_TAGS} tags")
    for tag in tags:
        if len(tag) > MAX_TAG_LENGTH:
            raise BadParameter("tags", f"a tag is at most {MAX_TAG_LENGTH} characters")
    return tuple(tags)


def _timezone(value: str | None) -> str:
    if value is None or value == "":
        return "UTC"
    # Checked against the IANA names Python knows, so nothing else reaches ClickHouse.
    if value not in _zones():
        raise BadParameter("timezone", f"{value!r} is not an IANA time zone name")
    return value


def _limit(value: str | None, max_limit: int) -> int | None:
    if value is None or value == "":
        return None
    # ASCII digits and a bounded length: str.isdigit() also accepts "²", which int() refuses,
    # and int() refuses strings of thousands of digits.
    if not _LIMIT.match(value) or not 1 <= int(value) <= max_limit:
        raise BadParameter("limit", f"must be a whole number from 1 to {max_limit}")
    return int(value)


def _order_by(value: str | None, fields: tuple[str, ...]) -> tuple[tuple[str, Direction], ...]:
    if value is None or not value.strip():
        return ()
    allowed = (*fields, *METRICS)
    seen: list[tuple[str, Direction]] = []
    for item in value.split(","):
        name, _, direction = item.strip().partition(":")
        if name not in allowed:
            raise BadParameter(
                "order_by", f"{name!r} is not a metric or a grouping field of this report"
            )
        if direction not in ("", "asc", "desc"):
            raise BadParameter("order_by", f"direction {direction!r} is not asc or desc")
        if any(name == existing for existing, _ in seen):
            raise BadParameter("order_by", f"names {name!r} twice")
        seen.append((name, "desc" if direction == "desc" else "asc"))
    return tuple(seen)
