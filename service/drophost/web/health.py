"""GET /health: 200 only when PostgreSQL answers and nginx runs with a valid config.

An invalid deploy.yaml makes it "degraded", still 200: every site is served (the last good
deploy.yaml stays in force), so a load balancer or `drophost up` must not treat the service as down;
the body says which file, line and field, and since when.
"""

from __future__ import annotations

from typing import Any

from psycopg_pool import ConnectionPool
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from drophost.errors import DrophostError
from drophost.gitops.controller import GitOps
from drophost.pipeline.deployer import Deployer
from drophost.pipeline.nginx import Nginx
from drophost.processes import read_state
from drophost.web.common import pool_of


async def health(request: Request) -> Response:
    deployer: Deployer | None = getattr(request.app.state, "deployer", None)
    if deployer is None:
        return JSONResponse({"status": "starting", "error": "the service is starting"}, status_code=503)
    checks = await run_in_threadpool(_health_checks, pool_of(request), deployer.nginx)
    # Under `drophost up`: how often the service was restarted and why it last died.
    supervisor = read_state(deployer.settings.data_dir / "run")
    extra: dict[str, Any] = {"supervisor": supervisor} if supervisor else {}
    gitops: GitOps | None = getattr(request.app.state, "gitops", None)
    config = gitops.config_status() if gitops is not None else {"error": None}
    if config["error"]:
        extra["config"] = config
    down = [name for name, ok in checks.items() if not ok]
    if down:
        return JSONResponse(
            {"status": "down", "error": f"not healthy: {', '.join(down)} down", "checks": checks, **extra},
            status_code=503,
        )
    if config["error"]:
        return JSONResponse(
            {"status": "degraded", "error": f"deploy.yaml not applied: {config['error']}", "checks": checks, **extra}
        )
    return JSONResponse({"status": "ok", "checks": checks, **extra})


def _health_checks(pool: ConnectionPool[Any], nginx: Nginx) -> dict[str, bool]:
    checks = {"database": False, "nginx": False}
    try:
        with pool.connection(timeout=3) as conn:
            conn.execute("SELECT 1")
        checks["database"] = True
    except Exception:  # any failure means "down"
        pass
    try:
        if nginx.is_running():
            nginx.test()
            checks["nginx"] = True
    except DrophostError:
        pass
    return checks
