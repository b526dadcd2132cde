"""The usage event: one finished gateway request, facts only (never prices).

Token convention, the same for every provider (see schemas/avro/usage_event.v2.avsc):
``input_tokens`` counts every input token, cache reads (``cached_input_tokens``) and cache
writes (``cache_creation_input_tokens``) and audio (``input_audio_tokens``) included;
``output_tokens`` counts every output token, ``reasoning_tokens`` and ``output_audio_tokens``
included. ``web_search_requests`` counts searches, not tokens.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from meterline.common.usage_row import (
    API_SURFACES,
    CREDENTIAL_TYPES,
    MAX_TAG_LENGTH,
    MAX_TAGS,
    MAX_UINT32,
    MAX_USER_LENGTH,
    STATUSES,
    failure,
    passes,
)

# The allowed values and limits belong to the checks (usage_row); they are named here too,
# for the code that makes events.
__all__ = [
    "API_SURFACES",
    "CREDENTIAL_TYPES",
    "MAX_TAGS",
    "MAX_TAG_LENGTH",
    "MAX_UINT32",
    "MAX_USER_LENGTH",
    "STATUSES",
    "EventValidationError",
    "UsageEvent",
]


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
    input_audio_tokens: int = 0
    output_audio_tokens: int = 0
    web_search_requests: int = 0
    zero_data_retention: bool = False
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
            "input_audio_tokens": self.input_audio_tokens,
            "output_audio_tokens": self.output_audio_tokens,
            "web_search_requests": self.web_search_requests,
            "zero_data_retention": self.zero_data_retention,
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
            input_audio_tokens=record.get("input_audio_tokens", 0),
            output_audio_tokens=record.get("output_audio_tokens", 0),
            web_search_requests=record.get("web_search_requests", 0),
            zero_data_retention=record.get("zero_data_retention", False),
            raw_usage=record.get("raw_usage", "{}"),
        )

    def validate(self) -> None:
        """Refuse events that would corrupt a report (``usage_row.CHECKS``). Raises
        EventValidationError, with the message of the first check the event fails."""
        if passes(self):
            return
        message = failure(self)
        if message is not None:
            raise EventValidationError(message)
