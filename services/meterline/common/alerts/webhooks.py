"""Sending one alert to one webhook: the request (body and headers), the sender (the I/O
boundary: httpx, or in memory for tests), what an answer means, and when to try again."""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Final, Literal, Protocol

import httpx

from meterline.common.alerts.model import Alert, json_body, slack_body
from meterline.common.alerts.signature import (
    ATTEMPT_HEADER,
    IDEMPOTENCY_HEADER,
    SIGNATURE_HEADER,
    signature_header,
)
from meterline.common.config import WebhookConfig

USER_AGENT: Final = "Meterline-Webhooks/1"
_ERROR_TEXT_BYTES: Final = 512
"""Of a refusing receiver's answer, kept in last_error: enough to read its reason."""

Outcome = Literal["delivered", "retry", "failed"]


def build_request(
    webhook: WebhookConfig, alert: Alert, attempt: int
) -> tuple[bytes, dict[str, str]]:
    """The body and headers of one attempt (check ``webhook.missing_env()`` first: an
    unset secret would send it unsigned). Signed at each attempt, so the signature's
    timestamp is fresh however late a retry is."""
    body = slack_body(alert) if webhook.format == "slack" else json_body(alert)
    headers = {
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        IDEMPOTENCY_HEADER: alert.alert_id,
        ATTEMPT_HEADER: str(attempt),
    }
    secret = webhook.secret()
    if secret is not None:
        headers[SIGNATURE_HEADER] = signature_header(secret, body)
    return body, headers


@dataclass(frozen=True, slots=True)
class SendResult:
    status_code: int | None
    """None: no answer (timed out, refused, unreachable)."""
    error: str = ""
    retry_after_seconds: float | None = None


def outcome(result: SendResult) -> Outcome:
    """A 2xx is delivered. No answer, 408, 429 and 5xx are worth another try; any other
    answer (a 4xx, a redirect, which is not followed) says the request itself is wrong, and
    sending it again would be refused again."""
    status = result.status_code
    if status is None:
        return "retry"
    if 200 <= status < 300:
        return "delivered"
    if status in (408, 429) or status >= 500:
        return "retry"
    return "failed"


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    base_seconds: float = 2.0
    max_delay_seconds: float = 3600.0
    max_attempts: int = 60
    """Then the delivery is failed for good. With the defaults the attempts spread over 25
    to 49 hours (waits capped at an hour), so a receiver down for a day still gets
    everything."""

    def delay(
        self,
        failed_attempts: int,
        retry_after_seconds: float | None = None,
        rng: Callable[[], float] = random.random,
    ) -> float:
        """Seconds before the next attempt, after ``failed_attempts`` (1 or more): doubling
        from ``base_seconds`` up to ``max_delay_seconds``, then the upper half of it at
        random ("equal jitter"), so that many deliveries failing together do not come back
        together, while the wait never drops below half the schedule. A receiver's
        Retry-After is honoured up to ``max_delay_seconds``."""
        exponent = min(max(failed_attempts - 1, 0), 60)
        ceiling = min(self.max_delay_seconds, self.base_seconds * math.ldexp(1.0, exponent))
        wait = ceiling / 2 + ceiling / 2 * rng()
        if retry_after_seconds is not None:
            wait = max(wait, min(retry_after_seconds, self.max_delay_seconds))
        return wait


class WebhookSender(Protocol):
    async def send(
        self, url: str, body: bytes, headers: dict[str, str], timeout_seconds: float
    ) -> SendResult:
        """POST ``body``; never raises for what the network or the receiver did."""
        ...

    async def aclose(self) -> None: ...


def _retry_after(value: str | None) -> float | None:
    # Only the seconds form: the HTTP-date form is rare from webhook receivers, and the
    # backoff applies without it anyway.
    if value is None or not value.strip().isdigit():
        return None
    return float(value.strip())


class HttpxSender:
    def __init__(self, client: httpx.AsyncClient | None = None):
        # Redirects are not followed: a signed alert goes only where it was configured to.
        self._client = client or httpx.AsyncClient(follow_redirects=False)

    async def send(
        self, url: str, body: bytes, headers: dict[str, str], timeout_seconds: float
    ) -> SendResult:
        try:
            async with self._client.stream(
                "POST", url, content=body, headers=headers, timeout=timeout_seconds
            ) as response:
                text = b""
                if not response.is_success:
                    async for chunk in response.aiter_bytes():
                        text += chunk
                        if len(text) >= _ERROR_TEXT_BYTES:
                            break
                return SendResult(
                    response.status_code,
                    "" if response.is_success else _error_text(response.status_code, text),
                    _retry_after(response.headers.get("retry-after")),
                )
        except httpx.TimeoutException:
            return SendResult(None, f"timed out after {timeout_seconds:g} s")
        except httpx.HTTPError as error:
            return SendResult(None, f"{type(error).__name__}: {error}"[:_ERROR_TEXT_BYTES])

    async def aclose(self) -> None:
        await self._client.aclose()


def _error_text(status: int, body: bytes) -> str:
    text = body[:_ERROR_TEXT_BYTES].decode("utf-8", "replace").strip()
    return f"HTTP {status}" + (f": {text}" if text else "")


@dataclass
class SentRequest:
    url: str
    body: bytes
    headers: dict[str, str]


@dataclass
class MemorySender:
    """Records each request and answers from ``answers`` (one per request, in order), then
    with ``default`` once they run out."""

    answers: list[SendResult] = field(default_factory=list)
    default: SendResult = field(default_factory=lambda: SendResult(200))
    sent: list[SentRequest] = field(default_factory=list)

    async def send(
        self, url: str, body: bytes, headers: dict[str, str], timeout_seconds: float
    ) -> SendResult:
        self.sent.append(SentRequest(url, body, dict(headers)))
        return self.answers.pop(0) if self.answers else self.default

    async def aclose(self) -> None:
        return None
