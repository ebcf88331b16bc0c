"""What every handler shares: the JSON body reader, the app's pool and settings, parameters."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from psycopg_pool import ConnectionPool
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from drophost.errors import NoSuchSlotError, NotFoundError, ValidationError
from drophost.jsonbody import load_object
from drophost.names import validate_slot
from drophost.pipeline.deployer import Deployer
from drophost.settings import Settings
from drophost.store import slots
from drophost.store.rows import Conn

Handler = Callable[[Request], Awaitable[Response]]


def deployer_of(request: Request) -> Deployer:
    deployer: Deployer = request.app.state.deployer
    return deployer


def pool_of(request: Request) -> ConnectionPool[Any]:
    pool: ConnectionPool[Any] = request.app.state.pool
    return pool


def settings_of(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


async def read_json(request: Request) -> dict[str, Any]:
    body = await request.body()
    if not body.strip():
        return {}
    # A file list can be megabytes: read it off the event loop.
    return await run_in_threadpool(load_object, body, what="the request body")


def path_slot(request: Request) -> str:
    return validate_slot(request.path_params["slot"])


def id_param(request: Request, name: str) -> int:
    raw = request.path_params[name]
    if not raw.isascii() or not raw.isdigit() or len(raw) > 18 or int(raw) < 1:
        raise NotFoundError(f"{name} must be a positive integer")
    return int(raw)


def int_param(request: Request, name: str, *, default: int, low: int, high: int) -> int:
    raw = request.query_params.get(name)
    if raw is None:
        return default
    if not raw.isascii() or not raw.isdigit() or not low <= int(raw) <= high:
        raise ValidationError(f"{name} must be a whole number from {low} to {high}", field=name)
    return int(raw)


def missing_version(conn: Conn, slot: str, number: int) -> NotFoundError:
    """404 for a version that is not there: a typo'd slot is named as such, not as a slot without that version."""
    if not slots.slot_exists(conn, slot):
        return NoSuchSlotError(slot)
    return NotFoundError(f'slot "{slot}" has no config version {number}')
