"""Waiting for what happens in the background: a bound on how long, never a timed assertion."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from tests.harness.auth import AUTH
from tests.harness.stacks import Stack


def wait_for_deployment(stack: Stack, deployment_id: int, *, limit: float = 60.0) -> dict[str, Any]:
    """Poll until the deployment is live, superseded or failed (a bound, not a timed assertion)."""
    deadline = time.monotonic() + limit
    while True:
        answer: dict[str, Any] = stack.client.get(f"/api/deployments/{deployment_id}", headers=AUTH).json()
        if answer["status"] not in ("queued", "building") or time.monotonic() > deadline:
            return answer
        time.sleep(0.05)


def wait_until(check: Callable[[], bool], *, limit: float = 30.0) -> bool:
    deadline = time.monotonic() + limit
    while not check():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True
