"""Request dependencies, as ``Annotated`` aliases so handlers read like prose.

They are ``async`` although none of them awaits: FastAPI runs a plain ``def`` dependency in
its thread pool, and four thread hops per request cost more than the lookups themselves."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request

from meterline.common.config import GatewayKey, KeyRing, TeamConfig
from meterline.query.cursor import CursorSigner
from meterline.query.errors import Unauthenticated
from meterline.query.observe import authenticated
from meterline.query.settings import QuerySettings
from meterline.query.warehouse import Warehouse


@dataclass(frozen=True, slots=True)
class Caller:
    team: TeamConfig
    key: GatewayKey

    @property
    def key_name(self) -> str:
        return self.key.name


async def _team(request: Request) -> TeamConfig:
    """The team of the gateway key in ``Authorization: Bearer <key>``: the scope of every
    query the request makes."""
    return (await _caller(request)).team


async def _caller(request: Request) -> Caller:
    """The team and the key in ``Authorization: Bearer <key>``."""
    header = request.headers.get("authorization", "")
    scheme, _, key = header.partition(" ")
    if not header:
        raise Unauthenticated("missing Authorization header; send 'Authorization: Bearer <key>'")
    if scheme.lower() != "bearer" or not key.strip():
        raise Unauthenticated("the Authorization header must be 'Bearer <gateway API key>'")
    key_ring: KeyRing = request.app.state.key_ring
    found = key_ring.authenticate(key.strip())
    if found is None:
        raise Unauthenticated("invalid API key")
    caller = Caller(*found)
    authenticated(caller.team.id)
    return caller


async def _warehouse(request: Request) -> Warehouse:
    warehouse: Warehouse = request.app.state.warehouse
    return warehouse


async def _settings(request: Request) -> QuerySettings:
    settings: QuerySettings = request.app.state.settings
    return settings


async def _cursors(request: Request) -> CursorSigner:
    signer: CursorSigner = request.app.state.cursors
    return signer


AuthenticatedTeam = Annotated[TeamConfig, Depends(_team)]
AuthenticatedCaller = Annotated[Caller, Depends(_caller)]
WarehouseDep = Annotated[Warehouse, Depends(_warehouse)]
SettingsDep = Annotated[QuerySettings, Depends(_settings)]
CursorsDep = Annotated[CursorSigner, Depends(_cursors)]
