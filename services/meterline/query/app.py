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
from meterline.common.metrics import CONTENT_TYPE, process_text
from meterline.query.alerting import Alerter
from meterline.query.cursor import CursorSigner
from meterline.query.errors import install_error_handlers, refusal
from meterline.query.observe import Observed, QueryMetrics
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
    observed = QueryMetrics(team_label=settings.metrics_team_label)
    observed.registry.add_text(
        lambda: "".join(delivery.prometheus_text() for delivery in deliveries)
    )
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

    app.add_middleware(Observed, metrics=observed, routes=app.routes)

    async def warehouse_answers() -> str | None:
        """None when the warehouse answers, else why not."""
        try:
            await warehouse.ping()
        except Exception as error:
            observed.warehouse_up.set(0)
            return f"the warehouse does not answer: {error}"
        observed.warehouse_up.set(1)
        return None

    async def service_metrics() -> str:
        """The query service's series without the process' (the all-in-one adds those)."""
        await warehouse_answers()
        return observed.registry.render()

    app.state.metrics_text = service_metrics
    app.state.readiness = warehouse_answers

    @app.get("/metrics", include_in_schema=False)
    async def metrics() -> Response:
        """Requests by route, rows returned, the warehouse, the alerts and the process, for
        Prometheus."""
        return Response(await service_metrics() + process_text(), media_type=CONTENT_TYPE)

    @app.get("/livez", include_in_schema=False)
    @app.get("/healthz", include_in_schema=False)
    async def livez() -> JSONResponse:
        """The process answers (``/healthz`` is the older name)."""
        return JSONResponse({"status": "ok"})

    @app.get("/readyz", include_in_schema=False)
    async def readyz() -> JSONResponse:
        """Ready when the warehouse answers a query."""
        reason = await warehouse_answers()
        if reason is not None:
            return JSONResponse({"status": "unavailable", "reason": reason}, status_code=503)
        return JSONResponse({"status": "ok"})

    return app
