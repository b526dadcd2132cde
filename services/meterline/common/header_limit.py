"""A limit on the size of a request's headers, for every HTTP service.

Uvicorn's httptools parser takes headers of any size (megabytes of them), and every one
of them is then decoded, matched and logged by whoever reads it. Requests whose header
names and values add up to more than the limit are answered 431 (Request Header Fields
Too Large) before any route, key check or provider call sees them, in the error format
of the service that was called (each service passes its own).

Here because both HTTP services, the ingress and the query service, mount it, and they
share code only through ``common``."""

from __future__ import annotations

from collections.abc import Callable
from typing import Final

from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

MAX_HEADER_BYTES: Final = 64 * 1024
"""Far above what an SDK sends (a key, a few tags, tracing headers: a few KiB), far
below what would cost the service anything."""

HEADERS_TOO_LARGE: Final = 431


class HeaderSizeLimit:
    """ASGI middleware: refuse a request whose headers total more than ``max_bytes``
    (names and values). ``refusal(path, status, message)`` builds the answer."""

    def __init__(
        self,
        app: ASGIApp,
        refusal: Callable[[str, int, str], Response],
        max_bytes: int = MAX_HEADER_BYTES,
    ) -> None:
        self.app = app
        self.refusal = refusal
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            size = sum(len(name) + len(value) for name, value in scope["headers"])
            if size > self.max_bytes:
                message = f"request headers total {size} bytes; the limit is {self.max_bytes} bytes"
                path: str = scope.get("path", "")
                # The body is never read: the connection closes after the answer, so an
                # unread body cannot be taken for the next request.
                response = self.refusal(path, HEADERS_TOO_LARGE, message)
                response.headers["connection"] = "close"
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)
