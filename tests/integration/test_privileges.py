"""Privilege separation on disk under `drophost up` as root: nginx's workers and PostgreSQL run as users of
their own, and neither can change what is served (ARCHITECTURE.md, "Who owns what")."""

from __future__ import annotations

import os
import pwd
import subprocess
import sys
from pathlib import Path

import httpx2 as httpx
import pytest

from drophost.up import interpreter_usable_by
from tests.integration.up_process import children_of, read_pid, running_up, uid_of
from tests.zipcraft import std_zip

NO_KEEPALIVE = httpx.Limits(max_keepalive_connections=0)

# Each attempt is what an attacker holding that user would try first; every one must fail. (sh and
# coreutils, not Python: the interpreter may not be readable by these users at all.)
ATTACKS = r"""
data=$1; slot=$2
live="$data/live/$slot"
release=$(readlink -f "$live")
try() { name=$1; shift; if "$@" 2>/dev/null; then echo "SUCCEEDED: $name"; fi; }
try "repoint the live link" ln -sfn /etc "$live"
try "replace the live link" mv -f "$data/nginx/nginx.conf" "$live"
try "remove the live link" rm -f "$live"
try "write into the release" sh -c "echo x > '$release/evil.html'"
try "change a served file" sh -c "echo x > '$release/index.html'"
try "rename the release" mv "$release" "$release.x"
try "add to live/" ln -s /etc "$data/live/etc"
try "rewrite the sites map" sh -c "echo 'x live;' >> '$data/nginx/sites.map'"
try "rewrite nginx.conf" sh -c "echo '#' >> '$data/nginx/nginx.conf'"
try "read the API token" cat "$data/api-token"
echo done
"""


def as_user(user: str, *argv: str) -> subprocess.CompletedProcess[str]:
    entry = pwd.getpwnam(user)

    def demote() -> None:
        os.setgroups([])
        os.setgid(entry.pw_gid)
        os.setuid(entry.pw_uid)

    return subprocess.run(
        list(argv), preexec_fn=demote, capture_output=True, text=True, timeout=60, check=False, cwd="/"
    )


@pytest.mark.slow
@pytest.mark.skipif(os.geteuid() != 0, reason="users of their own need drophost up to start as root")
def test_the_nginx_and_postgres_users_cannot_change_what_is_served(up_data_dir: Path, tmp_path: Path) -> None:
    with (
        running_up(up_data_dir, tmp_path / "up.log") as up,
        httpx.Client(timeout=30, trust_env=False, limits=NO_KEEPALIVE) as client,
    ):
        up.wait_healthy(client)
        response = client.post(
            f"{up.base_url}/api/deployments",
            files={"file": ("guarded.zip", std_zip({"index.html": b"<h1>guarded</h1>"}), "application/zip")},
            headers={"Authorization": f"Bearer {up.token}"},
        )
        assert response.status_code == 201, response.text

        nginx_master = read_pid(up_data_dir / "nginx" / "nginx.pid")
        postmaster = read_pid(up_data_dir / "postgres" / "data" / "postmaster.pid")
        web = pwd.getpwnam("drophost-web").pw_uid
        db = pwd.getpwnam("drophost-db").pw_uid
        owner = pwd.getpwnam("drophost").pw_uid
        assert {uid_of(pid) for pid in children_of(nginx_master)} == {web}
        assert uid_of(postmaster) == db
        assert len({web, db, owner}) == 3
        assert (up_data_dir / "live").stat().st_uid not in (web, db)
        assert (up_data_dir / "postgres").stat().st_uid == db
        assert (up_data_dir / "postgres").stat().st_mode & 0o077 == 0

        for user in ("drophost-web", "drophost-db"):
            result = as_user(user, "sh", "-c", ATTACKS, "attack", str(up_data_dir), "guarded")
            assert result.stdout.strip().endswith("done"), result.stdout + result.stderr
            assert "SUCCEEDED" not in result.stdout, f"{user}: {result.stdout}"
        # The web user cannot read PostgreSQL's cluster either.
        cluster = as_user("drophost-web", "ls", str(up_data_dir / "postgres" / "data"))
        assert cluster.returncode != 0

        assert client.get(f"{up.sites_url}/d/guarded/").content == b"<h1>guarded</h1>"
        assert client.get(f"{up.sites_url}/d/guarded/evil").status_code == 404
        up.stop()
    # Keeping root is said once, with the reason and what to do (issue 19), never left unexplained.
    said = (tmp_path / "up.log").read_text()
    if interpreter_usable_by("drophost"):
        assert "the service runs as root" not in said
    else:
        assert f"the service runs as root, because 'drophost' cannot read this Python ({sys.executable})" in said
        assert "install DropHost where every user can read it" in said
