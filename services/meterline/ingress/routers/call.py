"""What every metered surface does around its own checks: the clocks, the caller, the
body and its model; then the request's record, and the routes tried in turn.

Each surface keeps its own wording (Anthropic's "field: message", OpenAI's sentences) and
its own error format (``errors.py`` picks it by path)."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from fastapi import Request
from starlette.responses import Response

from meterline.common.budgets import RequestScope
from meterline.common.pricing import TokenCounts
from meterline.ingress.budget_guard import INPUT_BYTES_PER_TOKEN, Refusal, output_limit
from meterline.ingress.deps import Caller, Gateway, authenticate, gateway_of, read_json_object
from meterline.ingress.errors import BadRequest, QuotaExceeded
from meterline.ingress.metering import RequestRecord
from meterline.ingress.routing import Route, first_success, on_route
from meterline.ingress.tagging import Attribution


@dataclass(frozen=True, slots=True)
class Call:
    gateway: Gateway
    caller: Caller
    body: dict[str, Any]
    model: str
    started_at: datetime
    started: float
    body_bytes: int

    def record(
        self, surface: str, routes: Sequence[Route], attribution: Attribution, streamed: bool
    ) -> RequestRecord:
        """The request's record, under its first route (``answer`` moves it along)."""
        first = routes[0]
        return RequestRecord(
            team_id=self.caller.team.id,
            api_key_name=self.caller.key_name,
            api_surface=surface,
            model_requested=self.model,
            model=first.model,
            provider=first.provider.slug,
            credential_type=first.credential.type,
            zero_data_retention=first.provider.zero_data_retention,
            streamed=streamed,
            user_id=attribution.user,
            tags=attribution.tags,
            started_at=self.started_at,
            started=self.started,
        )


async def begin(
    request: Request,
    caller_of: Callable[[Request, Gateway], Caller] = authenticate,
    *,
    anthropic: bool = False,
    model_header: str | None = None,
) -> Call:
    """The caller, the body and its ``model`` (or the model named by ``model_header``); on
    the Messages surface the ``anthropic-version`` header too, before the body is read."""
    # Both clocks first, so the duration includes reading the body. perf_counter for
    # durations: the wall clock may jump.
    started_at, started = datetime.now(UTC), time.perf_counter()
    gateway = gateway_of(request)
    caller = caller_of(request, gateway)
    if anthropic and not request.headers.get("anthropic-version", "").strip():
        raise BadRequest("anthropic-version: header is required", param="anthropic-version")
    body, body_bytes = await read_json_object(request, gateway.settings.max_request_body_bytes)
    model = request.headers.get(model_header) if model_header else body.get("model")
    if not isinstance(model, str) or not model:
        if model_header:
            raise BadRequest(
                f"{model_header}: header is required ('provider/model')", param=model_header
            )
        if anthropic:
            raise BadRequest("model: a string 'provider/model' is required", param="model")
        raise BadRequest("model is required: a string 'provider/model'", param="model")
    return Call(gateway, caller, body, model, started_at, started, body_bytes)


def streamed(body: dict[str, Any], *, anthropic: bool = False) -> bool:
    stream = body.get("stream", False)
    if not isinstance(stream, bool):
        raise BadRequest(
            "stream: must be a boolean" if anthropic else "stream must be a boolean",
            param="stream",
        )
    return stream


async def answer(
    call: Call,
    routes: Sequence[Route],
    record: RequestRecord,
    send: Callable[[Route], Awaitable[Response]],
) -> Response:
    """The first route's answer, or the first worth keeping of several (``routing.py``);
    each route only once the team's hard budgets admit the request on it."""
    guard = call.gateway.budgets
    if guard.enforces(call.caller.team.id):
        if len(routes) > 1:
            routes = admitted_routes(call, routes, record)
            # The record names its first route, which may have been dropped.
            on_route(record, routes[0])
        send = _reserving(call, record, send)
    if len(routes) == 1:
        return await send(routes[0])
    return await first_success(routes, record, send)


def _estimate(call: Call) -> TokenCounts:
    """An upper bound of the request's usage, for its reservation (``budget_guard.py``)."""
    settings = call.gateway.settings
    return TokenCounts(
        input_tokens=-(-call.body_bytes // INPUT_BYTES_PER_TOKEN),
        output_tokens=output_limit(call.body, settings.budget_default_output_tokens),
    )


def _scope(record: RequestRecord, route: Route) -> RequestScope:
    return RequestScope(
        api_key_name=record.api_key_name,
        user=record.user_id,
        tags=record.tags,
        provider=route.provider.slug,
        model=route.model,
        credential_type=route.credential.type,
    )


def _admit(call: Call, record: RequestRecord, route: Route, *, reserve: bool) -> Refusal | None:
    guard = call.gateway.budgets
    team = call.caller.team
    pricer = guard.pricer(team, route.provider.slug, route.model, route.credential.type)
    return guard.admit(
        team, _scope(record, route), record.event_id, pricer, _estimate(call), reserve=reserve
    )


def admitted_routes(call: Call, routes: Sequence[Route], record: RequestRecord) -> Sequence[Route]:
    """The routes no hard budget refuses; none: 402, naming the first route's budget."""
    kept = [r for r in routes if _admit(call, record, r, reserve=False) is None]
    if kept:
        return kept
    refusal = _admit(call, record, routes[0], reserve=False)
    assert refusal is not None
    call.gateway.budgets.count(refusal)
    raise QuotaExceeded(refusal.message(), refusal.budget.id)


def _reserving(
    call: Call, record: RequestRecord, send: Callable[[Route], Awaitable[Response]]
) -> Callable[[Route], Awaitable[Response]]:
    async def reserve_then_send(route: Route) -> Response:
        # Checked again as it reserves: other requests may have reserved the rest meanwhile.
        refusal = _admit(call, record, route, reserve=True)
        if refusal is not None:
            raise QuotaExceeded(refusal.message(), refusal.budget.id)
        return await send(route)

    return reserve_then_send
