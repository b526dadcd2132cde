"""The webhook signature, on Stripe's scheme.

Each request carries ``Meterline-Signature: t=<unix seconds>,v1=<hex>``, where the hex is
HMAC-SHA256 with the webhook's secret over ``f"{t}.{body}"`` (the body's exact bytes). The
timestamp is signed with the body, so a receiver that refuses old timestamps
(``tolerance_seconds``) cannot be sent a captured request again later; the idempotency key
(``Meterline-Idempotency-Key``) is what lets it drop the repeats a retry may bring. A header
may carry several ``v1`` values (one per secret while a secret is rotated): any one
matching is enough."""

from __future__ import annotations

import hashlib
import hmac
import time
from typing import Final

SIGNATURE_HEADER: Final = "Meterline-Signature"
IDEMPOTENCY_HEADER: Final = "Meterline-Idempotency-Key"
ATTEMPT_HEADER: Final = "Meterline-Delivery-Attempt"


def _as_bytes(value: str | bytes) -> bytes:
    return value.encode() if isinstance(value, str) else value


def sign(secret: str | bytes, timestamp: int, body: str | bytes) -> str:
    signed = str(timestamp).encode() + b"." + _as_bytes(body)
    return hmac.new(_as_bytes(secret), signed, hashlib.sha256).hexdigest()


def signature_header(secret: str | bytes, body: str | bytes, timestamp: int | None = None) -> str:
    t = int(time.time()) if timestamp is None else timestamp
    return f"t={t},v1={sign(secret, t, body)}"


def verify_signature(
    secret: str | bytes,
    header: str | None,
    body: str | bytes,
    tolerance_seconds: float = 300,
    now: float | None = None,
) -> bool:
    """True when ``header`` signs ``body`` with ``secret`` and its timestamp is within
    ``tolerance_seconds`` of ``now`` (default: the clock). Give it the raw body, before any
    JSON parsing: a re-serialised body no longer matches."""
    if not header:
        return False
    timestamp: int | None = None
    candidates: list[str] = []
    for part in header.split(","):
        name, _, value = part.strip().partition("=")
        if name == "t":
            try:
                timestamp = int(value)
            except ValueError:
                return False
        elif name == "v1":
            candidates.append(value)
    if timestamp is None or not candidates:
        return False
    current = time.time() if now is None else now
    if abs(current - timestamp) > tolerance_seconds:
        return False
    expected = sign(secret, timestamp, body)
    # compare_digest for each, so the time taken says nothing about how much matched.
    return any(hmac.compare_digest(expected, candidate) for candidate in candidates)
