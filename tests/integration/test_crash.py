"""A deploy killed with SIGKILL part way, then a restart: the previous version is served, all is consistent."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx2 as httpx
import psycopg
import pytest
from starlette.testclient import TestClient

from drophost.pipeline.nginxconfig import site_entry
from drophost.settings import Settings
from drophost.web.app import create_app
from tests.harness.auth import AUTH
from tests.harness.processes import start_nginx, stop_process
from tests.harness.stacks import running_stack
from tests.integration.service_process import ServiceProcess
from tests.integration.support import deploy_site, hashes, served, site, sites_map
from tests.zipcraft import Entry, craft_zip, std_zip


def site_files(label: str) -> dict[str, bytes]:
    return {"index.html": f"<h1>{label}</h1>".encode(), "img/photo.jpg": os.urandom(50_000)}


def big_archive() -> bytes:
    # Enough small files that extracting them takes a while, with the index first.
    noise = os.urandom(8192 * 2000)
    entries = [Entry("index.html", b"<h1>the big one</h1>")]
    entries += [Entry(f"assets/{i // 100}/{i}.bin", noise[i * 8192 : (i + 1) * 8192]) for i in range(2000)]
    return craft_zip(*entries)


def post_zip(settings: Settings, data: bytes, slot: str = "site") -> httpx.Response:
    """Through nginx to the service process, like curl would."""
    return httpx.post(
        f"http://127.0.0.1:{settings.port}/api/deployments",
        files={"file": (f"{slot}.zip", data, "application/zip")},
        data={"slot": slot},
        headers=AUTH,
        timeout=120,
        trust_env=False,
    )


def fetch(settings: Settings, path: str) -> httpx.Response:
    """From the sites origin."""
    return httpx.get(f"http://127.0.0.1:{settings.sites_listen_port}{path}", timeout=10, trust_env=False)


def wait_until(condition: Callable[[], bool], upload: threading.Thread, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert upload.is_alive(), "the deploy finished before the moment to kill it"
        assert time.monotonic() < deadline, "the moment to kill never came"
        time.sleep(0.001)


def extracting(settings: Settings) -> Callable[[], bool]:
    incoming = settings.releases_dir / ".incoming"

    def check() -> bool:
        try:
            return any(any(folder.iterdir()) for folder in incoming.iterdir())
        except FileNotFoundError:
            return False

    return check


def switching(settings: Settings) -> Callable[[], bool]:
    # The deployment row exists and its release was moved into place: nginx is being switched.
    slot_dir = settings.releases_dir / "site"
    known = set(os.listdir(slot_dir))
    return lambda: bool(set(os.listdir(slot_dir)) - known)


def swapped(settings: Settings) -> Callable[[], bool]:
    # The slot's link already leads to the new release (nginx serves it); PostgreSQL does not know yet.
    link = settings.data_dir / "live" / "site"
    before = os.readlink(link)
    return lambda: os.readlink(link) != before


def _active_version(settings: Settings, slot: str) -> int | None:
    with psycopg.connect(settings.database_url) as conn:
        row = conn.execute("SELECT active_version FROM slots WHERE slot = %s", (slot,)).fetchone()
    return row[0] if row else None


def database_state(settings: Settings) -> dict[str, Any]:
    with psycopg.connect(settings.database_url) as conn:
        return {
            "deployments": conn.execute("SELECT id, state, error FROM deployments ORDER BY id").fetchall(),
            "versions": conn.execute(
                "SELECT slot, version, status, release_dir, config FROM config_versions"
            ).fetchall(),
            "slots": conn.execute("SELECT slot, active_version, status FROM slots").fetchall(),
        }


def assert_consistent(settings: Settings) -> dict[str, Any]:
    state = database_state(settings)
    assert all(state_ in ("ready", "failed") for _, state_, _ in state["deployments"]), state["deployments"]
    assert not [v for v in state["versions"] if v[2] == "pending"]
    for slot, active, status in state["slots"]:
        actives = [v for v in state["versions"] if v[0] == slot and v[2] == "active"]
        if status == "live":
            assert [v[1] for v in actives] == [active], f"exactly one active version of {slot}"
            assert site_entry(actives[0][4]) in sites_map(settings)
            release = Path(actives[0][3])
            assert os.readlink(settings.data_dir / "live" / slot) == f"../releases/{slot}/{release.name}"
        else:
            assert actives == []
    kept = {v[3] for v in state["versions"] if v[2] in ("active", "inactive")}
    on_disk = {str(p) for p in settings.releases_dir.glob("*/*") if p.parent.name != ".incoming"}
    assert on_disk == kept, "orphaned or missing release directories"
    assert list((settings.releases_dir / ".incoming").glob("*")) == []
    # At most the last candidate map nginx -t accepted; nothing a crash left half-written.
    assert [p.name for p in (settings.nginx_dir / "staging").glob("*")] in ([], ["sites.map"])
    return state


@pytest.mark.slow
@pytest.mark.parametrize(
    "moment", [extracting, switching, swapped], ids=["while-extracting", "while-switching", "after-the-swap"]
)
def test_a_deploy_killed_part_way_leaves_the_previous_version_served(
    settings: Settings, tmp_path: Path, moment: Callable[[Settings], Callable[[], bool]]
) -> None:
    _, nginx_process = start_nginx(settings)
    service = ServiceProcess(settings, tmp_path / "service.log")
    try:
        service.start()
        before = site_files("before the crash")
        first = post_zip(settings, std_zip(dict(before)))
        assert first.status_code == 201, first.text
        big = big_archive() if moment is extracting else craft_zip(*(Entry(f"f{i}.html", b"x") for i in range(50)))

        outcome: dict[str, object] = {}

        def deploy_big() -> None:
            try:
                outcome["status"] = post_zip(settings, big).status_code
            except httpx.HTTPError as exc:
                outcome["status"] = type(exc).__name__

        upload = threading.Thread(target=deploy_big)
        upload.start()
        wait_until(moment(settings), upload)
        service.kill()
        upload.join(timeout=60)

        service.start()
        if moment is swapped and _active_version(settings, "site") == 2:
            # The swap is now only a link moving, and the record follows it within milliseconds:
            # the kill came after both (perhaps even after the answer). Then version 2 is what
            # PostgreSQL records, and what is served.
            assert fetch(settings, "/d/site/f0").content == b"x"
            assert_consistent(settings)
            return
        assert outcome["status"] != 201
        # The previous version is served, byte for byte.
        page = fetch(settings, "/d/site/")
        assert page.content == before["index.html"]
        assert fetch(settings, "/d/site/img/photo.jpg").content == before["img/photo.jpg"]
        assert fetch(settings, "/d/site/assets/0/0.bin").status_code == 404

        state = assert_consistent(settings)
        ready, *others = state["deployments"]
        assert ready[0] == first.json()["id"] and ready[1] == "ready"
        # A deployment whose row existed is failed with the reason; while extracting, none existed yet.
        assert [(s, "interrupted" in (e or "")) for _, s, e in others] == (
            [] if moment is extracting else [("failed", True)]
        )

        # And the service works again.
        again = post_zip(settings, std_zip({"index.html": b"<h1>after</h1>"}))
        assert again.status_code == 201, again.text
        assert fetch(settings, "/d/site/").content == b"<h1>after</h1>"
        assert_consistent(settings)
    finally:
        service.stop()
        stop_process(nginx_process)


def test_a_restart_returns_once_nginx_serves_what_postgresql_records(settings: Settings) -> None:
    # As after a crash between the swap and the record: nginx serves version 2, PostgreSQL says 1.
    with running_stack(settings) as stack:
        deploy_site(stack, site("one"))
        deploy_site(stack, site("two"))
        assert stack.client.post("/api/slots/site/rollback", json={"version": 1}, headers=AUTH).status_code == 200
        two = stack.client.get("/api/slots/site/versions/2", headers=AUTH).json()["deployment_id"]
        stack.nginx.point("site", stack.settings.releases_dir / "site" / str(two))
        assert served(stack, "site", list(site("two"))) == hashes(site("two"))
        with TestClient(create_app(settings), raise_server_exceptions=False):
            # Start-up is over: from the first request on, nginx serves the recorded version.
            assert served(stack, "site", list(site("one"))) == hashes(site("one"))
