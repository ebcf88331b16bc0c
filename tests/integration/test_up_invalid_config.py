"""`drophost up` with an invalid deploy.yaml: it starts and serves, and the last good file stays in force."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import httpx2 as httpx
import pytest

from tests.harness.git import HANDBOOK, push, work_repo
from tests.harness.waiting import wait_until
from tests.integration.test_sighup import NO_KEEPALIVE, hang_up
from tests.integration.up_process import Up, running_up

# Line 3 names a key deploy.yaml does not have; the other has an escape byte in a comment on line 5.
UNKNOWN_KEY = "sites:\n  - slot: handbook\n    colour: blue\n    repo: hosted:handbook\n"
CONTROL_BYTE = HANDBOOK + "# \x1b[31m red\n"


def health(up: Up, client: httpx.Client) -> dict[str, object]:
    answer = client.get(f"{up.base_url}/health")
    assert answer.status_code == 200, answer.text
    body: dict[str, object] = answer.json()
    return body


def config_error(up: Up, client: httpx.Client) -> str:
    config = health(up, client).get("config")
    return str(config["error"]) if isinstance(config, dict) else ""


@pytest.mark.slow
def test_drophost_up_serves_through_an_invalid_deploy_yaml(
    up_data_dir: Path, scratch_root: Path, tmp_path: Path
) -> None:
    # Readable by the unprivileged user `drophost up` becomes when started as root.
    config = Path(tempfile.mkdtemp(prefix="config-", dir=scratch_root)) / "deploy.yaml"
    os.chmod(config.parent, 0o755)
    config.write_text(UNKNOWN_KEY)
    work = work_repo(tmp_path, {"index.html": "<h1>handbook</h1>"})

    with (
        running_up(up_data_dir, tmp_path / "up.log", "--config", str(config)) as up,
        httpx.Client(timeout=30, trust_env=False, limits=NO_KEEPALIVE) as client,
    ):
        # Invalid from the start, with nothing stored: up, degraded, no git site declared.
        up.wait_healthy(client)
        assert health(up, client)["status"] == "degraded"
        assert config_error(up, client).startswith("deploy.yaml:3 sites[0].colour: is not a known key")
        assert "deploy.yaml not applied at start: deploy.yaml:3 sites[0].colour" in up.log()

        hang_up(up, config, HANDBOOK)
        assert wait_until(lambda: "SIGHUP: applied deploy.yaml" in up.log(), limit=60), up.log()
        assert health(up, client)["status"] == "ok"
        code, output = push(work, up.push_url("handbook"), "main")
        assert f"remote: live at {up.sites_url}/d/handbook/ (version 1)" in output, output

        # Broken again: the site stays, the error is reported with its line everywhere.
        hang_up(up, config, CONTROL_BYTE)
        assert wait_until(lambda: config_error(up, client).startswith("deploy.yaml:5: has a control character"))
        assert client.get(f"{up.sites_url}/d/handbook/").text == "<h1>handbook</h1>"
        auth = {"Authorization": f"Bearer {up.token}"}
        reload = client.post(f"{up.base_url}/api/reload", headers=auth)
        assert reload.status_code == 422 and reload.json()["line"] == 5, reload.text
        plan = subprocess.run(
            [sys.executable, "-m", "drophost", "plan", str(config), "--data-dir", str(up_data_dir)],
            env={**os.environ, "DROPHOST_PORT": str(up.port)},
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert plan.returncode == 1 and "Traceback" not in plan.stderr
        assert plan.stderr.startswith("deploy.yaml:5: has a control character (U+001B)"), plan.stderr
        assert "Meanwhile the last good deploy.yaml (sha256 " in plan.stderr
        up.stop()

    # A restart over the broken file serves and reconciles with the stored last good state.
    with (
        running_up(up_data_dir, tmp_path / "up-again.log", "--config", str(config)) as up,
        httpx.Client(timeout=30, trust_env=False, limits=NO_KEEPALIVE) as client,
    ):
        up.wait_healthy(client)
        assert config_error(up, client).startswith("deploy.yaml:5: has a control character")
        assert client.get(f"{up.sites_url}/d/handbook/").text == "<h1>handbook</h1>"
        # The stored file is in force: planning it again changes nothing.
        auth = {"Authorization": f"Bearer {up.token}"}
        plan = client.post(f"{up.base_url}/api/plan", content=HANDBOOK.encode(), headers=auth).json()
        assert plan["changes"] == [{"action": "keep", "slot": "handbook", "detail": "unchanged"}]
        assert plan["config"]["in_force"]["sha256"] == hashlib.sha256(HANDBOOK.encode()).hexdigest()
        assert "applying the last good deploy.yaml" in up.log()
        up.stop()
