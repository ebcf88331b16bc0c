"""`drophost up` itself: the whole stack from one command, and nothing left running after SIGTERM."""

from __future__ import annotations

import os
from pathlib import Path

import httpx2 as httpx
import pytest

from tests.integration.up_process import Up, children_of, read_pid, running_up, uid_of
from tests.zipcraft import std_zip

# A reload closes idle keep-alive connections; a request sent on one at that moment is reset.
NO_KEEPALIVE = httpx.Limits(max_keepalive_connections=0)


def serve_a_site(client: httpx.Client, up: Up) -> None:
    up.wait_healthy(client)
    token = up.token
    assert len(token) >= 32 and token in up.log()
    assert (up.data_dir / "api-token").stat().st_mode & 0o077 == 0
    assert client.get(f"{up.base_url}/api/slots").status_code == 401

    files = {"site/index.html": b"<h1>hello from up</h1>", "site/logo.png": os.urandom(10_000)}
    response = client.post(
        f"{up.base_url}/api/deployments",
        files={"file": ("hello.zip", std_zip(dict(files)), "application/zip")},
        headers={"Authorization": f"Bearer {token}"},
    )
    assert response.status_code == 201, response.text
    assert response.json()["path_url"] == f"{up.sites_url}/d/hello/"
    assert client.get(f"{up.sites_url}/d/hello/").content == files["site/index.html"]
    assert client.get(f"{up.sites_url}/d/hello/logo.png").content == files["site/logo.png"]
    # The main port sends old /d/ links to the sites origin.
    assert client.get(f"{up.base_url}/d/hello/").status_code == 302
    assert client.get(f"{up.base_url}/api/openapi.json").json()["openapi"].startswith("3.")


@pytest.mark.slow
def test_drophost_up_serves_a_site_and_stops_every_child(up_data_dir: Path, tmp_path: Path) -> None:
    with running_up(up_data_dir, tmp_path / "up.log") as up:
        with httpx.Client(timeout=30, trust_env=False, limits=NO_KEEPALIVE) as client:
            serve_a_site(client, up)

        nginx_master = read_pid(up_data_dir / "nginx" / "nginx.pid")
        postmaster = read_pid(up_data_dir / "postgres" / "data" / "postmaster.pid")
        assert len(up.children()) >= 5
        if os.geteuid() == 0:
            # As root, PostgreSQL and the nginx workers run unprivileged.
            assert uid_of(postmaster) != 0
            assert all(uid_of(pid) != 0 for pid in children_of(nginx_master))
        up.stop()
