"""A provider's stream on its way to the client (``SseRelay``), and the streams whose
client left, read to their end in the background for the usage the provider bills
(``Drains``). Either way the request's event is published once, when the stream ends."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Coroutine
from typing import Any

import anyio

from meterline.ingress.metering import RequestRecord, publish
from meterline.ingress.providers.dialect import Dialect, StreamScanner
from meterline.ingress.publishing.protocol import UsagePublisher
from meterline.ingress.sse import EventTooLarge
from meterline.ingress.transport import ProviderResponse, ReadTimedOut, UpstreamError

log = logging.getLogger("meterline.ingress.upstream")


class Drains:
    """Streams whose client went away, read to their end in the background for the usage
    the provider bills. Tracked so that a shutdown waits for them (briefly) and so that a
    running task is never garbage-collected."""

    def __init__(self, seconds: float):
        self.seconds = seconds
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def enabled(self) -> bool:
        return self.seconds > 0

    def __len__(self) -> int:
        return len(self._tasks)

    def start(self, drain: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(drain)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def wait(self, timeout: float) -> None:
        """At shutdown: let the drains finish for up to ``timeout`` seconds, then cancel the
        rest, which publish what they have read so far."""
        if not self._tasks:
            return
        _, pending = await asyncio.wait(set(self._tasks), timeout=timeout)
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.wait(pending)


class SseRelay:
    """One upstream stream on its way to the client; publishes the request's event when
    it ends, however it ends."""

    def __init__(
        self,
        response: ProviderResponse,
        record: RequestRecord,
        publisher: UsagePublisher,
        scanner: StreamScanner,
        dialect: Dialect,
        drains: Drains,
    ):
        self._response = response
        self._record = record
        self._publisher = publisher
        self._scanner = scanner
        self._dialect = dialect
        self._drains = drains
        self._complete = False
        self._transport_error: str | None = None
        self._closed = False

    async def chunks(self) -> AsyncIterator[bytes]:
        try:
            async for chunk in self._response.chunks():
                if not chunk:
                    continue
                # Time to the first bytes of the answer: the provider sends its first
                # event together with the first token.
                self._record.mark_first_token()
                out = self._scanner.feed(chunk)
                if out:
                    yield out
            rest = self._scanner.finish()
            if rest:
                yield rest
            self._complete = True
        except UpstreamError as error:
            # Too late for a status code: the client gets an error event in the stream,
            # which the SDKs raise as an API error.
            timed_out = isinstance(error, ReadTimedOut)
            self._transport_error = "upstream_timeout" if timed_out else "upstream_connection_error"
            message = "the provider stopped answering mid-stream"
            yield self._dialect.stream_error(message, self._transport_error)
        except EventTooLarge as error:
            self._transport_error = "upstream_event_too_large"
            yield self._dialect.stream_error(str(error), self._transport_error)
        finally:
            await self.close()

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if not self._complete and self._transport_error is None and self._drains.enabled:
            # The client went away mid-stream. The provider bills the generation it already
            # started, and on the OpenAI wire its usage only comes in the last chunk: read
            # the rest of the stream in the background for it, off this (possibly
            # cancelled) task.
            self._drains.start(self._drain_and_finish())
            return
        await self._finish()

    async def _drain_and_finish(self) -> None:
        try:
            with anyio.fail_after(self._drains.seconds):
                # Resumes where the relay, consumed or cancelled, stopped reading.
                async for chunk in self._response.chunks():
                    if chunk:
                        self._scanner.feed(chunk)
            self._scanner.finish()
        except TimeoutError:
            log.warning(
                "event %s: the provider's stream did not end within %.0f s of the client "
                "leaving; recorded with the usage seen so far",
                self._record.event_id,
                self._drains.seconds,
            )
        except Exception:
            log.debug("draining an abandoned stream failed", exc_info=True)
        finally:
            await self._finish()

    async def _finish(self) -> None:
        self._response.close()
        scanner = self._scanner
        error_type = self._transport_error or scanner.error_type
        if error_type is not None:
            status = "error"
        elif self._complete:
            status = "success"
        else:
            status = "client_disconnected"
        publish(
            self._publisher,
            self._record.event(
                status=status,
                http_status=self._response.status,
                usage=scanner.usage,
                finish_reason=scanner.finish_reason,
                error_type=error_type,
            ),
        )
