"""The application factory: the router, error handlers, start-up (migrate, reconcile) and the background loops."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any

from psycopg_pool import ConnectionPool
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from drophost import hangup
from drophost.access import FailureLimiter
from drophost.analytics.accesslog import Ingester
from drophost.errors import DrophostError, SettingsError
from drophost.gitops.controller import GitOps
from drophost.pipeline.deployer import Deployer
from drophost.pipeline.nginx import Nginx
from drophost.processes import take_death
from drophost.settings import Settings
from drophost.store.migrate import migrate
from drophost.web import dashboard, deliveries, openapi, routes, teampages

log = logging.getLogger(__name__)


def create_app(settings: Settings, environ: Mapping[str, str] | None = None) -> Starlette:
    """`environ` holds the webhook secrets deploy.yaml names (default: the process environment)."""
    if not settings.api_token:
        raise SettingsError("DROPHOST_API_TOKEN is empty; `drophost up` creates one for you")
    if not settings.database_url:
        raise SettingsError("no database: set DATABASE_URL (or use `drophost up`)")

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        pool: ConnectionPool[Any] = ConnectionPool(
            settings.database_url,
            min_size=1,
            max_size=settings.db_pool_size,
            open=False,
            kwargs={"autocommit": True},
        )
        await run_in_threadpool(pool.open, True, 30.0)
        nginx = Nginx(settings)
        deployer = Deployer(settings, pool, nginx, os.environ if environ is None else environ)
        ingester = Ingester(pool, nginx.root / "access.log", retention_days=settings.access_log_retention_days)
        gitops = GitOps(settings, pool, deployer, os.environ if environ is None else environ)
        app.state.settings = settings
        app.state.pool = pool
        app.state.deployer = deployer
        app.state.ingester = ingester
        app.state.gitops = gitops

        def start() -> None:
            with pool.connection() as conn:
                migrate(conn)
            nginx.prepare()
            deployer.artifacts.prepare()  # the store's folders, before the first deploy needs them
            gitops.prime_feedback()  # so reconcile reports the deploys a crash cut short (outbox)
            # A service that died under `drophost up` (killed, out of memory) may have been killed by
            # the deploy it was running: that one fails with the reason and is not tried again.
            died = take_death(settings.data_dir / "run")
            if died is None:
                outcome = deployer.reconcile()
                gitops.requeue(outcome["failed_deployments"])
            else:
                outcome = deployer.reconcile(interrupted=f"{died} while this deploy ran; it is not tried again")
                log.error("%s; the deploys it was running failed: %s", died, outcome["failed_deployments"])
            log.info("reconciled nginx with PostgreSQL: %s", outcome)
            applied = gitops.apply_at_start()
            log.info("applied deploy.yaml: %s", applied)
            gitops.start()

        await run_in_threadpool(start)
        expiry = asyncio.create_task(_expire_forever(deployer, settings.expiry_interval))
        ingestion = asyncio.create_task(_ingest_forever(ingester, nginx, settings))
        collection = asyncio.create_task(_collect_forever(deployer, settings.gc_interval))
        stop_reloading_on_sighup = _reload_on_sighup(gitops)
        try:
            yield
        finally:
            stop_reloading_on_sighup()
            for task in (expiry, ingestion, collection):
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            await run_in_threadpool(gitops.stop)
            await run_in_threadpool(pool.close)

    app = Starlette(
        routes=build_routes(settings),
        lifespan=lifespan,
        exception_handlers=_exception_handlers(),
        middleware=[Middleware(MarkAnswers)],
    )
    app.state.settings = settings
    app.state.signin_limiter = FailureLimiter(settings.signin_max_failures, settings.signin_window)
    app.state.openapi = openapi.document(routes.endpoints(settings))
    return app


API_MARKER = "X-Drophost-Api"


class MarkAnswers:
    """Every answer of the service says it is DropHost's (`X-Drophost-Api: 1`), errors and unknown paths
    included: the CLI pointed at the sites port or another web server can then say so, instead of
    repeating that server's 404."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def marked(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), (API_MARKER.lower().encode(), b"1")]
            await send(message)

        await self.app(scope, receive, marked)


def build_routes(settings: Settings) -> list[BaseRoute]:
    return [
        *dashboard.routes(),
        *teampages.routes(),
        *deliveries.routes(),
        *(routes.starlette_route(endpoint) for endpoint in routes.endpoints(settings)),
    ]


def _reload_on_sighup(gitops: GitOps) -> Callable[[], None]:
    """SIGHUP re-reads deploy.yaml (only where this loop owns signals: the main thread)."""
    loop = asyncio.get_running_loop()

    def reload() -> None:
        future = loop.run_in_executor(None, gitops.reload)
        future.add_done_callback(_log_reload)

    previous = signal.getsignal(signal.SIGHUP)
    try:
        loop.add_signal_handler(signal.SIGHUP, reload)
    except (RuntimeError, ValueError, NotImplementedError):
        return lambda: None
    if hangup.take_pending():
        # A SIGHUP came while `drophost up` was starting, perhaps after start read deploy.yaml.
        log.info("SIGHUP: one came while starting; applying deploy.yaml again")
        reload()

    def remove() -> None:
        hangup.stopping()
        loop.remove_signal_handler(signal.SIGHUP)
        # asyncio resets SIGHUP to its default action, which would kill `drophost up` while it stops.
        if previous is not None:
            signal.signal(signal.SIGHUP, previous)

    return remove


def _log_reload(future: asyncio.Future[dict[str, Any]]) -> None:
    error = future.exception()
    if isinstance(error, DrophostError):
        log.error("SIGHUP: deploy.yaml not applied: %s", error.message)
    elif error is not None:
        log.error("SIGHUP: deploy.yaml not applied", exc_info=error)
    else:
        log.info("SIGHUP: applied deploy.yaml: %s", future.result())


async def _collect_forever(deployer: Deployer, interval: float) -> None:
    """Retention and garbage collection every `interval` seconds (0 turns it off)."""
    if interval <= 0:
        return
    while True:
        await asyncio.sleep(interval)
        try:
            report = await run_in_threadpool(deployer.collect_garbage, dry_run=False)
            log.info("garbage collection: %s", report.to_json())
        except Exception:  # the loop must survive a database hiccup
            log.exception("garbage collection failed")


async def _expire_forever(deployer: Deployer, interval: float) -> None:
    # Check at once: slots whose time ran out while the service was stopped go offline at start.
    while True:
        try:
            await run_in_threadpool(deployer.expire_due)
        except Exception:  # the loop must survive a database hiccup
            log.exception("expiry check failed")
        await asyncio.sleep(interval)


async def _ingest_forever(ingester: Ingester, nginx: Nginx, settings: Settings) -> None:
    while True:
        try:
            await run_in_threadpool(ingester.ingest)
            await run_in_threadpool(ingester.rotate_if_larger_than, settings.access_log_rotate_bytes, nginx.reopen_logs)
        except Exception:  # the loop must survive a database hiccup
            log.exception("access log ingestion failed")
        await asyncio.sleep(settings.access_log_interval)


# -- errors ----------------------------------------------------------------------------------
def _exception_handlers() -> dict[Any, Any]:
    return {
        DrophostError: _drophost_error,
        HTTPException: _http_error,
        ClientDisconnect: _client_disconnected,
        Exception: _unexpected_error,
    }


async def _drophost_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, DrophostError)
    if exc.status_code >= 500:
        log.warning("%s %s failed: %s %s", request.method, request.url.path, exc.message, exc.details)
    return JSONResponse(exc.to_json(), status_code=exc.status_code)


_HTTP_MESSAGES = {
    400: "the request could not be read",
    404: "there is nothing at this address",
    405: "this method is not allowed here",
    413: "the request body is larger than the limit",
}


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    message = _HTTP_MESSAGES.get(exc.status_code, "the request could not be handled")
    if exc.status_code == 400 and exc.detail:
        message = f"the request could not be read: {str(exc.detail)[:200]}"
    return JSONResponse({"error": message}, status_code=exc.status_code, headers=exc.headers)


async def _client_disconnected(request: Request, exc: Exception) -> Response:
    # Nothing was recorded: the body is read in full before anything is deployed. No one is left
    # to read an answer; the 400 is only for the ASGI server.
    log.info("client disconnected during the upload: %s %s", request.method, request.url.path)
    return Response(status_code=400)


async def _unexpected_error(request: Request, exc: Exception) -> Response:
    log.exception("unexpected error on %s %s", request.method, request.url.path)
    return JSONResponse({"error": "internal error; the previous version is still served"}, status_code=500)
