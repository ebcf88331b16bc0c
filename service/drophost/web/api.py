"""The JSON API: thin handlers that validate input, call the deployer or the store, shape output."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from typing import Any

from psycopg_pool import ConnectionPool
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData, UploadFile
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse

from drophost.errors import (
    NoSuchSlotError,
    UnsupportedMediaError,
    ValidationError,
)
from drophost.jsonbody import MAX_DEPTH, nests_deeper_than
from drophost.names import parse_deploy_ttl, parse_ttl, slot_from_filename, validate_slot
from drophost.pipeline import releases, siterules, versiondiff
from drophost.pipeline.buildlog import is_written, read_log
from drophost.pipeline.siterules import RuleLimits, SiteOptions
from drophost.settings import Settings
from drophost.store import deployments, slots, versions
from drophost.text import show
from drophost.web import views
from drophost.web.auth import authorize_slot, principal_of
from drophost.web.common import (
    deployer_of,
    id_param,
    int_param,
    missing_version,
    path_slot,
    pool_of,
    read_json,
    settings_of,
)
from drophost.web.gitops import create_git_deployment, gitops_of, refuse_drift


# -- deployments -----------------------------------------------------------------------------
async def create_deployment(request: Request) -> Response:
    """Deploy a ZIP upload (multipart: file, slot, ttl), or queue a git deploy (JSON: repo, branch, path, slot)."""
    settings = settings_of(request)
    content_type = request.headers.get("content-type", "")
    if content_type.startswith("application/json"):
        return await create_git_deployment(request)
    if not content_type.startswith("multipart/form-data"):
        raise UnsupportedMediaError(
            "send a ZIP as multipart/form-data with a field named file, or JSON with repo, branch and slot"
        )
    async with request.form(max_files=1, max_fields=8, max_part_size=64 * 1024) as form:
        upload = form.get("file")
        if not isinstance(upload, UploadFile):
            raise ValidationError("the form needs a field named file holding a ZIP archive", field="file")
        raw_slot = _form_text(form, "slot")
        slot = validate_slot(raw_slot) if raw_slot else slot_from_filename(upload.filename or "")
        authorize_slot(request, slot)
        ttl = parse_deploy_ttl(_form_text(form, "ttl"), maximum=settings.max_ttl_seconds)
        site = site_field(form.get("site"), settings)
        activate = _form_flag(form, "activate")
        # A draft is still an upload to the slot: a git-managed one refuses it unless forced.
        force = (_form_text(form, "force") or "").lower() in ("1", "true", "yes")
        await run_in_threadpool(refuse_drift, request, slot, force)
        row = await run_in_threadpool(
            deployer_of(request).deploy_archive,
            upload.file,
            slot=slot,
            source_name=(upload.filename or "")[:255] or None,
            ttl_seconds=ttl if ttl is not None else settings.default_ttl_seconds or None,
            site=site,
            activate=activate,
        )
    return JSONResponse(views.deployment(settings, row), status_code=201)


async def list_deployments(request: Request) -> Response:
    """Deployments, newest first (optional ?slot=)."""
    slot = request.query_params.get("slot")
    if slot is not None:
        validate_slot(slot)
    limit = int_param(request, "limit", default=100, low=1, high=1000)
    pool = pool_of(request)
    rows = await run_in_threadpool(_with_conn, pool, deployments.list_deployments, slot=slot, limit=limit)
    settings = settings_of(request)
    return JSONResponse({"deployments": [views.deployment(settings, r) for r in rows]})


async def get_deployment(request: Request) -> Response:
    """One deployment."""
    deployment_id = id_param(request, "id")
    row = await run_in_threadpool(deployer_of(request).deployment, deployment_id)
    return JSONResponse(views.deployment(settings_of(request), row))


async def get_deployment_log(request: Request) -> Response:
    """A deployment's build log as text; with ?follow=1, streamed until the deployment ends."""
    deployment_id = id_param(request, "id")
    deployer = deployer_of(request)
    await run_in_threadpool(deployer.deployment, deployment_id)  # 404 for an unknown id
    builds = settings_of(request).builds_dir
    media = "text/plain; charset=utf-8"
    if request.query_params.get("follow") not in ("1", "true"):
        return Response(await run_in_threadpool(read_log, builds, deployment_id), media_type=media)

    async def follow() -> AsyncIterator[bytes]:
        offset = 0
        while True:
            # While the build writes its log, the deployment has not ended (or its last lines are
            # still to come): no need to ask the database. Short waits: a push's hook follows this
            # log and returns only once it has ended.
            writing = await run_in_threadpool(is_written, builds, deployment_id)
            data = await run_in_threadpool(read_log, builds, deployment_id, offset)
            if data:
                offset += len(data)
                yield data
            if writing:
                await asyncio.sleep(0.02)
                continue
            row = await run_in_threadpool(deployer.deployment, deployment_id)
            if row["state"] not in ("queued", "building"):
                # Ended, and its log closed (or never opened): what is left of it is all there is.
                if rest := await run_in_threadpool(read_log, builds, deployment_id, offset):
                    yield rest
                return
            await asyncio.sleep(0.05)

    return StreamingResponse(follow(), media_type=media)


# -- slots and versions ----------------------------------------------------------------------
async def list_slots(request: Request) -> Response:
    """Every slot with its active version."""
    rows = await run_in_threadpool(_with_conn, pool_of(request), slots.list_slots)
    settings = settings_of(request)
    return JSONResponse({"slots": [views.slot(settings, r) for r in rows]})


async def list_versions(request: Request) -> Response:
    """A slot's config versions, newest first."""
    slot = path_slot(request)
    current, rows = await run_in_threadpool(_slot_and_versions, pool_of(request), slot)
    active = current["active_version"] if current and current["status"] == "live" else None
    return JSONResponse({"slot": slot, "active": active, "versions": [views.version(r) for r in rows]})


async def get_version(request: Request) -> Response:
    """One config version with its full nginx text."""
    slot = path_slot(request)
    number = id_param(request, "version")
    row = await run_in_threadpool(_with_conn, pool_of(request), versions.get_version, slot, number)
    if row is None:
        raise await run_in_threadpool(_with_conn, pool_of(request), missing_version, slot, number)
    return JSONResponse({"slot": slot, **views.version(row, with_config=True)})


async def rollback(request: Request) -> Response:
    """Make a stored config version live again (default: the one before the current)."""
    slot = path_slot(request)
    body = await read_json(request)
    version = body.get("version")
    if version is not None and (not isinstance(version, int) or isinstance(version, bool) or version < 1):
        raise ValidationError("version must be a positive integer", field="version")
    result = await run_in_threadpool(deployer_of(request).rollback, slot, version)
    actor = principal_of(request).actor
    locked = await run_in_threadpool(gitops_of(request).lock_after_rollback, slot, result["active"], actor)
    return JSONResponse({**result, "locked": locked} if locked else result)


async def promote(request: Request) -> Response:
    """Make a deployment of the slot live (a draft, or an earlier one): the same switch as a rollback."""
    slot = path_slot(request)
    body = await read_json(request)
    deployment_id = body.get("deployment_id")
    if not isinstance(deployment_id, int) or isinstance(deployment_id, bool) or deployment_id < 1:
        raise ValidationError("deployment_id must be a positive integer", field="deployment_id")
    result = await run_in_threadpool(deployer_of(request).promote, slot, deployment_id)
    return JSONResponse(result)


async def delete_slot(request: Request) -> Response:
    """Take a slot offline, its history kept; with ?purge=true&confirm=<slot>, delete it for good."""
    slot = path_slot(request)
    purge = request.query_params.get("purge", "false")
    if purge not in ("true", "false", "1", "0"):
        raise ValidationError("purge must be true or false", field="purge")
    if purge in ("false", "0"):
        request.state.audit_action = "offline"
        return JSONResponse(await run_in_threadpool(deployer_of(request).take_offline, slot))
    request.state.audit_action = "delete"
    if request.query_params.get("confirm") != slot:
        raise ValidationError(
            f"deleting a slot for good removes its versions, deployments and files: confirm with ?confirm={slot}",
            field="confirm",
        )
    return JSONResponse(await run_in_threadpool(deployer_of(request).delete_slot, slot))


async def diff_versions(request: Request) -> Response:
    """What changed from version a to version b: the nginx config and the published files."""
    slot = path_slot(request)
    a = int_param(request, "a", default=0, low=1, high=2**31 - 1)
    b = int_param(request, "b", default=0, low=1, high=2**31 - 1)
    if not a or not b:
        raise ValidationError("give the two versions to compare as ?a=N&b=M", field="a")
    result = await run_in_threadpool(compare_versions, pool_of(request), settings_of(request), slot, a, b)
    return JSONResponse(result)


def compare_versions(pool: ConnectionPool[Any], settings: Settings, slot: str, a: int, b: int) -> dict[str, Any]:
    with pool.connection() as conn:
        old, new = versions.get_version(conn, slot, a), versions.get_version(conn, slot, b)
        for number, row in ((a, old), (b, new)):
            if row is None:
                raise missing_version(conn, slot, number)
    assert old is not None and new is not None
    root = settings.releases_dir
    files = versiondiff.diff_trees(releases.locate(root, old["release_dir"]), releases.locate(root, new["release_dir"]))
    return {
        "slot": slot,
        "a": a,
        "b": b,
        "config": versiondiff.unified(old["config"], new["config"], f"version {a}", f"version {b}"),
        "files": files.to_json(),
    }


async def list_events(request: Request) -> Response:
    """A slot's switches (deploy, rollback, offline, expire, promote), newest first."""
    slot = path_slot(request)
    limit = int_param(request, "limit", default=100, low=1, high=1000)
    rows = await run_in_threadpool(_with_conn, pool_of(request), slots.list_activations, slot, limit)
    if not rows and not await run_in_threadpool(_with_conn, pool_of(request), slots.slot_exists, slot):
        raise NoSuchSlotError(slot)
    return JSONResponse({"slot": slot, "events": [views.event(r) for r in rows]})


async def update_slot(request: Request) -> Response:
    """Set a live slot's time to live from now: {"ttl": "2h"} (null or "" removes it), and/or its
    rules: {"site": {...}}, a new config version over the same files."""
    slot = path_slot(request)
    body = await read_json(request)
    if "ttl" not in body and "site" not in body:
        raise ValidationError('send {"ttl": "<duration>"} (or null to never expire) or {"site": {...}}', field="ttl")
    settings = settings_of(request)
    # Both are checked before either changes anything.
    options = siterules.parse_options(body.get("site"), file="site", limits=RuleLimits.from_settings(settings))
    ttl: int | None = None
    if "ttl" in body:
        raw = body["ttl"]
        if raw is not None and (not isinstance(raw, str | int) or isinstance(raw, bool)):
            raise ValidationError("ttl must be a duration like 3600, 90m or 7d, or null", field="ttl")
        ttl = parse_ttl(raw, maximum=settings.max_ttl_seconds)
    result: dict[str, Any] = {"slot": slot}
    if "site" in body:
        result.update(await run_in_threadpool(deployer_of(request).update_site, slot, options))
    if "ttl" in body:
        result.update(await run_in_threadpool(deployer_of(request).set_ttl, slot, ttl))
    return JSONResponse(result)


# -- helpers ---------------------------------------------------------------------------------
def _form_flag(form: FormData, name: str) -> bool:
    """A true/false form field; absent means true (a deploy goes live unless told otherwise)."""
    value = _form_text(form, name)
    if value is None or value in ("true", "1"):
        return True
    if value in ("false", "0"):
        return False
    raise ValidationError(f"{name} must be true or false", field=name)


def _form_text(form: FormData, name: str) -> str | None:
    """A text field exactly as sent: never trimmed, so whitespace or a control character in it is refused."""
    value = form.get(name)
    if value is None:
        return None
    if not isinstance(value, str):
        raise ValidationError(f"{name} must be a text field", field=name)
    # Leading or trailing whitespace and control characters are what a trim would have hidden; a
    # space inside ("Bad Name") is left to the field's own check, which explains what is allowed.
    if value != value.strip() or any(not ch.isprintable() for ch in value):
        raise ValidationError(
            f"{name} {show(value, 40)} carries whitespace or control characters; send the value alone", field=name
        )
    return value


def site_field(raw: object, settings: Settings) -> SiteOptions | None:
    """The `site` form field of an upload: the site's rules as JSON text."""
    if raw is None or raw == "":
        return None
    if not isinstance(raw, str):
        raise ValidationError("site must be a text field holding JSON", field="site")
    # As for every JSON body: json.loads recurses once per level (a RecursionError is a 500).
    if nests_deeper_than(raw, MAX_DEPTH):
        raise ValidationError(f"site nests JSON deeper than {MAX_DEPTH} levels", field="site")
    try:
        data = json.loads(raw)
    except ValueError:
        raise ValidationError("site must be JSON", field="site") from None
    return siterules.parse_options(data, file="site", limits=RuleLimits.from_settings(settings))


def _with_conn(pool: ConnectionPool[Any], query: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    with pool.connection() as conn:
        return query(conn, *args, **kwargs)


def _slot_and_versions(pool: ConnectionPool[Any], slot: str) -> tuple[dict[str, Any] | None, list[dict[str, Any]]]:
    with pool.connection() as conn:
        current = slots.get_slot(conn, slot)
        rows = versions.list_versions(conn, slot)
    # A slot whose only versions failed was never live, but its failed versions are still listed.
    if current is None and not rows:
        raise NoSuchSlotError(slot)
    return current, rows
