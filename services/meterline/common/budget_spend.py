"""What a budget's values have spent in their period, as the warehouse knows it: read from
the hourly rollup (``usage_hourly``, which keeps every dimension a scope can name and a
request's whole tag set, so a request counts once per budget value), never from raw events.

``landed`` is the one look at the raw table: which of a few event ids the warehouse holds
already, by the primary key's team and hour, so an ingress can stop counting its own
admissions once their events are in the rollup.

Both are blocking calls: callers run them in a worker thread."""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, Final, Protocol

import httpx
from clickhouse_connect.driver.client import Client

from meterline.common.budgets import Budget, BudgetValue, Dimension

COLUMN: Final[dict[Dimension, str]] = {
    "api_key_name": "api_key_name",
    "user": "user_id",
    "provider": "provider",
    "model": "model",
}
"""Each dimension's column in the rollup; ``tag`` is a member of ``tags``."""


BlockedKey = tuple[str, str, BudgetValue, datetime | None]
"""(team, budget id, budget value, period start)."""

NEVER_RESETS: Final = datetime(1970, 1, 1, tzinfo=UTC)
"""``period_start`` in ``budget_blocked_requests`` for a budget that never resets."""


@dataclass(frozen=True, slots=True)
class SpendAsk:
    """One refresh's questions: each budget's spend from its period's start (None: ever),
    and, per team, which of its admitted events (started at ``since`` or later) landed."""

    budgets: Sequence[tuple[str, Budget, datetime | None]]
    pending: Mapping[str, tuple[Sequence[str], datetime]]
    blocked: Mapping[BlockedKey, int] = field(default_factory=dict)
    """Requests refused since the last ask, to be added to ``budget_blocked_requests``."""
    api_budgets: bool = False
    """Also list the budgets made through the API (``SpendAnswer.api_budgets``)."""


@dataclass(slots=True)
class SpendAnswer:
    committed: dict[tuple[str, str], dict[BudgetValue, Decimal]]
    """Per (team, budget id): each value's spend; values without spend are left out."""
    landed: set[str]
    api_budgets: dict[str, list[Budget]] = field(default_factory=dict)
    """Per team, the budgets made through the API (when asked for)."""


class SpendSource(Protocol):
    def read(self, ask: SpendAsk) -> SpendAnswer:
        """Blocking. The landed events are read before the spend: an event that lands
        between the two is then counted twice until the next read, never not at all."""
        ...


def spend_query(team_id: str, budget: Budget, since: datetime | None) -> tuple[str, dict[str, Any]]:
    parameters: dict[str, Any] = {"team": team_id}
    where = ["team_id = {team:String}"]
    if since is not None:
        # The hour the period starts in: a period starting at a half hour counts that hour.
        where.append("hour >= toStartOfHour({since:DateTime('UTC')})")
        parameters["since"] = since
    if not budget.include_byok:
        where.append("credential_type != 'byok'")
    for index, (dimension, value) in enumerate(sorted(budget.fixed)):
        name = f"v{index}"
        parameters[name] = value
        if dimension == "tag":
            where.append(f"has(tags, {{{name}:String}})")
        else:
            where.append(f"{COLUMN[dimension]} = {{{name}:String}}")
    keys = []
    for dimension in budget.wildcards:
        if dimension == "tag":
            keys.append("arrayJoin(tags)")
        elif dimension == "user":
            # A request without a user is nobody's: it counts for no user's budget.
            where.append("user_id != ''")
            keys.append("user_id")
        else:
            keys.append(COLUMN[dimension])
    selected = [f"{key} AS k{i}" for i, key in enumerate(keys)]
    group = f" GROUP BY {', '.join(f'k{i}' for i in range(len(keys)))}" if keys else ""
    sql = (
        f"SELECT {', '.join([*selected, f'sum({budget.counts}) AS spend'])}"
        f" FROM usage_hourly WHERE {' AND '.join(where)}{group}"
    )
    return sql, parameters


BLOCKED_COLUMNS: Final = ("team_id", "budget_id", "budget_value", "period_start", "blocked_count")


class WarehouseSpend:
    """``SpendSource`` on ClickHouse (a server, or the embedded engine)."""

    def __init__(self, client_factory: Callable[[], Client]):
        self._client_factory = client_factory
        self._client: Client | None = None

    def _client_or_open(self) -> Client:
        if self._client is None:
            self._client = self._client_factory()
        return self._client

    def _query(self, sql: str, parameters: dict[str, Any]) -> list[Any]:
        return list(self._client_or_open().query(sql, parameters=parameters).result_rows)

    def blocked(
        self, team_id: str, budget_id: str, since: datetime | None
    ) -> dict[BudgetValue, int]:
        """Refused requests of one budget's period, per budget value."""
        rows = self._query(
            "SELECT arrayMap(p -> (p.1, p.2), budget_value) AS pairs, sum(blocked_count)"
            " FROM budget_blocked_requests"
            " WHERE team_id = {team:String} AND budget_id = {budget:String}"
            " AND period_start = {since:DateTime('UTC')} GROUP BY pairs",
            {"team": team_id, "budget": budget_id, "since": since or NEVER_RESETS},
        )
        return {tuple((d, v) for d, v in value): int(count) for value, count in rows}

    def read(self, ask: SpendAsk) -> SpendAnswer:
        if ask.blocked:
            self._client_or_open().insert(
                "budget_blocked_requests",
                [
                    [team_id, budget_id, list(value), since or NEVER_RESETS, count]
                    for (team_id, budget_id, value, since), count in ask.blocked.items()
                ],
                column_names=BLOCKED_COLUMNS,
            )
        landed: set[str] = set()
        for team_id, (event_ids, since) in ask.pending.items():
            landed |= self._landed(team_id, event_ids, since)
        committed = {
            (team_id, budget.id): self._committed(team_id, budget, since)
            for team_id, budget, since in ask.budgets
        }
        api = api_budgets(self._client_or_open()) if ask.api_budgets else {}
        return SpendAnswer(committed, landed, api)

    def _committed(
        self, team_id: str, budget: Budget, since: datetime | None
    ) -> dict[BudgetValue, Decimal]:
        sql, parameters = spend_query(team_id, budget, since)
        wildcards = budget.wildcards
        spent: dict[BudgetValue, Decimal] = {}
        for row in self._query(sql, parameters):
            *values, spend = row
            if spend:
                spent[tuple(zip(wildcards, values, strict=True))] = Decimal(spend)
        return spent

    def _landed(self, team_id: str, event_ids: Collection[str], since: datetime) -> set[str]:
        if not event_ids:
            return set()
        rows = self._query(
            "SELECT DISTINCT toString(event_id) FROM usage_events"
            " WHERE team_id = {team:String}"
            " AND toStartOfHour(started_at) >= toStartOfHour({since:DateTime64(3, 'UTC')})"
            " AND event_id IN {ids:Array(UUID)}",
            {"team": team_id, "since": since, "ids": list(event_ids)},
        )
        return {row[0] for row in rows}

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None


def api_budgets(client: Client) -> dict[str, list[Budget]]:
    """Every team's budgets made through the API: each budget's latest row, unless deleted."""
    rows = client.query(
        "SELECT team_id, budget_id, argMax(definition, updated_at),"
        " argMax(deleted, updated_at) AS gone FROM budgets"
        " GROUP BY team_id, budget_id HAVING NOT gone ORDER BY team_id, budget_id"
    ).result_rows
    found: dict[str, list[Budget]] = {}
    for team_id, _, definition, _ in rows:
        found.setdefault(team_id, []).append(Budget.model_validate_json(definition))
    return found


def store_budget(
    client: Client, team_id: str, budget: Budget, key_name: str, *, deleted: bool = False
) -> None:
    """A budget made, changed (the same id again) or deleted through the API."""
    client.insert(
        "budgets",
        [[team_id, budget.id, budget.model_dump_json(), deleted, datetime.now(UTC), key_name]],
        column_names=("team_id", "budget_id", "definition", "deleted", "updated_at", "updated_by"),
    )


class MemorySpend:
    """``SpendSource`` for unit tests: spend set by the test, events marked landed."""

    def __init__(self) -> None:
        self.spent: dict[tuple[str, str], dict[BudgetValue, Decimal]] = {}
        self.landed_ids: set[str] = set()
        self.api: dict[str, list[Budget]] = {}
        self.fail = False

    def read(self, ask: SpendAsk) -> SpendAnswer:
        if self.fail:
            raise ConnectionError("the warehouse is down")
        pending = {i for ids, _ in ask.pending.values() for i in ids}
        committed = {
            (team_id, budget.id): dict(self.spent.get((team_id, budget.id), {}))
            for team_id, budget, _ in ask.budgets
        }
        api = {team: list(budgets) for team, budgets in self.api.items()} if ask.api_budgets else {}
        return SpendAnswer(committed, self.landed_ids & pending, api)


# ---- Over HTTP: an ingress asks the query service, which reads the warehouse. ----

INTERNAL_SPEND_PATH: Final = "/internal/v1/budget-spend"


def ask_to_json(ask: SpendAsk) -> dict[str, Any]:
    return {
        "budgets": [
            {
                "team_id": team_id,
                "budget": budget.model_dump(mode="json"),
                "since": None if since is None else since.isoformat(),
            }
            for team_id, budget, since in ask.budgets
        ],
        "pending": [
            {"team_id": team_id, "event_ids": list(ids), "since": since.isoformat()}
            for team_id, (ids, since) in ask.pending.items()
        ],
        "blocked": [
            {
                "team_id": team_id,
                "budget_id": budget_id,
                "value": [list(pair) for pair in value],
                "period_start": None if since is None else since.isoformat(),
                "count": count,
            }
            for (team_id, budget_id, value, since), count in ask.blocked.items()
        ],
        "api_budgets": ask.api_budgets,
    }


def ask_from_json(payload: Any) -> SpendAsk:
    """Raises ValueError (pydantic's ValidationError is one), KeyError or TypeError on a
    malformed ask."""
    if not isinstance(payload, dict):
        raise ValueError("the body must be a JSON object")
    budgets = [
        (
            str(item["team_id"]),
            Budget.model_validate(item["budget"]),
            None if item["since"] is None else _instant(item["since"]),
        )
        for item in _list(payload, "budgets")
    ]
    pending = {
        str(item["team_id"]): ([str(i) for i in item["event_ids"]], _instant(item["since"]))
        for item in _list(payload, "pending")
    }
    blocked = {
        (
            str(item["team_id"]),
            str(item["budget_id"]),
            tuple((str(d), str(v)) for d, v in item["value"]),
            None if item["period_start"] is None else _instant(item["period_start"]),
        ): int(item["count"])
        for item in _list(payload, "blocked")
    }
    return SpendAsk(budgets, pending, blocked, bool(payload.get("api_budgets", False)))


def answer_to_json(answer: SpendAnswer) -> dict[str, Any]:
    return {
        "committed": [
            {
                "team_id": team_id,
                "budget_id": budget_id,
                "values": [
                    {"value": [list(pair) for pair in value], "spend": str(spend)}
                    for value, spend in values.items()
                ],
            }
            for (team_id, budget_id), values in answer.committed.items()
        ],
        "landed": sorted(answer.landed),
        "api_budgets": {
            team_id: [b.model_dump(mode="json") for b in budgets]
            for team_id, budgets in answer.api_budgets.items()
        },
    }


def answer_from_json(payload: Any) -> SpendAnswer:
    committed = {
        (str(item["team_id"]), str(item["budget_id"])): {
            tuple((str(d), str(v)) for d, v in entry["value"]): Decimal(entry["spend"])
            for entry in item["values"]
        }
        for item in payload["committed"]
    }
    api = {
        str(team_id): [Budget.model_validate(b) for b in budgets]
        for team_id, budgets in payload.get("api_budgets", {}).items()
    }
    return SpendAnswer(committed, {str(i) for i in payload["landed"]}, api)


def _list(payload: dict[str, Any], name: str) -> list[dict[str, Any]]:
    items = payload.get(name, [])
    if not isinstance(items, list) or not all(isinstance(i, dict) for i in items):
        raise ValueError(f"{name} must be a list of objects")
    return items


def _instant(text: Any) -> datetime:
    instant = datetime.fromisoformat(str(text))
    if instant.tzinfo is None:
        raise ValueError(f"{text!r} has no UTC offset")
    return instant


class QuerySpend:
    """``SpendSource`` over HTTP: the query service's ``INTERNAL_SPEND_PATH``, with the
    shared internal token. An ingress needs no warehouse credentials this way."""

    def __init__(self, base_url: str, token: str, timeout: float = 10.0):
        self._client = httpx.Client(
            base_url=base_url.rstrip("/"),
            headers={"authorization": f"Bearer {token}"},
            timeout=timeout,
        )

    def read(self, ask: SpendAsk) -> SpendAnswer:
        response = self._client.post(INTERNAL_SPEND_PATH, json=ask_to_json(ask))
        response.raise_for_status()
        return answer_from_json(response.json())

    def close(self) -> None:
        self._client.close()
