"""The alert: what was decided, its deterministic id, and its bodies on the wire.

The id is the idempotency key end to end: the store keeps one row per id, the delivery
sends it as ``Meterline-Idempotency-Key``, and a receiver drops a repeat by it. It is a
hash of what makes the alert the same alert (team, kind, subject, scope, period,
threshold), never of when or by whom it was raised, so two replicas or a restarted process
raising it again get the same id."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any, Final, get_args

from meterline.common.config import AlertKind

KINDS: Final[tuple[AlertKind, ...]] = get_args(AlertKind)

Scope = tuple[tuple[str, str], ...]
"""Dimension and value pairs the alert is about, e.g. (("user", "ana"), ("tag", "x"))."""


def alert_id(
    team_id: str,
    kind: AlertKind,
    subject: str,
    scope: Scope,
    period_start: datetime,
    threshold_percent: int | None,
) -> str:
    # A JSON array is unambiguous whatever the strings hold (no separator can be forged),
    # and the scope is sorted because the same scope listed in another order is the same
    # alert.
    canonical = json.dumps(
        [
            team_id,
            kind,
            subject,
            sorted([list(pair) for pair in scope]),
            utc_text(period_start),
            threshold_percent,
        ],
        separators=(",", ":"),
        ensure_ascii=False,
    )
    return "alert_" + hashlib.sha256(canonical.encode()).hexdigest()[:32]


def utc_text(value: datetime) -> str:
    """ISO 8601 in UTC with milliseconds and a Z, the precision the store keeps."""
    value = value.astimezone(UTC)
    return value.strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}Z"


def _utc_millisecond(value: datetime, name: str) -> datetime:
    # A naive datetime could be any zone's: refused rather than guessed.
    if value.tzinfo is None:
        raise ValueError(f"{name} must carry a time zone (UTC), not be naive")
    value = value.astimezone(UTC)
    return value.replace(microsecond=value.microsecond // 1000 * 1000)


@dataclass(frozen=True, slots=True)
class Alert:
    alert_id: str
    team_id: str
    kind: AlertKind
    subject: str
    """The budget's id; for a spike, the dimension it is about."""
    scope: Scope
    period_start: datetime
    threshold_percent: int | None
    spend_usd: Decimal
    limit_usd: Decimal | None
    baseline_usd: Decimal | None
    message: str
    """A sentence for a person, as it will read in Slack or an email."""
    raised_at: datetime

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown alert kind {self.kind!r}")
        for name in ("period_start", "raised_at"):
            value: datetime = getattr(self, name)
            if value.utcoffset() != timedelta(0):
                raise ValueError(f"{name} must be a UTC datetime, not {value!r}")
        for name in ("spend_usd", "limit_usd", "baseline_usd"):
            money = getattr(self, name)
            if money is not None and not isinstance(money, Decimal):
                raise TypeError(f"{name} must be a Decimal, not {type(money).__name__}")

    @classmethod
    def new(
        cls,
        *,
        team_id: str,
        kind: AlertKind,
        subject: str,
        scope: Scope = (),
        period_start: datetime,
        threshold_percent: int | None = None,
        spend_usd: Decimal,
        limit_usd: Decimal | None = None,
        baseline_usd: Decimal | None = None,
        message: str,
        raised_at: datetime | None = None,
    ) -> Alert:
        """An alert with its id computed; ``raised_at`` defaults to now, both times cut to
        the millisecond so the alert reads back from the store equal to itself."""
        period_start = _utc_millisecond(period_start, "period_start")
        return cls(
            alert_id=alert_id(team_id, kind, subject, scope, period_start, threshold_percent),
            team_id=team_id,
            kind=kind,
            subject=subject,
            scope=scope,
            period_start=period_start,
            threshold_percent=threshold_percent,
            spend_usd=spend_usd,
            limit_usd=limit_usd,
            baseline_usd=baseline_usd,
            message=message,
            raised_at=_utc_millisecond(raised_at or datetime.now(UTC), "raised_at"),
        )


def decimal_text(value: Decimal) -> str:
    """Exact, without trailing zeros or an exponent: the warehouse's Decimal(38, 12) and
    the value raised write the same text. (``Decimal.normalize`` would round to the
    context's 28 digits.)"""
    text = format(value, "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return "0" if text == "-0" else text


def _money(value: Decimal | None) -> str | None:
    return None if value is None else decimal_text(value)


def alert_fields(alert: Alert) -> dict[str, Any]:
    """The alert's fields with stable names, money as decimal strings: the JSON webhook
    body and each item of ``GET /v1/alerts``."""
    return {
        "alert_id": alert.alert_id,
        "team_id": alert.team_id,
        "kind": alert.kind,
        "subject": alert.subject,
        "scope": [{"dimension": name, "value": value} for name, value in alert.scope],
        "period_start": utc_text(alert.period_start),
        "threshold_percent": alert.threshold_percent,
        "spend_usd": _money(alert.spend_usd),
        "limit_usd": _money(alert.limit_usd),
        "baseline_usd": _money(alert.baseline_usd),
        "message": alert.message,
        "raised_at": utc_text(alert.raised_at),
    }


def json_body(alert: Alert) -> bytes:
    return json.dumps(alert_fields(alert), separators=(",", ":"), ensure_ascii=False).encode()


def _slack_escape(text: str) -> str:
    # The three characters Slack's message formatting reserves, escaped as it documents.
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def slack_text(alert: Alert) -> str:
    scope = ", ".join(f"{name} {value}" for name, value in alert.scope)
    return _slack_escape(
        f"Meterline alert for team {alert.team_id}: {alert.message}"
        + (f" (scope: {scope})" if scope else "")
    )


def slack_body(alert: Alert) -> bytes:
    return json.dumps({"text": slack_text(alert)}, ensure_ascii=False).encode()
