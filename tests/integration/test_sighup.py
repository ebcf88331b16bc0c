"""SIGHUP to `drophost up` applies deploy.yaml again; an invalid file changes nothing."""

from __future__ import annotations

import os
import signal
import tempfile
from pathlib import Path

import httpx2 as httpx
import pytest

from tests.harness.git import HANDBOOK, git, push, work_repo
from tests.harness.waiting import wait_until
from tests.integration.up_process import Up, running_up

# A reload closes idle keep-alive connections; a request sent on one at that moment is reset.
NO_KEEPALIVE = httpx.Limits(max_keepalive_connections=0)
MANUAL = "sites:\n  - slot: manual\n    repo: hosted:manual\n    branch: main\n"
# handbook is valid and would come back if the file were applied in part; line 5 is not.
INVALID = HANDBOOK + '  - slot: "Manual!"\n    repo: hosted:manual\n'
OFFLINE = {"error": "no site is deployed at this address"}


def hang_up(up: Up, config: Path, text: str) -> None:
    """Rewrite deploy.yaml the way an editor saves it, then SIGHUP the process."""
    staged = config.with_suffix(".new")
    staged.write_text(text)
    os.replace(staged, config)
    up.process.send_signal(signal.SIGHUP)


@pytest.mark.slow
def test_sighup_applies_deploy_yaml_and_an_invalid_file_changes_nothing(
    up_data_dir: Path, scratch_root: Path, tmp_path: Path
) -> None:
    # Readable by the unprivileged user `drophost up` becomes when started as root.
    config = Path(tempfile.mkdtemp(prefix="config-", dir=scratch_root)) / "deploy.yaml"
    os.chmod(config.parent, 0o755)
    config.write_text(HANDBOOK)
    work = work_repo(tmp_path, {"index.html": "<h1>handbook</h1>"})

    with (
        running_up(up_data_dir, tmp_path / "up.log", "--config", str(config)) as up,
        httpx.Client(timeout=30, trust_env=False, limits=NO_KEEPALIVE) as client,
    ):
        up.wait_healthy(client)
        auth = {"Authorization": f"Bearer {up.token}"}

        def status(path: str) -> int:
            return client.get(up.sites_url + path).status_code

        code, output = push(work, up.push_url("handbook"), "main")
        assert code == 0, output
        assert f"remote: live at {up.sites_url}/d/handbook/ (version 1)" in output
        assert client.get(f"{up.sites_url}/d/handbook/").text == "<h1>handbook</h1>"

        # handbook is no longer declared, manual is.
        hang_up(up, config, MANUAL)
        assert wait_until(lambda: status("/d/handbook/") == 404, limit=60), up.log()
        assert client.get(f"{up.sites_url}/d/handbook/").json() == OFFLINE
        history = client.get(f"{up.base_url}/api/slots/handbook/versions", headers=auth)
        assert history.status_code == 200, history.text
        assert [v["version"] for v in history.json()["versions"]] == [1]
        assert up.process.poll() is None

        code, output = push(work, up.push_url("handbook"), "main")
        assert code != 0
        assert 'remote: DropHost: no site in deploy.yaml uses "hosted:handbook"' in output
        code, output = push(work, up.push_url("manual"), "main")
        assert code == 0, output
        assert f"remote: live at {up.sites_url}/d/manual/ (version 1)" in output
        assert client.get(f"{up.sites_url}/d/manual/").text == "<h1>handbook</h1>"

        # An invalid file is reported with its file and line, and nothing changes.
        hang_up(up, config, INVALID)
        reported = 'SIGHUP: deploy.yaml not applied: deploy.yaml:5 sites[1].slot: "Manual!" is not a valid slot name'
        assert wait_until(lambda: reported in up.log(), limit=60), up.log()
        assert up.process.poll() is None
        assert client.get(f"{up.base_url}/health").status_code == 200
        assert client.get(f"{up.sites_url}/d/manual/").text == "<h1>handbook</h1>"
        assert client.get(f"{up.sites_url}/d/handbook/").json() == OFFLINE
        (work / "index.html").write_text("<h1>second</h1>")
        git("commit", "--quiet", "-am", "second", cwd=work)
        code, output = push(work, up.push_url("manual"), "main")
        assert f"remote: live at {up.sites_url}/d/manual/ (version 2)" in output, output
        code, output = push(work, up.push_url("handbook"), "main")
        assert code != 0 and 'no site in deploy.yaml uses "hosted:handbook"' in output

        # The handler still works after the error: declaring handbook again brings it back.
        hang_up(up, config, HANDBOOK)
        assert wait_until(lambda: status("/d/handbook/") == 200, limit=60), up.log()
        assert client.get(f"{up.sites_url}/d/handbook/").text == "<h1>handbook</h1>"
        assert wait_until(lambda: status("/d/manual/") == 404, limit=60), up.log()
        up.stop()


@pytest.mark.slow
def test_sighup_while_starting_leaves_drophost_up_running(up_data_dir: Path, tmp_path: Path) -> None:
    with (
        running_up(up_data_dir, tmp_path / "up.log") as up,
        httpx.Client(timeout=30, trust_env=False, limits=NO_KEEPALIVE) as client,
    ):
        # PostgreSQL and nginx run; the service has not started (or has just started) handling SIGHUP.
        assert wait_until(lambda: "nginx serving on" in up.log() or up.process.poll() is not None, limit=120)
        up.process.send_signal(signal.SIGHUP)
        up.wait_healthy(client)
        up.stop()


@pytest.mark.slow
def test_a_sighup_while_starting_is_applied_once_up(up_data_dir: Path, scratch_root: Path, tmp_path: Path) -> None:
    config = Path(tempfile.mkdtemp(prefix="config-", dir=scratch_root)) / "deploy.yaml"
    os.chmod(config.parent, 0o755)
    config.write_text(HANDBOOK)
    with (
        running_up(up_data_dir, tmp_path / "up.log", "--config", str(config)) as up,
        httpx.Client(timeout=30, trust_env=False, limits=NO_KEEPALIVE) as client,
    ):
        # Long before the service handles SIGHUP: PostgreSQL is only starting.
        assert wait_until(lambda: "starting PostgreSQL" in up.log() or up.process.poll() is not None, limit=120)
        hang_up(up, config, MANUAL)
        up.wait_healthy(client)
        assert wait_until(lambda: "SIGHUP: applied deploy.yaml" in up.log(), limit=60), up.log()
        assert "deploy.yaml is applied again once up" in up.log()
        work = work_repo(tmp_path, {"index.html": "<h1>manual</h1>"})
        code, output = push(work, up.push_url("handbook"), "main")
        assert code != 0 and 'no site in deploy.yaml uses "hosted:handbook"' in output
        code, output = push(work, up.push_url("manual"), "main")
        assert f"remote: live at {up.sites_url}/d/manual/ (version 1)" in output, output
        up.stop()
