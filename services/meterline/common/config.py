"""The gateway's configuration file (TOML): providers, teams, their gateway keys (hashed),
BYOK keys and price overrides.

Secrets never live in this file in clear: gateway keys are stored as SHA-256 hashes, and
provider keys are named by the environment variable that holds them.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
import secrets
import tomllib
from decimal import Decimal
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from meterline.common.budgets import Budget, unique_ids, zone
from meterline.common.spikes import SpikeSettings

KEY_PREFIX = "ml_"


def hash_key(key: str) -> str:
    """Gateway keys are random 256-bit secrets, so one SHA-256 pass is enough (no salt or
    slow hash needed: there is nothing to brute-force in a key that was never chosen by a
    person)."""
    return hashlib.sha256(key.encode()).hexdigest()


def new_key() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(32)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ProviderConfig(_Strict):
    slug: str = Field(pattern=r"^[a-z0-9][a-z0-9_.-]*$")
    wire: Literal["openai", "anthropic"] = "openai"
    base_url: str
    api_key_env: str | None = None
    """Environment variable holding the system credential for this provider."""
    timeout_seconds: float = 600.0
    prices_as: str | None = None
    """genai-prices provider id for this provider's traffic, when the slug is not one that
    genai-prices knows (a self-hosted vLLM serving a public model, say)."""
    models: list[str] = []
    """Model names this provider serves (without the ``provider/`` prefix), listed by
    ``GET /v1/models``. Only a list: requests for other names are still forwarded."""
    zero_data_retention: bool = False
    """The operator knows that this provider keeps no prompt or answer data (a contract, an
    account setting). Requests that require zero data retention go only to providers
    marked so; the gateway cannot check it, so it is only as true as this line."""

    def system_key(self) -> str | None:
        return os.environ.get(self.api_key_env) if self.api_key_env else None


class GatewayKey(_Strict):
    name: str
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    manage_budgets: bool = False
    """This key may create, change and delete the team's budgets (``PUT``/``DELETE
    /v1/budgets``); other keys only read them. An application's key should not be able to
    lift its own budget."""


class PriceOverride(_Strict):
    """A team's deal for a model: a multiplier on the market price (0.8 = 20 % off,
    1.1 = 10 % markup), or custom per-million-token prices. First match wins."""

    model: str = "*"
    provider: str = "*"
    multiplier: Decimal | None = None
    input_per_mtok: Decimal | None = None
    output_per_mtok: Decimal | None = None
    cache_read_per_mtok: Decimal | None = None
    cache_write_per_mtok: Decimal | None = None
    web_search_per_thousand: Decimal | None = None
    """With custom prices: what a thousand web searches cost (none: searches are free)."""

    @model_validator(mode="after")
    def _one_kind(self) -> PriceOverride:
        custom = self.input_per_mtok is not None or self.output_per_mtok is not None
        if self.multiplier is not None and custom:
            raise ValueError("a price override sets a multiplier or custom prices, not both")
        if self.multiplier is None and not custom:
            raise ValueError("a price override needs a multiplier or input/output prices")
        return self

    def matches(self, provider: str, model: str) -> bool:
        return self.model in ("*", model) and self.provider in ("*", provider)


class ByokKey(_Strict):
    """One of a team's own provider keys. A team may list several for one provider: they
    are tried in this order."""

    provider: str
    api_key_env: str
    """Environment variable holding the team's own provider key."""

    def key(self) -> str | None:
        return os.environ.get(self.api_key_env) or None


AlertKind = Literal["budget_threshold", "budget_reset", "spike"]


class WebhookConfig(_Strict):
    """Where a team's alerts are sent (``common/alerts``). Each alert is delivered to each
    of the team's webhooks whose ``kinds`` include its kind, once, signed with the secret."""

    name: str = Field(pattern=r"^[A-Za-z0-9_.-]{1,64}$")
    """Names the webhook in the delivery records (``budget_alert_deliveries.webhook``),
    so the URL, which may itself be a credential (Slack's are), is never stored there."""
    url: str | None = Field(default=None, pattern=r"^https?://")
    url_env: str | None = None
    """Environment variable holding the URL instead, for a URL that is itself a credential
    (a Slack incoming webhook's is): secrets never live in this file in clear."""
    secret_env: str | None = None
    """Environment variable holding the HMAC secret of the ``Meterline-Signature`` header.
    Required for ``format = "json"``; a Slack incoming webhook checks no signature."""
    format: Literal["json", "slack"] = "json"
    kinds: list[AlertKind] | None = None
    """Only these kinds of alert; None: every kind."""
    timeout_seconds: float = Field(default=10.0, gt=0)

    @model_validator(mode="after")
    def _complete(self) -> WebhookConfig:
        if (self.url is None) == (self.url_env is None):
            raise ValueError(f"webhook {self.name!r}: give url or url_env, one of them")
        if self.format == "json" and not self.secret_env:
            raise ValueError(f"webhook {self.name!r}: a json webhook needs secret_env")
        return self

    def resolved_url(self) -> str | None:
        if self.url is not None:
            return self.url
        return os.environ.get(self.url_env or "") or None

    def secret(self) -> str | None:
        if not self.secret_env:
            return None
        return os.environ.get(self.secret_env) or None

    def missing_env(self) -> list[str]:
        """The environment variables it names that are not set."""
        missing = [self.url_env] if self.url_env and self.resolved_url() is None else []
        if self.secret_env and self.secret() is None:
            missing.append(self.secret_env)
        return missing

    def wants(self, kind: str) -> bool:
        return self.kinds is None or kind in self.kinds


class TeamConfig(_Strict):
    id: str = Field(pattern=r"^[A-Za-z0-9_.-]{1,64}$")
    name: str = ""
    keys: list[GatewayKey] = []
    byok: list[ByokKey] = []
    byok_fallback_to_system: bool = True
    """When every BYOK key of a provider failed (rejected, rate-limited, provider error),
    try the gateway's system credential before giving up."""
    price_overrides: list[PriceOverride] = []
    zero_data_retention: bool = False
    """Every request of this team requires zero data retention: it goes only to providers
    marked ``zero_data_retention``, as if it asked for it itself."""
    credit_usd: Decimal | None = Field(default=None, ge=0)
    """What the team has paid in advance, in USD. ``GET /v1/credits`` answers it minus the
    team's total cost so far; the gateway never refuses a request because it is spent.
    None: no prepaid credit (the balance is then minus the total cost)."""
    timezone: str = "UTC"
    """The team's time zone (an IANA name): where its budgets' days begin, unless a budget
    names its own."""
    budgets: list[Budget] = []
    webhooks: list[WebhookConfig] = []
    """Where the team's alerts go (see ``common/alerts``)."""
    spikes: SpikeSettings = SpikeSettings()
    """Spike detection on the team's hourly spend (the team total; ``dimensions`` adds
    each value of those)."""

    @field_validator("timezone")
    @classmethod
    def _known_timezone(cls, name: str) -> str:
        zone(name)
        return name

    @field_validator("budgets")
    @classmethod
    def _unique_budgets(cls, budgets: list[Budget]) -> list[Budget]:
        unique_ids(budgets)
        return budgets

    def price_override(self, provider: str, model: str) -> PriceOverride | None:
        return next((o for o in self.price_overrides if o.matches(provider, model)), None)


class GatewayConfig(_Strict):
    providers: list[ProviderConfig] = []
    teams: list[TeamConfig] = []

    @model_validator(mode="after")
    def _unique(self) -> GatewayConfig:
        slugs = [p.slug for p in self.providers]
        if len(slugs) != len(set(slugs)):
            raise ValueError("provider slugs must be unique")
        team_ids = [t.id for t in self.teams]
        if len(team_ids) != len(set(team_ids)):
            raise ValueError("team ids must be unique")
        hashes = [k.sha256 for t in self.teams for k in t.keys]
        if len(hashes) != len(set(hashes)):
            raise ValueError("a gateway key may belong to one team only")
        for team in self.teams:
            names = [w.name for w in team.webhooks]
            if len(names) != len(set(names)):
                raise ValueError(f"team {team.id!r}: webhook names must be unique")
            for byok in team.byok:
                if byok.provider not in slugs:
                    raise ValueError(
                        f"team {team.id!r} has a BYOK key for {byok.provider!r}, "
                        f"which is not a configured provider"
                    )
        return self

    def provider(self, slug: str) -> ProviderConfig | None:
        return next((p for p in self.providers if p.slug == slug), None)

    def team(self, team_id: str) -> TeamConfig | None:
        return next((t for t in self.teams if t.id == team_id), None)

    def price_aliases(self) -> dict[str, str]:
        """Provider slug -> genai-prices provider id, where they differ."""
        return {p.slug: p.prices_as for p in self.providers if p.prices_as}


class KeyRing:
    """Looks a presented gateway key up by its hash. The dictionary lookup is on the hash of
    the key, so its timing says nothing about the key; the final compare_digest keeps the
    comparison constant-time all the same."""

    def __init__(self, config: GatewayConfig):
        self._by_hash: dict[str, tuple[TeamConfig, GatewayKey]] = {
            key.sha256: (team, key) for team in config.teams for key in team.keys
        }

    def authenticate(self, presented: str | None) -> tuple[TeamConfig, GatewayKey] | None:
        if not presented:
            return None
        digest = hash_key(presented)
        found = self._by_hash.get(digest)
        if found is None or not hmac.compare_digest(found[1].sha256, digest):
            return None
        return found


class ConfigurationError(ValueError):
    """Configuration that cannot be used, said in one line: which file or setting, where,
    and what is wrong."""


_TOML_POSITION = re.compile(r"^(?P<what>.*) \(at line (?P<line>\d+), column (?P<column>\d+)\)$")


def load_config(path: Path) -> GatewayConfig:
    try:
        with path.open("rb") as file:
            document = tomllib.load(file)
    except FileNotFoundError:
        raise ConfigurationError(
            f"no configuration at {path}: create one with `meterline init --config {path}` "
            "or point METERLINE_CONFIG_FILE at it"
        ) from None
    except OSError as error:
        raise ConfigurationError(f"{path}: cannot read it: {error.strerror}") from None
    except tomllib.TOMLDecodeError as error:
        found = _TOML_POSITION.match(str(error))
        if found is None:
            raise ConfigurationError(f"{path}: invalid TOML: {error}") from None
        raise ConfigurationError(
            f"{path}, line {found['line']}, column {found['column']}: invalid TOML: {found['what']}"
        ) from None
    try:
        return GatewayConfig.model_validate(document)
    except ValidationError as error:
        raise ConfigurationError(f"{path}: {validation_summary(error)}") from None


def validation_summary(error: ValidationError) -> str:
    """Each problem as ``where: what``, on one line. The input is left out: it may be a
    value that should not be printed."""
    problems = []
    for item in error.errors(include_url=False, include_input=False):
        where = "".join(
            f"[{part}]" if isinstance(part, int) else f".{part}" for part in item["loc"]
        ).lstrip(".")
        message = item["msg"].removeprefix("Value error, ")
        problems.append(f"{where}: {message}" if where else message)
    return "; ".join(problems)
