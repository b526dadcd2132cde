"""Alerts for tests: a budget threshold alert with overridable fields."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from meterline.common.alerts import Alert

PERIOD = datetime(2026, 3, 1, tzinfo=UTC)


def budget_alert(**overrides: Any) -> Alert:
    values: dict[str, Any] = {
        "team_id": "acme",
        "kind": "budget_threshold",
        "subject": "monthly",
        "scope": (("user", "ana"), ("tag", "feature:x")),
        "period_start": PERIOD,
        "threshold_percent": 80,
        "spend_usd": Decimal("80.125"),
        "limit_usd": Decimal("100"),
        "message": "acme has spent $80.125 of its $100 monthly budget.",
    }
    return Alert.new(**(values | overrides))
