from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import httpx2 as httpx
import psycopg
from starlette.testclient import TestClient

from drophost.settings import Settings
from drophost.web.app import create_app
from tests.harness.auth import AUTH
from tests.harness.stacks import Stack
from tests.harness.zips import make_zip


def _deploy(client: TestClient, slot: str, body: str, **fields: str) -> dict[str, Any]:
    answer = client.post(
        "/api/deployments",
        files={"file": (f"{slot}.zip", make_zip({"index.html": body}), "application/zip")},
        data={"slot": slot, **fields},
        headers=AUTH,
    )
    assert answer.status_code == 201, answer.text
    result: dict[str, Any] = answer.json()
    return result


def _slot(client: TestClient, slot: str) -> dict[str, Any]:
    found: dict[str, Any] = {s["slot"]: s for s in client.get("/api/slots", headers=AUTH).json()["slots"]}[slot]
    return found


def _wait_for_status(client: TestClient, slot: str, status: str) -> dict[str, Any]:
    deadline = time.monotonic() + 30
    while True:
        current = _slot(client, slot)
        if current["status"] == status or time.monotonic() > deadline:
            return current
        time.sleep(0.1)


def _wait_until_past(database_url: str, slot: str) -> None:
    """Until PostgreSQL's clock (which decides expiry) is past the slot's expiry."""
    with psycopg.connect(database_url) as conn:
        while True:
            row = conn.execute("SELECT expires_at <= now() FROM slots WHERE slot = %s", (slot,)).fetchone()
            conn.commit()
            assert row is not None
            if row[0]:
                return
            time.sleep(0.1)


def test_a_ttl_that_runs_out_while_stopped_expires_the_slot_after_a_restart(
    stack_factory: Callable[..., Any], settings: Settings
) -> None:
    chosen, _nginx, _process = stack_factory()
    sites = f"http://127.0.0.1:{chosen.sites_listen_port}"
    first_run = replace(chosen, expiry_interval=3600.0)  # this run never gets to expire it
    with TestClient(create_app(first_run), raise_server_exceptions=False) as client:
        _deploy(client, "keep", "kept")
        deployed = _deploy(client, "brief", "short-lived", ttl="2s")
        assert deployed["ttl_seconds"] == 2
        assert _slot(client, "brief")["expires_at"] is not None
    _wait_until_past(chosen.database_url, "brief")
    # Nothing ran while the service was down: nginx still serves it.
    assert httpx.get(f"{sites}/d/brief/", timeout=10).text == "short-lived"
    with TestClient(create_app(chosen), raise_server_exceptions=False) as client:
        assert _wait_for_status(client, "brief", "expired")["active_version"] is None
        gone = httpx.get(f"{sites}/d/brief/", timeout=10)
        assert gone.status_code == 410 and gone.json() == {"error": "the site at this address has expired"}
        assert httpx.get(f"{sites}/d/keep/", timeout=10).text == "kept"
        assert _slot(client, "keep")["status"] == "live"
        history = client.get("/api/deployments?slot=brief", headers=AUTH).json()["deployments"]
        assert [d["status"] for d in history] == ["expired"]
        versions = client.get("/api/slots/brief/versions", headers=AUTH).json()
        assert versions["active"] is None and [v["version"] for v in versions["versions"]] == [1]
        # It can still be made live by hand, and then it does not expire again.
        rolled = client.post("/api/slots/brief/rollback", json={}, headers=AUTH)
        assert rolled.json() == {"slot": "brief", "active": 1}
        assert httpx.get(f"{sites}/d/brief/", timeout=10).text == "short-lived"
        assert _slot(client, "brief")["expires_at"] is None and _slot(client, "brief")["status"] == "live"


def test_a_live_slot_gets_a_new_ttl_and_expires(stack: Stack) -> None:
    stack.deploy({"index.html": "x"}, "demo")
    assert _slot(stack.client, "demo")["expires_at"] is None
    answer = stack.client.patch("/api/slots/demo", json={"ttl": "1s"}, headers=AUTH)
    assert answer.status_code == 200, answer.text
    assert answer.json()["expires_at"] is not None
    assert _wait_for_status(stack.client, "demo", "expired")["status"] == "expired"
    assert stack.get("/d/demo/").status_code == 410
    again = stack.client.patch("/api/slots/demo", json={"ttl": "1h"}, headers=AUTH)
    assert again.status_code == 409 and "expired" in again.json()["error"]


def test_bad_ttls_are_refused_and_change_nothing(stack: Stack) -> None:
    stack.deploy({"index.html": "x"}, "demo")
    for body in ({"ttl": "soon"}, {"ttl": True}, {"ttl": [1]}, {}, {"ttl": "0"}):
        answer = stack.client.patch("/api/slots/demo", json=body, headers=AUTH)
        assert answer.status_code == 422, body
        assert set(answer.json()) >= {"error"}
    refused = stack.deploy({"index.html": "y"}, "demo", ttl="3 days")
    assert refused.status_code == 422 and refused.json()["field"] == "ttl"
    assert stack.client.patch("/api/slots/nope", json={"ttl": "1h"}, headers=AUTH).status_code == 404
    cleared = stack.client.patch("/api/slots/demo", json={"ttl": None}, headers=AUTH)
    assert cleared.json() == {"slot": "demo", "expires_at": None}
    assert _slot(stack.client, "demo")["status"] == "live"
