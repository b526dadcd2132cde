"""The query service app: ``GET /v1/report``, ``GET /v1/generation``, ``GET /v1/credits``,
``GET /v1/budgets``, ``GET /v1/budgets/status`` (and the ingresses' budget spend),
``GET /v1/alerts``, ``/healthz`` and ``/readyz``. Its ClickHouse clients are opened in the
lifespan and closed there.

Run it with ``meterline query`` (``--host``/``--port``; settings from METERLINE_* and
METERLINE_QUERY_*), or inside ``meterline all-in-one``."""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from functools import partial

from clickhouse_connect.driver.client import Client
from fastapi import FastAPI, Response
from fastapi.responses import JSONResponse

from meterline.common.alerts import AlertDelivery, AlertSettings
from meterline.common.clickhouse import connect
from meterline.common.config import GatewayConfig, KeyRing, load_config
from meterline.common.header_limit import HeaderSizeLimit
from meterline.query.alerting import Alerter
from meterline.query.cursor import CursorSigner
from meterline.query.errors import install_error_handlers, refusal
from meterline.query.routes import alerts, budgets, credits, generation, report
from meterline.query.settings import QuerySettings
from meterline.query.warehouse import Warehouse

log = logging.getLogger(__name__)


@asynccontextmanager
async def alerting(
    config: GatewayConfig,
    warehouse: Warehouse,
    factory: Callable[[], Client],
    metrics: list[AlertDelivery],
) -> AsyncIterator[None]:
    """The alerts' delivery loop and their evaluation, beside the service, for as long as it
    runs. A team's webhook naming an unset environment variable stops the start, as a bad
    configuration does; a warehouse that cannot be reached yet leaves alerts off until the
    next start, and says so."""
    if not config.teams:
        yield
        return
    settings = AlertSettings()
    try:
        client = await asyncio.to_thread(factory)
    except Exception as error:  # the warehouse is down at start: reports answer 503 too
        log.error("alerts are off until the next start: the warehouse is unavailable: %s", error)
        yield
        return
    delivery = AlertDelivery.from_settings(settings, config, client=client)
    metrics.append(delivery)
    if settings.alert_deliver:
        await delivery.start()
    alerter = Alerter(config, warehouse, delivery, evaluate_seconds=settings.alert_evaluate_seconds)
    stop = asyncio.Event()
    task = asyncio.create_task(alerter.run(stop), name="alert-evaluation")
    try:
        yield
    finally:
        stop.set()
        await task
        await delivery.stop()
        metrics.remove(delivery)
        client.close()


def create_app(
    settings: QuerySettings,
    client_factory: Callable[[], Client] | None = None,
    config: GatewayConfig | None = None,
) -> FastAPI:
    if config is None:
        config = (
            load_config(settings.config_file) if settings.config_file.is_file() else GatewayConfig()
        )
    factory = client_factory or partial(
        connect, settings.resolved_clickhouse_url(), settings.clickhouse_database
    )
    warehouse = Warehouse(factory, settings.query_pool_size, settings.query_timeout_seconds)
    deliveries: list[AlertDelivery] = []
    """The running alert delivery, for ``/metrics``."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await warehouse.start()
        try:
            async with alerting(config, warehouse, factory, deliveries):
                yield
        finally:
            await warehouse.close()

    app = FastAPI(title="Meterline query service", lifespan=lifespan)
    app.state.settings = settings
    app.state.key_ring = KeyRing(config)
    app.state.warehouse = warehouse
    secret = (
        settings.query_cursor_secret.get_secret_value().encode()
        if settings.query_cursor_secret
        else None
    )
    app.state.cursors = CursorSigner(secret or secrets.token_bytes(32))
    install_error_handlers(app)
    app.add_middleware(HeaderSizeLimit, refusal=refusal)
    app.include_router(report.router)
    app.include_router(generation.router)
    app.include_router(credits.router)
    app.include_router(budgets.router)
    app.include_router(alerts.router)

    @app.get("/metrics", include_in_schema=False)
    async def metrics() -> Response:
        """The alerts' counters for Prometheus."""
        text = "".join(delivery.prometheus_text() for delivery in deliveries)
        return Response(text, media_type="text/plain; version=0.0.4")

    @app.get("/healthz", include_in_schema=False)
    async def healthz() -> JSONResponse:
        return JSONResponse({"status": "ok"})

    @app.get("/readyz", include_in_schema=False)
    async def readyz() -> JSONResponse:
        await warehouse.ping()  # 503 through the error handlers when unreachable
        return JSONResponse({"status": "ok"})

    return app
