"""``model="provider/model"`` -> which configured provider serves it, under which name, with
which credential.

The provider is the text before the first slash (model names may contain slashes of their
own: ``openrouter/meta-llama/llama-3.1-8b``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from meterline.common.config import GatewayConfig, ProviderConfig, TeamConfig
from meterline.ingress.errors import BadRequest

CredentialType = Literal["system", "byok"]


@dataclass(frozen=True, slots=True)
class Credential:
    type: CredentialType
    api_key: str | None
    """None: the provider takes no key (a local OpenAI-compatible server, the simulator)."""

    def __repr__(self) -> str:  # keys never reach a log line through a repr
        return f"Credential(type={self.type!r}, api_key={'***' if self.api_key else None})"


@dataclass(frozen=True, slots=True)
class Route:
    provider: ProviderConfig
    model: str
    """The model name the provider knows, without the ``provider/`` prefix."""
    credential: Credential


class Router:
    """Routes for one API surface: only providers speaking ``wire`` are routable from it."""

    def __init__(self, config: GatewayConfig, wire: str):
        self._wire = wire
        self._providers = {p.slug: p for p in config.providers if p.wire == wire}
        # Read once at start-up: the environment of a running process does not change.
        self._system = {
            slug: Credential("system", provider.system_key())
            for slug, provider in self._providers.items()
        }
        self._other_wire = {p.slug: p.wire for p in config.providers if p.wire != wire}

    @property
    def slugs(self) -> list[str]:
        return sorted(self._providers)

    def resolve(self, model: str, team: TeamConfig | None = None) -> Route:
        slug, slash, name = model.partition("/")
        if not slash or not slug or not name:
            raise BadRequest(
                f"model {model!r} does not name a provider: use 'provider/model', "
                f"where provider is one of {self._routable()}",
                param="model",
                code="model_not_found",
            )
        provider = self._providers.get(slug)
        if provider is None:
            if slug in self._other_wire:
                reason = (
                    f"provider {slug!r} speaks the {self._other_wire[slug]} wire format, "
                    f"which this endpoint does not route to"
                )
            else:
                reason = f"unknown provider {slug!r}"
            raise BadRequest(
                f"{reason} in model {model!r}; routable providers: {self._routable()}",
                param="model",
                code="model_not_found",
            )
        return Route(provider, name, self.credential(provider, team))

    def credential(self, provider: ProviderConfig, team: TeamConfig | None) -> Credential:
        """The key the request goes upstream with. Always the system credential for now.

        BYOK goes here: when ``team.byok`` names this provider, return
        ``Credential("byok", <that key>)``, else fall back to the system credential if
        ``team.byok_fallback_to_system``, else refuse. Nothing downstream needs to change:
        the event records ``credential.type``."""
        return self._system[provider.slug]

    def _routable(self) -> str:
        return ", ".join(self.slugs) if self._providers else "(none configured)"
