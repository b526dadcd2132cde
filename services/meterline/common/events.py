"""The usage event: one finished gateway request, facts only (never prices).

Token convention, the same for every provider (see schemas/avro/usage_event.v1.avsc):
``input_tokens`` counts every input token, cache reads (``cached_input_tokens``) and cache
writes (``cache_creation_input_tokens``) included; ``output_tokens`` counts every output token,
``reasoning_tokens`` included.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final

API_SURFACES: Final = frozenset({"chat_completions", "responses", "messages"})
CREDENTIAL_TYPES: Final = frozenset({"system", "byok"})
STATUSES: Final = frozenset({"success", "error", "client_disconnected"})

MAX_TAGS: Final = 10
MAX_TAG_LENGTH: Final = 64
MAX_USER_LENGTH: Final = 256
MAX_UINT32: Final = 2**32 - 1
"""The raw table keeps durations in UInt32 milliseconds (about 49 days) and HTTP statuses
in UInt16: an event outside them cannot be stored as it is."""

# What str(uuid.uuid4()) writes and the Avro uuid type specifies: 8-4-4-4-12 hex digits.
# Other spellings uuid.UUID accepts (braces, "urn:uuid:", no hyphens) are refused, because
# the warehouse's UUID column takes this one only.
_CANONICAL_UUID: Final = re.compile(
    r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
).fullmatch


class EventValidationError(ValueError):
    """An event that must not reach the warehouse; the message says which field and why."""


@dataclass(slots=True)
class UsageEvent:
    event_id: str
    team_id: str
    api_key_name: str
    api_surface: str
    started_at: datetime
    duration_ms: int
    model_requested: str
    model: str
    provider: str
    credential_type: str
    streamed: bool
    status: str
    http_status: int
    input_tokens: int
    output_tokens: int
    cached_input_tokens: int = 0
    cache_creation_input_tokens: int = 0
    cache_creation_1h_input_tokens: int = 0
    reasoning_tokens: int = 0
    time_to_first_token_ms: int | None = None
    user_id: str | None = None
    tags: list[str] = field(default_factory=list)
    finish_reason: str | None = None
    error_type: str | None = None
    raw_usage: str = "{}"

    @staticmethod
    def new_id() -> str:
        return str(uuid.uuid4())

    def to_record(self) -> dict[str, Any]:
        """The Avro record for this event (field names are the schema's)."""
        return {
            "event_id": self.event_id,
            "team_id": self.team_id,
            "api_key_name": self.api_key_name,
            "api_surface": self.api_surface,
            "started_at": self.started_at,
            "duration_ms": self.duration_ms,
            "time_to_first_token_ms": self.time_to_first_token_ms,
            "user_id": self.user_id,
            "tags": self.tags,
            "model_requested": self.model_requested,
            "model": self.model,
            "provider": self.provider,
            "credential_type": self.credential_type,
            "streamed": self.streamed,
            "status": self.status,
            "http_status": self.http_status,
            "finish_reason": self.finish_reason,
            "error_type": self.error_type,
            "input_tokens": self.input_tokens,
            "output_tokens": self.output_tokens,
            "cached_input_tokens": self.cached_input_tokens,
            "cache_creation_input_tokens": self.cache_creation_input_tokens,
            "cache_creation_1h_input_tokens": self.cache_creation_1h_input_tokens,
            "reasoning_tokens": self.reasoning_tokens,
            "raw_usage": self.raw_usage,
        }

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> UsageEvent:
        """Build an event from a decoded Avro record of any known schema version.

        Fields a newer schema adds are ignored here until the model learns them."""
        started_at = record["started_at"]
        if isinstance(started_at, int):
            started_at = datetime.fromtimestamp(started_at / 1_000_000, tz=UTC)
        return cls(
            event_id=str(record["event_id"]),
            team_id=record["team_id"],
            api_key_name=record["api_key_name"],
            api_surface=record["api_surface"],
            started_at=started_at,
            duration_ms=record["duration_ms"],
            time_to_first_token_ms=record.get("time_to_first_token_ms"),
            user_id=record.get("user_id"),
            tags=list(record.get("tags") or []),
            model_requested=record["model_requested"],
            model=record["model"],
            provider=record["provider"],
            credential_type=record["credential_type"],
            streamed=record["streamed"],
            status=record["status"],
            http_status=record["http_status"],
            finish_reason=record.get("finish_reason"),
            error_type=record.get("error_type"),
            input_tokens=record["input_tokens"],
            output_tokens=record["output_tokens"],
            cached_input_tokens=record.get("cached_input_tokens", 0),
            cache_creation_input_tokens=record.get("cache_creation_input_tokens", 0),
            cache_creation_1h_input_tokens=record.get("cache_creation_1h_input_tokens", 0),
            reasoning_tokens=record.get("reasoning_tokens", 0),
            raw_usage=record.get("raw_usage", "{}"),
        )

    def validate(self) -> None:
        """Refuse events that would corrupt a report. Raises EventValidationError."""
        # The consumer validates every event it reads, so the common case (all fine) is
        # checked with as few Python operations as possible; any failure is then explained
        # by the field-by-field checks below, in the same order and with the same messages.
        tags = self.tags
        cached = self.cached_input_tokens
        written = self.cache_creation_input_tokens
        if (
            type(self.event_id) is str
            and _CANONICAL_UUID(self.event_id) is not None
            and self.team_id
            and self.api_key_name
            and self.model
            and self.provider
            and self.api_surface in API_SURFACES
            and self.credential_type in CREDENTIAL_TYPES
            and self.status in STATUSES
            and self.started_at.tzinfo is not None
            and 0 <= self.duration_ms <= MAX_UINT32
            and (
                self.time_to_first_token_ms is None
                or 0 <= self.time_to_first_token_ms <= MAX_UINT32
            )
            and 0 <= self.http_status <= 65535
            and self.output_tokens >= self.reasoning_tokens >= 0
            and 0 <= self.cache_creation_1h_input_tokens <= written
            and cached >= 0
            and cached + written <= self.input_tokens
            and len(tags) <= MAX_TAGS
            and all(1 <= len(tag) <= MAX_TAG_LENGTH for tag in tags)
            and (self.user_id is None or len(self.user_id) <= MAX_USER_LENGTH)
        ):
            return
        self._explain_invalid()

    def _explain_invalid(self) -> None:
        if type(self.event_id) is not str or _CANONICAL_UUID(self.event_id) is None:
            raise EventValidationError(f"event_id is not a UUID: {self.event_id!r}")
        for name in ("team_id", "api_key_name", "model", "provider"):
            if not getattr(self, name):
                raise EventValidationError(f"{name} is empty")
        if self.api_surface not in API_SURFACES:
            raise EventValidationError(
                f"api_surface {self.api_surface!r} is not one of {sorted(API_SURFACES)}"
            )
        if self.credential_type not in CREDENTIAL_TYPES:
            raise EventValidationError(
                f"credential_type {self.credential_type!r} is not one of {sorted(CREDENTIAL_TYPES)}"
            )
        if self.status not in STATUSES:
            raise EventValidationError(f"status {self.status!r} is not one of {sorted(STATUSES)}")
        if self.started_at.tzinfo is None:
            raise EventValidationError("started_at has no time zone")
        for name in (
            "duration_ms",
            "input_tokens",
            "output_tokens",
            "cached_input_tokens",
            "cache_creation_input_tokens",
            "cache_creation_1h_input_tokens",
            "reasoning_tokens",
        ):
            if getattr(self, name) < 0:
                raise EventValidationError(f"{name} is negative")
        if self.duration_ms > MAX_UINT32:
            raise EventValidationError(f"duration_ms exceeds {MAX_UINT32}")
        ttft = self.time_to_first_token_ms
        if ttft is not None and not 0 <= ttft <= MAX_UINT32:
            raise EventValidationError(f"time_to_first_token_ms is not 0..{MAX_UINT32}")
        if not 0 <= self.http_status <= 65535:
            raise EventValidationError("http_status is not 0..65535")
        if self.cached_input_tokens + self.cache_creation_input_tokens > self.input_tokens:
            raise EventValidationError(
                "cached_input_tokens + cache_creation_input_tokens exceed input_tokens"
            )
        if self.cache_creation_1h_input_tokens > self.cache_creation_input_tokens:
            raise EventValidationError(
                "cache_creation_1h_input_tokens exceed cache_creation_input_tokens"
            )
        if self.reasoning_tokens > self.output_tokens:
            raise EventValidationError("reasoning_tokens exceed output_tokens")
        if len(self.tags) > MAX_TAGS:
            raise EventValidationError(f"more than {MAX_TAGS} tags")
        for tag in self.tags:
            if not 1 <= len(tag) <= MAX_TAG_LENGTH:
                raise EventValidationError(
                    f"tag {tag[:80]!r} is not 1..{MAX_TAG_LENGTH} characters"
                )
        if self.user_id is not None and len(self.user_id) > MAX_USER_LENGTH:
            raise EventValidationError(f"user_id is longer than {MAX_USER_LENGTH} characters")
