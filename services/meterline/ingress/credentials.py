"""Which provider keys a request may go upstream with, in the order they are tried.

Three sources, for each provider:

1. request-scoped BYOK: ``providerOptions.gateway.byok`` = ``{slug: [{"apiKey": ...}, ...]}``,
   tried in the order given. When a request names keys for a provider, the team's
   configured keys for that provider are not used: the caller said which account pays.
2. team BYOK: the team's ``[[teams.byok]]`` entries for the provider, in configuration order,
   each naming the environment variable that holds the key.
3. the system credential (``api_key_env`` of the provider): used alone when there are no
   BYOK keys for the provider, and after them when the team's ``byok_fallback_to_system``
   is true (the default), so a failing BYOK key does not fail the request.

A BYOK key is a secret of the team's: it is read, sent to the provider and dropped. It is
never logged (every repr below hides it), never put into the usage event (which only says
``byok`` or ``system``), never stored.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Final, Literal

from meterline.common.config import GatewayConfig, TeamConfig

log = logging.getLogger("meterline.ingress.credentials")

CredentialType = Literal["system", "byok"]

MAX_REQUEST_KEYS_PER_PROVIDER: Final = 8
"""Each key is one more upstream attempt; a handful covers every honest use (a primary key
and its backups)."""


UNSET_KEY_WARNING_SECONDS: Final = 60.0
"""At most one warning per provider in this long about forwarding without its key."""


@dataclass(frozen=True, slots=True)
class Credential:
    type: CredentialType
    api_key: str | None
    """None: the provider takes no key (a local OpenAI-compatible server, the simulator)."""

    def __repr__(self) -> str:  # keys never reach a log line through a repr
        return f"Credential(type={self.type!r}, api_key={'***' if self.api_key else None})"

    __str__ = __repr__


RequestKeys = Mapping[str, Sequence[Credential]]
"""Request-scoped BYOK keys by provider slug."""


class Credentials:
    """The system keys and the teams' BYOK keys, read from the environment once at start-up
    (the environment of a running process does not change)."""

    def __init__(self, config: GatewayConfig):
        self._system = {p.slug: Credential("system", p.system_key()) for p in config.providers}
        self._unset = {
            p.slug: p.api_key_env for p in config.providers if p.api_key_env and not p.system_key()
        }
        """Providers whose key variable is unset: requests go to them without a key."""
        self._warned_at: dict[str, float] = {}
        for slug, variable in self._unset.items():
            log.warning(
                "provider %s: its key variable %s is not set; requests to it will be sent "
                "without a system key (only BYOK keys will work)",
                slug,
                variable,
            )
        self._team: dict[tuple[str, str], list[Credential]] = {}
        for team in config.teams:
            for entry in team.byok:
                key = entry.key()
                if not key:
                    # The variable's name is configuration, not a secret.
                    log.warning(
                        "team %s: BYOK key for provider %s is not set (environment "
                        "variable %s is empty or missing); it is skipped",
                        team.id,
                        entry.provider,
                        entry.api_key_env,
                    )
                    continue
                self._team.setdefault((team.id, entry.provider), []).append(Credential("byok", key))

    def system(self, slug: str) -> Credential:
        return self._system[slug]

    def for_provider(
        self, slug: str, team: TeamConfig | None, request_keys: RequestKeys
    ) -> list[Credential]:
        """The credentials to try for ``slug``, in order."""
        byok = list(request_keys.get(slug, ()))
        if not byok and team is not None:
            byok = self._team.get((team.id, slug), [])
        if not byok:
            self._warn_unset(slug)
            return [self._system[slug]]
        if team is None or team.byok_fallback_to_system:
            return [*byok, self._system[slug]]
        return byok

    def _warn_unset(self, slug: str) -> None:
        """The provider will most likely refuse the request (a 401 the client sees): say
        why in the log, once a minute per provider rather than once per request."""
        variable = self._unset.get(slug)
        if variable is None:
            return
        now = time.monotonic()
        if now - self._warned_at.get(slug, -UNSET_KEY_WARNING_SECONDS) < UNSET_KEY_WARNING_SECONDS:
            return
        self._warned_at[slug] = now
        log.warning(
            "routing a request to provider %s without a key: its key variable %s is not set, "
            "so the provider will likely refuse it",
            slug,
            variable,
        )
