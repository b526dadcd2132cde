"""``model="provider/model"`` -> which configured providers may serve it, under which name,
with which credentials, in the order they are tried.

The provider is the text before the first slash (model names may contain slashes of their
own: ``openrouter/meta-llama/llama-3.1-8b``). Other providers that list the same model name
in their ``models`` can serve it too; a request opts in to them with ``order``, ``only``,
``sort`` or ``zeroDataRetention`` (without any it goes to the provider it names, as written).

``plan`` orders the attempts (no I/O but the price list, read once):

- models: the requested one, then ``providerOptions.gateway.models`` (fallback models);
- for each model, providers: its own provider; with any of those options, also every other
  routable provider listing the name, in configuration order. Then ``only`` drops every
  provider it does not name; zero data retention (the request's or its team's) drops every
  provider not marked ``zero_data_retention``, as an ``only`` of the marked ones would;
  ``sort`` ranks the rest by list price (``route_prices.py``) or by recent latency or
  throughput (``route_stats.py``), those without a number last, ties and those in
  configuration order; ``order`` moves the slugs it names to the front in its order;
- for each provider, credentials (``credentials.py``): BYOK keys first, then the system key.

``first_success`` walks the plan: an attempt that fails in a way another route may not
(unreachable, timed out, rate-limited, a provider error; a BYOK key refused) is answered by
the next route, before the client has received any byte. The event names the provider,
model and credential of the attempt that answered.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Collection, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal

from starlette.responses import Response

from meterline.common.config import GatewayConfig, ProviderConfig, TeamConfig
from meterline.ingress.credentials import Credential, Credentials, CredentialType
from meterline.ingress.errors import BadRequest
from meterline.ingress.metering import RequestRecord
from meterline.ingress.route_prices import ListPrices
from meterline.ingress.route_stats import RouteStats
from meterline.ingress.tagging import GATEWAY, NO_ROUTING_OPTIONS, RoutingOptions, Sort

__all__ = [
    "Credential",
    "CredentialType",
    "Route",
    "Router",
    "first_success",
    "on_route",
    "should_try_next",
]

log = logging.getLogger("meterline.ingress.routing")


@dataclass(frozen=True, slots=True)
class Route:
    provider: ProviderConfig
    model: str
    """The model name the provider knows, without the ``provider/`` prefix."""
    credential: Credential


class Router:
    """Routes for one API surface: providers speaking ``wire``, and those speaking one of
    the ``translated`` wires (the surface translates requests for them)."""

    def __init__(
        self,
        config: GatewayConfig,
        wire: str,
        *,
        translated: Collection[str] = (),
        credentials: Credentials | None = None,
        prices: ListPrices | None = None,
        stats: RouteStats | None = None,
    ):
        """``credentials``, ``prices`` and ``stats``: shared by the routers of one process
        (keys read once, the price list loaded once, every surface's answers measured in
        one place); built from ``config`` when not given."""
        wires = {wire, *translated}
        self._providers = {p.slug: p for p in config.providers if p.wire in wires}
        self._other_wire = {p.slug: p.wire for p in config.providers if p.wire not in wires}
        self._position = {p.slug: index for index, p in enumerate(config.providers)}
        self._credentials = credentials or Credentials(config)
        self._prices = prices or ListPrices.from_config(config)
        self._stats = stats or RouteStats()

    @property
    def prices(self) -> ListPrices:
        """The list prices ``sort: "price"`` ranks by (one per process, see ``__init__``)."""
        return self._prices

    @property
    def slugs(self) -> list[str]:
        return sorted(self._providers)

    def resolve(self, model: str, team: TeamConfig | None = None) -> Route:
        """The first route of ``plan`` without routing options: the model's own provider
        with its first credential."""
        provider, name = self._split(model, "model")
        return Route(provider, name, self.credential(provider, team))

    def credential(self, provider: ProviderConfig, team: TeamConfig | None) -> Credential:
        return self._credentials.for_provider(provider.slug, team, {})[0]

    def plan(
        self,
        model: str,
        options: RoutingOptions = NO_ROUTING_OPTIONS,
        team: TeamConfig | None = None,
    ) -> list[Route]:
        """Every route to try for ``model``, in order; a 400 naming the parameter when the
        model or the options name something that cannot be routed."""
        self._check_slugs(options)
        zdr = options.zero_data_retention or (team is not None and team.zero_data_retention)
        wanted = [self._split(model, "model")]
        wanted += [self._split(m, f"{GATEWAY}.models") for m in options.models]
        routes: list[Route] = []
        seen: set[tuple[str, str]] = set()
        for provider, name in wanted:
            for candidate in self._providers_for(provider, name, options, zdr):
                if (candidate.slug, name) in seen:
                    continue
                seen.add((candidate.slug, name))
                credentials = self._credentials.for_provider(candidate.slug, team, options.byok)
                routes.extend(Route(candidate, name, credential) for credential in credentials)
        if not routes:
            raise self._nothing_serves(model, options, team, zdr)
        return routes

    def _nothing_serves(
        self, model: str, options: RoutingOptions, team: TeamConfig | None, zdr: bool
    ) -> BadRequest:
        only = ", ".join(options.only or ())
        fallbacks = " or its fallback models" if options.models else ""
        if not zdr:
            return BadRequest(
                f"no provider in {GATEWAY}.only ({only}) serves {model!r}{fallbacks}",
                param=f"{GATEWAY}.only",
                code="model_not_found",
            )
        among = f" in {GATEWAY}.only ({only})" if options.only is not None else ""
        required_by = (
            f"team {team.id!r} requires zero data retention"
            if team is not None and team.zero_data_retention
            else f"the request sets {GATEWAY}.zeroDataRetention"
        )
        return BadRequest(
            f"no zero-data-retention provider{among} serves {model!r}{fallbacks}: "
            f"{required_by}, and only providers configured with zero_data_retention may "
            "serve it",
            param=f"{GATEWAY}.zeroDataRetention",
            code="model_not_found",
        )

    def _providers_for(
        self, provider: ProviderConfig, name: str, options: RoutingOptions, zdr: bool
    ) -> list[ProviderConfig]:
        candidates = [provider]
        if options.order or options.only is not None or options.sort or zdr:
            candidates += [
                p for p in self._providers.values() if p is not provider and name in p.models
            ]
        if options.only is not None:
            candidates = [p for p in candidates if p.slug in options.only]
        if zdr:
            candidates = [p for p in candidates if p.zero_data_retention]
        # One candidate has nothing to be ranked against (and a model name no provider
        # lists is never looked up, so the price cache holds configured names only).
        if options.sort and len(candidates) > 1:
            candidates = self._sorted(candidates, name, options.sort)
        if options.order:
            rank = {slug: index for index, slug in enumerate(options.order)}
            # A stable sort: the providers ``order`` does not name keep their places.
            candidates.sort(key=lambda p: rank.get(p.slug, len(rank)))
        return candidates

    def _sorted(
        self, candidates: list[ProviderConfig], name: str, sort: Sort
    ) -> list[ProviderConfig]:
        """Best first; those without a price or a measurement after them, so that a new
        provider is still tried; ties in configuration order."""
        position = self._position
        if sort == "price" and not self._prices.ready():
            # Every route unpriced, rather than some priced by a list that came in halfway.
            return sorted(candidates, key=lambda p: position[p.slug])
        measures = {p.slug: self._measure(p.slug, name, sort) for p in candidates}
        measured = sorted(
            (p for p in candidates if measures[p.slug] is not None),
            key=lambda p: (measures[p.slug], position[p.slug]),
        )
        unmeasured = sorted(
            (p for p in candidates if measures[p.slug] is None), key=lambda p: position[p.slug]
        )
        return measured + unmeasured

    def _measure(self, slug: str, name: str, sort: Sort) -> Decimal | float | None:
        """Lower is better."""
        if sort == "price":
            return self._prices.blended(slug, name, datetime.now(UTC))
        if sort == "latency":
            return self._stats.latency_ms(slug, name)
        throughput = self._stats.tokens_per_second(slug, name)
        return None if throughput is None else -throughput

    def _check_slugs(self, options: RoutingOptions) -> None:
        known = self._providers.keys() | self._other_wire.keys()
        for name, slugs in (
            ("order", options.order),
            ("only", options.only or ()),
            ("byok", options.byok.keys()),
        ):
            for slug in slugs:
                if slug not in known:
                    shown = slug if len(slug) <= 64 else slug[:64] + "..."
                    raise BadRequest(
                        f"{GATEWAY}.{name} names {shown!r}, which is not a configured "
                        f"provider; configured: {', '.join(sorted(known)) or '(none)'}",
                        param=f"{GATEWAY}.{name}",
                    )

    def _split(self, model: str, param: str) -> tuple[ProviderConfig, str]:
        slug, slash, name = model.partition("/")
        if not slash or not slug or not name:
            raise BadRequest(
                f"{param} {model!r} does not name a provider: use 'provider/model', "
                f"where provider is one of {self._routable()}",
                param=param,
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
                f"{reason} in {param} {model!r}; routable providers: {self._routable()}",
                param=param,
                code="model_not_found",
            )
        return provider, name

    def _routable(self) -> str:
        return ", ".join(self.slugs) if self._providers else "(none configured)"


RETRIED_STATUSES = frozenset({408, 409, 429})
"""Besides every 5xx: a timeout, a conflict (a provider's transient lock), a rate limit. Other
4xx say the request itself is wrong, and would be wrong anywhere."""
REFUSED_KEY_STATUSES = frozenset({401, 402, 403})
"""A BYOK key refused, out of credit or not allowed: another key may well work."""


def should_try_next(route: Route, status: int) -> bool:
    """Whether an answer with ``status`` from ``route`` should give way to the next route."""
    if status >= 500 or status in RETRIED_STATUSES:
        return True
    return route.credential.type == "byok" and status in REFUSED_KEY_STATUSES


def on_route(record: RequestRecord, route: Route) -> None:
    """The record names the route the request is sent on."""
    record.provider = route.provider.slug
    record.model = route.model
    record.credential_type = route.credential.type
    record.zero_data_retention = route.provider.zero_data_retention


async def first_success(
    routes: Sequence[Route],
    record: RequestRecord,
    send: Callable[[Route], Awaitable[Response]],
) -> Response:
    """Try ``routes`` in order until one answers in a way that is not worth another try.

    ``send`` returns the response the client would get, not yet sent. A failed attempt's
    response is dropped unsent: its body was read in full and its connection released (only
    a successful stream is still open), and a metered response publishes its event only when
    it is sent, so the request is recorded once, under the route that answered."""
    if not routes:
        raise ValueError("no routes")
    for index, route in enumerate(routes):
        on_route(record, route)
        response = await send(route)
        last = index == len(routes) - 1
        if last or not should_try_next(route, response.status_code):
            return response
        nxt = routes[index + 1]
        log.info(
            "%s/%s (%s credential) answered %d; trying %s/%s (%s credential)",
            route.provider.slug,
            route.model,
            route.credential.type,
            response.status_code,
            nxt.provider.slug,
            nxt.model,
            nxt.credential.type,
        )
    raise AssertionError("unreachable")
