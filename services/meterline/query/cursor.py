"""Opaque pagination cursors.

A cursor is the offset of the next page, signed (HMAC-SHA256) together with the team and a
fingerprint of the report it belongs to. A tampered cursor, one from another team, or one
replayed against a different report (other dates, filters or ordering) is refused with a 400
naming ``cursor``. Offsets rather than keyset positions: a report is an aggregation that is
recomputed for every page anyway, and the order always ends with every grouping field, so an
offset names the same place each time (as long as no new usage arrives for the range)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from dataclasses import dataclass

from meterline.query.errors import BadParameter

_VERSION = 1


@dataclass(frozen=True, slots=True)
class Page:
    offset: int
    limit: int


class CursorSigner:
    def __init__(self, secret: bytes):
        self._secret = secret

    def issue(self, team_id: str, fingerprint: str, page: Page) -> str:
        payload = json.dumps(
            {"v": _VERSION, "o": page.offset, "l": page.limit, "q": _digest(team_id, fingerprint)},
            separators=(",", ":"),
        ).encode()
        return _b64(payload) + "." + _b64(self._mac(payload))

    def read(self, cursor: str, team_id: str, fingerprint: str) -> Page:
        body, _, mac = cursor.partition(".")
        try:
            payload = _unb64(body)
            valid = hmac.compare_digest(_unb64(mac), self._mac(payload))
            decoded = json.loads(payload) if valid else None
        except ValueError:
            decoded = None
        if not isinstance(decoded, dict) or decoded.get("v") != _VERSION:
            raise BadParameter("cursor", "not a cursor this service issued")
        if decoded.get("q") != _digest(team_id, fingerprint):
            raise BadParameter("cursor", "was issued for a different report; repeat its parameters")
        offset, limit = decoded.get("o"), decoded.get("l")
        if not isinstance(offset, int) or not isinstance(limit, int) or offset < 0 or limit < 1:
            raise BadParameter("cursor", "not a cursor this service issued")
        return Page(offset, limit)

    def _mac(self, payload: bytes) -> bytes:
        return hmac.new(self._secret, payload, hashlib.sha256).digest()[:16]


def _digest(team_id: str, fingerprint: str) -> str:
    return hashlib.sha256(f"{team_id}\n{fingerprint}".encode()).hexdigest()[:24]


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (ValueError, UnicodeEncodeError) as error:
        raise ValueError(str(error)) from None
