"""What the gateway knows about a request before the provider answers, and how it becomes
the one usage event of that request once the answer is complete."""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Final, Protocol

from starlette.responses import Response, StreamingResponse
from starlette.types import Message, Receive, Scope, Send

from meterline.common.events import UsageEvent
from meterline.ingress.observe import published
from meterline.ingress.publishing.protocol import UsagePublisher
from meterline.ingress.usage import NO_USAGE, Usage

EVENT_ID_HEADER: Final = "x-meterline-event-id"

log = logging.getLogger("meterline.ingress")


@dataclass(slots=True)
class RequestRecord:
    team_id: str
    api_key_name: str
    api_surface: str
    model_requested: str
    model: str
    provider: str
    credential_type: str
    streamed: bool
    user_id: str | None
    tags: list[str]
    started_at: datetime
    started: float
    """perf_counter at the start: durations from the wall clock would jump with NTP."""
    event_id: str = field(default_factory=UsageEvent.new_id)
    first_token_at: float | None = None
    zero_data_retention: bool = False
    """Whether the provider of the route that answers is configured as keeping no data."""

    def mark_first_token(self) -> None:
        if self.first_token_at is None:
            self.first_token_at = time.perf_counter()

    def event(
        self,
        *,
        status: str,
        http_status: int,
        usage: Usage | None = None,
        finish_reason: str | None = None,
        error_type: str | None = None,
    ) -> UsageEvent:
        usage = usage or NO_USAGE
        now = time.perf_counter()
        ttft = (
            round((self.first_token_at - self.started) * 1000)
            if self.first_token_at is not None
            else None
        )
        return UsageEvent(
            event_id=self.event_id,
            team_id=self.team_id,
            api_key_name=self.api_key_name,
            api_surface=self.api_surface,
            started_at=self.started_at,
            duration_ms=round((now - self.started) * 1000),
            time_to_first_token_ms=ttft,
            model_requested=self.model_requested,
            model=self.model,
            provider=self.provider,
            credential_type=self.credential_type,
            streamed=self.streamed,
            status=status,
            http_status=http_status,
            finish_reason=finish_reason,
            error_type=error_type,
            user_id=self.user_id,
            tags=self.tags,
            input_tokens=usage.input_tokens,
            output_tokens=usage.output_tokens,
            cached_input_tokens=usage.cached_input_tokens,
            cache_creation_input_tokens=usage.cache_creation_input_tokens,
            cache_creation_1h_input_tokens=usage.cache_creation_1h_input_tokens,
            reasoning_tokens=usage.reasoning_tokens,
            input_audio_tokens=usage.input_audio_tokens,
            output_audio_tokens=usage.output_audio_tokens,
            web_search_requests=usage.web_search_requests,
            zero_data_retention=self.zero_data_retention,
            raw_usage=usage.raw,
        )


def publish(publisher: UsagePublisher, event: UsageEvent) -> None:
    """Publish without ever failing the request: the provider has answered already."""
    published(event)
    try:
        publisher.publish(event)
    except Exception:  # a publisher must not raise; if one does, the request still stands
        log.exception("publishing usage event %s failed", event.event_id)


class MeteredResponse(Response):
    """A whole response that calls ``on_answer()`` just before its body goes out, so the
    event is built and published after the provider answered but before the caller has
    the answer: a crash can then never lose an answered request's event. (An ASGI server
    does not say whether the caller is still there: a body handed over counts as
    answered.)"""

    def __init__(
        self,
        content: bytes,
        status_code: int,
        headers: Mapping[str, str],
        media_type: str | None,
        on_answer: Callable[[], None],
    ):
        super().__init__(content, status_code, headers, media_type)
        self._on_answer = on_answer

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def send_metered(message: Message) -> None:
            if message["type"] == "http.response.body" and not message.get("more_body"):
                try:
                    self._on_answer()
                except Exception:  # the provider answered; nothing may fail the caller now
                    log.exception("recording usage event failed")
            await send(message)

        await super().__call__(scope, receive, send_metered)


class Relay(Protocol):
    """A stream passed from the provider to the client while it is metered."""

    def chunks(self) -> AsyncIterator[bytes]: ...

    async def close(self) -> None:
        """Release the upstream response and publish the event; idempotent, never raises,
        safe to call from a cancelled task."""
        ...


class MeteredStreamingResponse(StreamingResponse):
    """Streams a relay and closes it whatever happens: normal end, the client going away,
    or the response never starting. Starlette does not close the body iterator itself when
    the client disconnects, and a generator's ``finally`` that never ran would lose the
    event and leak the upstream connection."""

    def __init__(self, relay: Relay, status_code: int, headers: Mapping[str, str], media_type: str):
        super().__init__(relay.chunks(), status_code, headers, media_type)
        self._relay = relay

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            await self._relay.close()
