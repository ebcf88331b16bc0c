"""Taking a git-managed slot offline: no longer declared, or a preview whose branch was deleted."""

from __future__ import annotations

import logging
from typing import Any

from psycopg_pool import ConnectionPool

from drophost.errors import DrophostError
from drophost.pipeline.deployer import Deployer
from drophost.store import audit, gitjobs

log = logging.getLogger(__name__)


def take_offline(pool: ConnectionPool[Any], deployer: Deployer, slot: str, actor: str = "deploy.yaml") -> None:
    """Cancel the slot's queued deploys, stop managing it, and stop serving it; `actor` is audited."""
    with pool.connection() as conn:
        gitjobs.cancel_queued(conn, slot, "cancelled: the slot is no longer declared in deploy.yaml")
        gitjobs.forget_managed(conn, slot)
    try:
        deployer.take_offline(slot)
        result = "offline"
    except DrophostError as exc:
        log.info("slot %s was not taken offline: %s", slot, exc.message)
        result = f"{exc.status_code} {exc.message}"
    with pool.connection() as conn:
        audit.record(conn, actor=actor, action="offline", target=slot, result=result)


def remove_preview(pool: ConnectionPool[Any], deployer: Deployer, slot: str, actor: str) -> None:
    log.info("branch deleted: taking preview slot %s offline", slot)
    take_offline(pool, deployer, slot, actor)
