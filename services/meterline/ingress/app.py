"""The ingress application: ``create_app(settings, config, publisher)``.

The lifespan opens what every request shares and closes it on the way out: the publisher
(started first, stopped last, so every finished request can still publish) and one pooled
HTTP client to the providers."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import aclosing, asynccontextmanager

from fastapi import FastAPI
from starlette.responses import JSONResponse, Response

from meterline.common.budget_spend import QuerySpend, SpendSource
from meterline.common.config import GatewayConfig, KeyRing
from meterline.common.header_limit import HeaderSizeLimit
from meterline.common.metrics import CONTENT_TYPE, process_text
from meterline.ingress.budget_guard import BudgetGuard, SettlingPublisher
from meterline.ingress.credentials import Credentials
from meterline.ingress.deps import Gateway
from meterline.ingress.errors import install_error_handlers, refusal
from meterline.ingress.observe import IngressMetrics, Observed
from meterline.ingress.providers.anthropic_wire import AnthropicWire
from meterline.ingress.providers.openai_wire import OpenAIWire
from meterline.ingress.providers.upstream import Upstream
from meterline.ingress.publishing.kafka import KafkaPublisher
from meterline.ingress.publishing.metrics import prometheus_text
from meterline.ingress.publishing.protocol import UsagePublisher
from meterline.ingress.route_prices import ListPrices
from meterline.ingress.route_stats import MeasuringPublisher, RouteStats
from meterline.ingress.routers import (
    chat_completions,
    gateway_config,
    language_model,
    messages,
    models,
    responses,
)
from meterline.ingress.routing import Router
from meterline.ingress.settings import IngressSettings
from meterline.ingress.transport import ProviderClient

log = logging.getLogger("meterline.ingress")

BUDGET_PRICES_WAIT_SECONDS = 30.0
"""How long a start with hard budgets waits for the price list (it takes about half a
second): reservations priced at nothing would let concurrent requests through."""

DRAIN_WAIT_AT_SHUTDOWN_SECONDS = 5.0
"""How long a stopping ingress waits for abandoned streams to end (see ``Drains``): short,
because the orchestrator's grace period also has to cover the publisher's flush."""


def provider_client(settings: IngressSettings) -> ProviderClient:
    """One client for every provider (see transport.py)."""
    return ProviderClient(
        max_connections=settings.upstream_max_connections,
        keepalive_expiry=settings.upstream_keepalive_expiry_seconds,
    )


def has_hard_budgets(config: GatewayConfig) -> bool:
    return any(b.mode == "hard" for team in config.teams for b in team.budgets)


def spend_source(settings: IngressSettings, config: GatewayConfig) -> SpendSource | None:
    """Where the budgets and their committed spend are read: the query service at
    ``METERLINE_BUDGET_SPEND_URL``. Without one, only the configured budgets are checked and
    each process counts only what it admitted itself."""
    token = settings.internal_token
    if settings.budget_spend_url is not None and token is not None:
        return QuerySpend(settings.budget_spend_url, token.get_secret_value())
    if has_hard_budgets(config):
        log.warning(
            "hard budgets are configured but METERLINE_BUDGET_SPEND_URL or "
            "METERLINE_INTERNAL_TOKEN is not set: each ingress counts only the requests it "
            "admitted since it started"
        )
    return None


@asynccontextmanager
async def budgets_refreshed(guard: BudgetGuard, prices: ListPrices) -> AsyncIterator[None]:
    """The price list and a first read of the committed spend before the first request;
    then a refresh every few seconds in the background."""
    if not guard.enabled:
        yield
        return
    if not await asyncio.to_thread(prices.wait_loaded, BUDGET_PRICES_WAIT_SECONDS):
        log.warning("no price list: budget reservations count nothing until it loads")
    await guard.refresh()
    stop = asyncio.Event()
    task = asyncio.create_task(guard.run(stop), name="budget-refresh")
    try:
        yield
    finally:
        stop.set()
        await task


def create_app(
    settings: IngressSettings,
    config: GatewayConfig,
    publisher: UsagePublisher,
    spend: SpendSource | None = None,
) -> FastAPI:
    """``spend``: where hard budgets read the committed spend; None: ``spend_source``."""
    observed = IngressMetrics(team_label=settings.metrics_team_label)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await publisher.start()
        try:
            async with aclosing(provider_client(settings)) as client:
                stats = RouteStats()
                prices = ListPrices.from_config(config)
                guard = BudgetGuard(
                    config,
                    spend if spend is not None else spend_source(settings, config),
                    prices,
                    refresh_seconds=settings.budget_refresh_seconds,
                    default_output_tokens=settings.budget_default_output_tokens,
                    replicas=settings.budget_replicas,
                )
                metered = SettlingPublisher(MeasuringPublisher(publisher, stats), guard)
                upstream = Upstream(client, settings, metered, observed)
                credentials = Credentials(config)

                def router(wire: str, translated: tuple[str, ...] = ()) -> Router:
                    return Router(
                        config,
                        wire,
                        translated=translated,
                        credentials=credentials,
                        prices=prices,
                        stats=stats,
                    )

                app.state.gateway = Gateway(
                    settings=settings,
                    config=config,
                    keys=KeyRing(config),
                    responses_router=router("openai"),
                    openai=OpenAIWire(upstream),
                    publisher=publisher,
                    messages_router=router("anthropic", ("openai",)),
                    anthropic=AnthropicWire(upstream),
                    completions_router=router("openai", ("anthropic",)),
                    upstream=upstream,
                    language_model_router=router("openai", ("anthropic",)),
                    budgets=guard,
                )
                try:
                    async with budgets_refreshed(guard, prices):
                        yield
                finally:
                    # Streams whose client left are still being read for their usage;
                    # what has not ended by then is recorded as far as it got.
                    await upstream.drains.wait(DRAIN_WAIT_AT_SHUTDOWN_SECONDS)
        finally:
            # After the client closed: streams still open have ended and published.
            await publisher.stop()

    app = FastAPI(
        title="Meterline ingress",
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
    )
    install_error_handlers(app)
    app.add_middleware(HeaderSizeLimit, refusal=refusal)
    app.include_router(chat_completions.router)
    app.include_router(gateway_config.router)
    app.include_router(responses.router)
    app.include_router(messages.router)
    app.include_router(models.router)
    app.include_router(language_model.router)

    app.add_middleware(Observed, metrics=observed, routes=app.routes)

    def service_metrics() -> str:
        """The ingress' series without the process' (the all-in-one adds those once)."""
        text = observed.registry.render() + prometheus_text(publisher.metrics())
        gateway: Gateway | None = getattr(app.state, "gateway", None)
        if gateway is not None and gateway.budgets.enabled:
            text += gateway.budgets.prometheus_text()
        return text

    def readiness() -> str | None:
        """None when ready, else why not."""
        if getattr(app.state, "gateway", None) is None:
            return "starting"
        if isinstance(publisher, KafkaPublisher) and not publisher.accepting:
            return "Kafka is unreachable and the spool is full or off"
        return None

    app.state.metrics_text = service_metrics
    app.state.readiness = readiness

    @app.get("/livez", include_in_schema=False)
    @app.get("/healthz", include_in_schema=False)
    async def livez() -> Response:
        """The process answers (``/healthz`` is the older name)."""
        return Response(b'{"status":"ok"}', media_type="application/json")

    @app.get("/readyz", include_in_schema=False)
    async def readyz() -> Response:
        """Ready when a usage event would be kept: Kafka takes it or the spool has room."""
        reason = readiness()
        if reason is not None:
            return JSONResponse({"status": "unavailable", "reason": reason}, status_code=503)
        return JSONResponse({"status": "ok"})

    @app.get("/metrics", include_in_schema=False)
    async def metrics() -> Response:
        """Requests, latencies, provider errors, the publisher (sent, buffered, spooled,
        dropped), the hard budgets and the process, for Prometheus."""
        return Response(service_metrics() + process_text(), media_type=CONTENT_TYPE)

    return app
