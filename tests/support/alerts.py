"""Alerts for tests: a budget threshold alert with overridable fields, and a webhook
receiver on this machine that checks the signature."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from meterline.common.alerts import Alert, verify_signature

PERIOD = datetime(2026, 3, 1, tzinfo=UTC)
SECRET = "whsec_receiver_test"


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


@dataclass
class Receiver:
    """A webhook receiver as a team would write one: verify, then keep by idempotency key."""

    port: int
    secret: str = SECRET
    status: int = 200
    hang_seconds: float = 0.0
    """Hangs this long on the first request of each alert (by idempotency key)."""
    received: list[tuple[str, bytes]] = field(default_factory=list)
    bad_signatures: int = 0
    _server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    def start(self) -> None:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                key = self.headers["Meterline-Idempotency-Key"]
                if receiver.hang_seconds and key not in {k for k, _ in receiver.received}:
                    time.sleep(receiver.hang_seconds)
                if not verify_signature(
                    receiver.secret, self.headers["Meterline-Signature"], body, 300
                ):
                    receiver.bad_signatures += 1
                    self.send_response(400)
                else:
                    receiver.received.append((key, body))
                    self.send_response(receiver.status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: object) -> None:
                return None

        ThreadingHTTPServer.allow_reuse_address = True
        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
