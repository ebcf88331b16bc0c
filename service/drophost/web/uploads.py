"""JSON handlers for digest uploads, retention and pinning."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response

from drophost.errors import BadRequestError, ConflictError, DrophostError, TooLargeError, ValidationError
from drophost.jsonbody import load_object
from drophost.names import parse_deploy_ttl, validate_slot
from drophost.pipeline import siterules
from drophost.pipeline.blobbatch import BlobBatch
from drophost.pipeline.digest import DigestUploads
from drophost.pipeline.siterules import RuleLimits
from drophost.store import versions
from drophost.web import views
from drophost.web.auth import authorize_slot
from drophost.web.common import deployer_of, id_param, missing_version, path_slot, pool_of, read_json, settings_of
from drophost.web.gitops import refuse_drift

FILE_LIST_MAX_BYTES = 32 * 1024 * 1024  # the first line of POST /api/uploads/deploy: a large site's file list


async def create_upload(request: Request) -> Response:
    """Start a digest upload: {"slot", "ttl"?, "name"?, "site"?, "files": {path: sha256}} -> the digests it lacks."""
    body = await read_json(request)
    uploads = DigestUploads(deployer_of(request))
    fields = await checked_start(request, body)
    result = await run_in_threadpool(lambda: uploads.create(**fields))
    return JSONResponse(result, status_code=201)


async def checked_start(request: Request, body: dict[str, Any]) -> dict[str, Any]:
    """The arguments of DigestUploads.create/start from a start body, with the caller allowed its slot."""
    slot = body.get("slot")
    if not isinstance(slot, str):
        raise ValidationError("slot is required", field="slot")
    authorize_slot(request, validate_slot(slot))
    force = body.get("force", False)
    if not isinstance(force, bool):
        raise ValidationError("force must be true or false", field="force")
    await run_in_threadpool(refuse_drift, request, slot, force)
    ttl_raw = body.get("ttl")
    if ttl_raw is not None and not isinstance(ttl_raw, str | int):
        raise ValidationError("ttl must be seconds or a duration like 7d", field="ttl")
    ttl = parse_deploy_ttl(ttl_raw, maximum=settings_of(request).max_ttl_seconds)
    name = body.get("name")
    if name is not None and not isinstance(name, str):
        raise ValidationError("name must be text", field="name")
    site = siterules.parse_options(body.get("site"), file="site", limits=RuleLimits.from_settings(settings_of(request)))
    return {"slot": slot, "ttl_seconds": ttl, "files": body.get("files"), "source_name": name, "site": site}


async def deploy_upload(request: Request) -> Response:
    """Start a digest upload, send files and deploy, in one body: the JSON of POST /api/uploads (plus
    "activate") on the first line, then files framed as in a batch. For a client that knows which
    files are new to the server (one changed file of a site deployed before), one round trip instead
    of three. 201 with the deployment once the store has every file; else 202 with what it still
    lacks, and the upload stays open for POST .../batch and .../finalize."""
    chunks = request.stream()
    head, rest = await read_first_line(chunks)
    body = await run_in_threadpool(load_object, head, what="the first line of the body")
    activate = body.pop("activate", True)
    if not isinstance(activate, bool):
        raise ValidationError("activate must be true or false", field="activate")
    deployer = deployer_of(request)
    uploads = DigestUploads(deployer)
    fields = await checked_start(request, body)
    upload_id, row = await run_in_threadpool(lambda: uploads.start(**fields))
    wanted = frozenset(row["manifest"].values())
    batch = BlobBatch(deployer.artifacts, wanted, max_blob_bytes=deployer.settings.max_unpacked_bytes)
    try:
        if rest:
            await run_in_threadpool(batch.feed, rest)
        async for chunk in chunks:
            if chunk:
                await run_in_threadpool(batch.feed, chunk)
        batch.end()
    except ClientDisconnect:
        raise BadRequestError(
            f"the connection broke inside the files; {batch.complete} complete blobs were kept",
            kept=batch.complete,
            upload_id=upload_id,
        ) from None
    except DrophostError:
        # A bad frame or a wrong digest: answered 4xx, and no open upload is left waiting for expiry.
        await run_in_threadpool(uploads.abandon, upload_id)
        raise
    finally:
        batch.close()
    deployment, missing = await run_in_threadpool(
        lambda: uploads.finalize_if_complete(upload_id, row, activate=activate)
    )
    if deployment is None:
        status = {"upload_id": upload_id, "slot": row["slot"], "files": len(row["manifest"]), "missing": missing}
        return JSONResponse(status, status_code=202)
    return JSONResponse({**views.deployment(settings_of(request), deployment), "upload_id": upload_id}, status_code=201)


async def read_first_line(chunks: AsyncIterator[bytes]) -> tuple[bytes, bytes]:
    """(the body's first line, without its newline; what followed it in the same piece)."""
    head = bytearray()
    async for chunk in chunks:
        newline = chunk.find(b"\n")
        if newline >= 0:
            head += chunk[:newline]
            return bytes(head), chunk[newline + 1 :]
        head += chunk
        if len(head) > FILE_LIST_MAX_BYTES:
            raise TooLargeError(f"the first line of the body is over {FILE_LIST_MAX_BYTES} bytes")
    return bytes(head), b""


async def put_blob(request: Request) -> Response:
    """Upload one file's bytes under its sha256."""
    upload_id = request.path_params["upload_id"]
    digest = request.path_params["digest"]
    deployer = deployer_of(request)
    uploads = DigestUploads(deployer)
    await run_in_threadpool(uploads.check_blob, upload_id, digest)
    if deployer.artifacts.has(digest):
        return JSONResponse({"digest": digest, "stored": False})
    writer = deployer.artifacts.writer(limit=deployer.settings.max_unpacked_bytes)
    try:
        async for chunk in request.stream():
            writer.write(chunk)
        await run_in_threadpool(writer.finish, digest)
    finally:
        writer.close()
    return JSONResponse({"digest": digest, "stored": True}, status_code=201)


async def get_upload(request: Request) -> Response:
    """An open digest upload and the digests the store still lacks (to resume after a broken batch)."""
    uploads = DigestUploads(deployer_of(request))
    return JSONResponse(await run_in_threadpool(uploads.status, request.path_params["upload_id"]))


async def post_batch(request: Request) -> Response:
    """Upload many files in one body: for each, '<sha256> <size>\\n' then its bytes (pipeline/blobbatch.py)."""
    deployer = deployer_of(request)
    wanted = await run_in_threadpool(DigestUploads(deployer).wanted, request.path_params["upload_id"])
    batch = BlobBatch(deployer.artifacts, wanted, max_blob_bytes=deployer.settings.max_unpacked_bytes)
    try:
        # Hashing and writing run in a worker thread, a piece at a time: the event loop keeps
        # receiving the other batches in flight meanwhile.
        async for chunk in request.stream():
            if chunk:
                await run_in_threadpool(batch.feed, chunk)
        batch.end()
    except ClientDisconnect:
        # Expected now and then (a client resumes with what is still missing): no traceback.
        raise BadRequestError(
            f"the connection broke inside the batch; its {batch.complete} complete blobs were kept",
            kept=batch.complete,
        ) from None
    finally:
        batch.close()
    return JSONResponse(batch.report())


async def finalize_upload(request: Request) -> Response:
    """Deploy a digest upload once every file is in the store."""
    body = await read_json(request)
    activate = body.get("activate", True)
    if not isinstance(activate, bool):
        raise ValidationError("activate must be true or false", field="activate")
    uploads = DigestUploads(deployer_of(request))
    upload = await run_in_threadpool(uploads.open_upload, request.path_params["upload_id"])
    authorize_slot(request, upload["slot"])
    row = await run_in_threadpool(uploads.finalize, request.path_params["upload_id"], activate=activate)
    return JSONResponse(views.deployment(settings_of(request), row), status_code=201)


async def collect_garbage(request: Request) -> Response:
    """Apply retention and remove unreferenced files: {"dry_run": true} only reports."""
    body = await read_json(request)
    dry_run = body.get("dry_run", False)
    if not isinstance(dry_run, bool):
        raise ValidationError("dry_run must be true or false", field="dry_run")
    report = await run_in_threadpool(deployer_of(request).collect_garbage, dry_run=dry_run)
    return JSONResponse(report.to_json())


async def pin_version(request: Request) -> Response:
    """Pin (or with {"pinned": false} unpin) a config version so retention keeps its files."""
    slot = path_slot(request)
    version = id_param(request, "version")
    body = await read_json(request)
    pinned = body.get("pinned", True)
    if not isinstance(pinned, bool):
        raise ValidationError("pinned must be true or false", field="pinned")
    pool = pool_of(request)

    def pin() -> None:
        with pool.connection() as conn:
            status = versions.set_pinned(conn, slot, version, pinned)
            if status is None:
                raise missing_version(conn, slot, version)
            if pinned and status == "pruned":
                raise ConflictError(
                    f'the files of config version {version} of slot "{slot}" are no longer on disk: it cannot be pinned'
                )

    await run_in_threadpool(pin)
    return JSONResponse({"slot": slot, "version": version, "pinned": pinned})
