"""The raw table's row (``usage_events``, schemas/clickhouse), described once: each column
with its ClickHouse type and where its value comes from, and the checks an event must pass
to become a row, each in Python and in SQL with its message.

The consumer has two ways to make rows, and both are built from this description: Python
(``UsageEvent.validate``, then ``Enricher.row``) and the warehouse engine, which runs the
checks (``sql_checks``) and the columns' ``sql`` over the event's Avro fields, staged as
columns of the same names (``consumer/engine_write.py``).

The Python expressions are source text: each kind (the checks, the row) is compiled once, at
import, into one function holding one expression. The consumer runs them for every event it
writes in Python, and one expression costs a fraction of a call per check or per column.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Final

from meterline.common.pricing import MONEY_SCALE

if TYPE_CHECKING:
    from meterline.common.events import UsageEvent

API_SURFACES: Final = frozenset({"chat_completions", "responses", "messages", "language_model"})
CREDENTIAL_TYPES: Final = frozenset({"system", "byok"})
STATUSES: Final = frozenset({"success", "error", "client_disconnected"})

MAX_TAGS: Final = 10
MAX_TAG_LENGTH: Final = 64
MAX_USER_LENGTH: Final = 256
MAX_UINT32: Final = 2**32 - 1
"""The raw table keeps durations in UInt32 milliseconds (about 49 days) and HTTP statuses
in UInt16: an event outside them cannot be stored as it is."""

MONEY: Final = f"Decimal(38, {MONEY_SCALE})"

# What str(uuid.uuid4()) writes and the Avro uuid type specifies: 8-4-4-4-12 hex digits.
# Other spellings uuid.UUID accepts (braces, "urn:uuid:", no hyphens) are refused, because
# the warehouse's UUID column takes this one only.
_UUID: Final = "-".join(f"[0-9a-fA-F]{{{n}}}" for n in (8, 4, 4, 4, 12))
_CANONICAL_UUID: Final = re.compile(_UUID).fullmatch


@dataclass(frozen=True, slots=True)
class Costs:
    """The raw table's four price columns, for one event."""

    market_cost: Decimal
    total_cost: Decimal
    price_known: bool
    price_source: str


@dataclass(frozen=True, slots=True)
class Column:
    """One column of the raw table, as the table declares it.

    An event column's value comes from the event: ``python`` over ``event`` (a UsageEvent),
    ``sql`` over the staged event. A price column's value is the field of the same name of
    the event's ``Costs`` (``python`` over ``costs``); the engine path joins it from its own
    price tables, so it has no ``sql`` here."""

    name: str
    type: str
    python: str
    sql: str | None


def _event(name: str, type_: str, python: str | None = None, sql: str | None = None) -> Column:
    return Column(name, type_, python or f"event.{name}", sql or name)


def _price(name: str, type_: str) -> Column:
    return Column(name, type_, f"costs.{name}", None)


_TEXT: Final = "LowCardinality(String)"
_TOKENS: Final = "UInt64"

COLUMNS: Final = (
    _event("event_id", "UUID", sql="toUUID(event_id)"),
    _event("team_id", _TEXT),
    _event("api_key_name", _TEXT),
    _event("api_surface", _TEXT),
    # Milliseconds, truncated, as clickhouse-connect writes a datetime to DateTime64(3).
    _event(
        "started_at",
        "DateTime64(3, 'UTC')",
        sql="fromUnixTimestamp64Milli(intDiv(started_at, 1000), 'UTC')",
    ),
    _event("duration_ms", "UInt32"),
    _event("time_to_first_token_ms", "Nullable(UInt32)"),
    # The table has no NULL text: "none" is the empty string.
    _event("user_id", "String", "event.user_id or ''", "ifNull(user_id, '')"),
    _event(
        "tags",
        f"Array({_TEXT})",
        "sorted(set(event.tags))",
        "arraySort(arrayDistinct(tags))",
    ),
    _event("model_requested", _TEXT),
    _event("model", _TEXT),
    _event("provider", _TEXT),
    _event("credential_type", _TEXT),
    _event("streamed", "Bool"),
    _event("status", _TEXT),
    _event("http_status", "UInt16"),
    _event("finish_reason", _TEXT, "event.finish_reason or ''", "ifNull(finish_reason, '')"),
    _event("error_type", _TEXT, "event.error_type or ''", "ifNull(error_type, '')"),
    _event("input_tokens", _TOKENS),
    _event("output_tokens", _TOKENS),
    _event("cached_input_tokens", _TOKENS),
    _event("cache_creation_input_tokens", _TOKENS),
    _event("cache_creation_1h_input_tokens", _TOKENS),
    _event("reasoning_tokens", _TOKENS),
    _event("input_audio_tokens", _TOKENS),
    _event("output_audio_tokens", _TOKENS),
    _event("web_search_requests", _TOKENS),
    _event("zero_data_retention", "Bool"),
    _price("market_cost", MONEY),
    _price("total_cost", MONEY),
    _price("price_known", "Bool"),
    _price("price_source", _TEXT),
    _event("raw_usage", "String"),
)
"""In the order rows are built; ``ingested_at`` is the table's DEFAULT."""

RAW_COLUMNS: Final = tuple(column.name for column in COLUMNS)
PRICE_COLUMNS: Final = tuple(column.name for column in COLUMNS if column.sql is None)
COLUMN_TYPES: Final = {column.name: column.type for column in COLUMNS}


@dataclass(frozen=True, slots=True)
class Check:
    """What an event must satisfy to become a row: ``python`` over ``event`` is true, and so
    is ``sql`` over the staged event (None: the staged columns cannot break it)."""

    field: str
    python: str
    sql: str | None
    message: Callable[[UsageEvent], str]
    """Why the event is refused, once ``python`` is false."""


def _sql_set(values: frozenset[str]) -> str:
    return ", ".join(f"'{value}'" for value in sorted(values))


def _one_of(name: str, values: frozenset[str]) -> Check:
    # A set display of constants: Python compiles it to one frozenset, as fast as a global.
    return Check(
        name,
        f"event.{name} in {{{', '.join(map(repr, sorted(values)))}}}",
        f"{name} IN ({_sql_set(values)})",
        lambda event: f"{name} {getattr(event, name)!r} is not one of {sorted(values)}",
    )


def _not_empty(name: str) -> Check:
    return Check(name, f"event.{name}", f"{name} != ''", lambda _: f"{name} is empty")


def _not_negative(name: str) -> Check:
    return Check(name, f"event.{name} >= 0", f"{name} >= 0", lambda _: f"{name} is negative")


def _first_bad_tag(event: UsageEvent) -> str:
    return next(tag for tag in event.tags if not 1 <= len(tag) <= MAX_TAG_LENGTH)


# In the order they are explained: an event failing several is refused for the first.
CHECKS: Final = (
    Check(
        "event_id",
        "type(event.event_id) is str and _CANONICAL_UUID(event.event_id) is not None",
        f"match(event_id, '^{_UUID}$')",
        lambda event: f"event_id is not a UUID: {event.event_id!r}",
    ),
    _not_empty("team_id"),
    _not_empty("api_key_name"),
    _not_empty("model"),
    _not_empty("provider"),
    _one_of("api_surface", API_SURFACES),
    _one_of("credential_type", CREDENTIAL_TYPES),
    _one_of("status", STATUSES),
    # The staged timestamp is microseconds since the epoch: UTC by its type.
    Check(
        "started_at",
        "event.started_at.tzinfo is not None",
        None,
        lambda _: "started_at has no time zone",
    ),
    _not_negative("duration_ms"),
    _not_negative("input_tokens"),
    _not_negative("output_tokens"),
    _not_negative("cached_input_tokens"),
    _not_negative("cache_creation_input_tokens"),
    _not_negative("cache_creation_1h_input_tokens"),
    _not_negative("reasoning_tokens"),
    _not_negative("input_audio_tokens"),
    _not_negative("output_audio_tokens"),
    _not_negative("web_search_requests"),
    Check(
        "duration_ms",
        f"event.duration_ms <= {MAX_UINT32}",
        f"duration_ms <= {MAX_UINT32}",
        lambda _: f"duration_ms exceeds {MAX_UINT32}",
    ),
    Check(
        "time_to_first_token_ms",
        "event.time_to_first_token_ms is None"
        f" or 0 <= event.time_to_first_token_ms <= {MAX_UINT32}",
        f"time_to_first_token_ms IS NULL OR time_to_first_token_ms BETWEEN 0 AND {MAX_UINT32}",
        lambda _: f"time_to_first_token_ms is not 0..{MAX_UINT32}",
    ),
    Check(
        "http_status",
        "0 <= event.http_status <= 65535",
        "http_status BETWEEN 0 AND 65535",
        lambda _: "http_status is not 0..65535",
    ),
    Check(
        "cached_input_tokens",
        "event.cached_input_tokens + event.cache_creation_input_tokens"
        " + event.input_audio_tokens <= event.input_tokens",
        # Int128: three Int64 counts near their limit must not wrap around.
        "toInt128(cached_input_tokens) + cache_creation_input_tokens + input_audio_tokens"
        " <= input_tokens",
        lambda _: (
            "cached_input_tokens + cache_creation_input_tokens + input_audio_tokens"
            " exceed input_tokens"
        ),
    ),
    Check(
        "cache_creation_1h_input_tokens",
        "event.cache_creation_1h_input_tokens <= event.cache_creation_input_tokens",
        "cache_creation_1h_input_tokens <= cache_creation_input_tokens",
        lambda _: "cache_creation_1h_input_tokens exceed cache_creation_input_tokens",
    ),
    Check(
        "output_audio_tokens",
        "event.output_audio_tokens <= event.output_tokens",
        "output_audio_tokens <= output_tokens",
        lambda _: "output_audio_tokens exceed output_tokens",
    ),
    Check(
        "reasoning_tokens",
        "event.reasoning_tokens <= event.output_tokens",
        "reasoning_tokens <= output_tokens",
        lambda _: "reasoning_tokens exceed output_tokens",
    ),
    Check(
        "tags",
        f"len(event.tags) <= {MAX_TAGS}",
        f"length(tags) <= {MAX_TAGS}",
        lambda _: f"more than {MAX_TAGS} tags",
    ),
    Check(
        "tags",
        f"all(1 <= len(tag) <= {MAX_TAG_LENGTH} for tag in event.tags)",
        f"arrayAll(t -> lengthUTF8(t) BETWEEN 1 AND {MAX_TAG_LENGTH}, tags)",
        lambda event: f"tag {_first_bad_tag(event)[:80]!r} is not 1..{MAX_TAG_LENGTH} characters",
    ),
    Check(
        "user_id",
        f"event.user_id is None or len(event.user_id) <= {MAX_USER_LENGTH}",
        f"user_id IS NULL OR lengthUTF8(user_id) <= {MAX_USER_LENGTH}",
        lambda _: f"user_id is longer than {MAX_USER_LENGTH} characters",
    ),
)

# Python's decoding refuses text that is not UTF-8 before any check runs; the staged
# columns hold the bytes as they came, so the engine checks each text column it writes.
UTF8_SQL: Final = tuple(
    f"arrayAll(t -> isValidUTF8(t), {column.name})"
    if column.type.startswith("Array(")
    else f"isValidUTF8(ifNull({column.name}, ''))"
    for column in COLUMNS
    if column.sql is not None and "String" in column.type
)


def sql_checks() -> str:
    """Every check in SQL, and valid UTF-8: true for a staged event Python accepts (when
    the engine can hold its values; ``consumer/engine_write.py`` adds its own limits)."""
    return " AND ".join(
        f"({condition})" for condition in (*(c.sql for c in CHECKS if c.sql is not None), *UTF8_SQL)
    )


def _compile(parameters: str, expression: str) -> Any:
    # Only this module's own text is compiled, never data.
    namespace = {"_CANONICAL_UUID": _CANONICAL_UUID}
    return eval(f"lambda {parameters}: {expression}", namespace)  # noqa: S307


passes: Final[Callable[[UsageEvent], bool]] = _compile(
    "event", "True if " + " and ".join(f"({check.python})" for check in CHECKS) + " else False"
)
"""Whether the event passes every check: the consumer's common case, in one expression."""

CHECK_TESTS: Final[tuple[Callable[[UsageEvent], Any], ...]] = tuple(
    _compile("event", check.python) for check in CHECKS
)
"""Each check's ``python``, compiled, in ``CHECKS`` order: true when the event passes."""


def failure(event: UsageEvent) -> str | None:
    """The message of the first check the event fails, or None."""
    for test, check in zip(CHECK_TESTS, CHECKS, strict=True):
        if not test(event):
            return check.message(event)
    return None


row: Final[Callable[[UsageEvent, Costs], list[Any]]] = _compile(
    "event, costs", "[" + ", ".join(column.python for column in COLUMNS) + "]"
)
"""The event's row, in ``RAW_COLUMNS`` order."""
