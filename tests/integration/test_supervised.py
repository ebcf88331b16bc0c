"""`drophost up` supervises: a service that dies comes back while nginx keeps serving, nothing outlives
`drophost up` (even when it is SIGKILLed), and what an earlier run left behind is stopped at start."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import httpx2 as httpx
import pytest

from tests.harness.git import HANDBOOK, git, push, work_repo
from tests.integration.up_process import Up, alive, children_of, read_pid, running_up
from tests.zipcraft import std_zip

NO_KEEPALIVE = httpx.Limits(max_keepalive_connections=0)


def wait_until(condition: object, limit: float = 60.0) -> bool:
    """Poll until true (the limit is a bound, not a timed assertion)."""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        if condition():  # type: ignore[operator]
            return True
        time.sleep(0.1)
    return False


def deploy_site(client: httpx.Client, up: Up, slot: str, body: bytes) -> None:
    response = client.post(
        f"{up.base_url}/api/deployments",
        files={"file": (f"{slot}.zip", std_zip({"index.html": body}), "application/zip")},
        data={"slot": slot},
        headers={"Authorization": f"Bearer {up.token}"},
    )
    assert response.status_code == 201, response.text


@pytest.mark.slow
def test_a_killed_service_comes_back_while_nginx_keeps_serving(up_data_dir: Path, tmp_path: Path) -> None:
    with (
        running_up(up_data_dir, tmp_path / "up.log") as up,
        httpx.Client(timeout=30, trust_env=False, limits=NO_KEEPALIVE) as client,
    ):
        up.wait_healthy(client)
        deploy_site(client, up, "steady", b"<h1>steady</h1>")
        first = read_pid(up_data_dir / "run" / "service.pid")
        os.kill(first, signal.SIGKILL)
        # The sites do not depend on the service: nginx answers while it is down and restarting.
        assert client.get(f"{up.sites_url}/d/steady/").content == b"<h1>steady</h1>"
        assert wait_until(lambda: "killed by SIGKILL" in up.log()), up.log()
        up.wait_healthy(client)
        second = read_pid(up_data_dir / "run" / "service.pid")
        assert second != first and alive(second) and not alive(first)
        health = client.get(f"{up.base_url}/health").json()
        assert health["status"] == "ok"
        assert health["supervisor"]["restarts"] == 1
        assert "SIGKILL" in health["supervisor"]["last_exit"]
        # The restarted service serves the API and deploys.
        deploy_site(client, up, "after", b"<h1>after</h1>")
        assert client.get(f"{up.sites_url}/d/after/").content == b"<h1>after</h1>"
        up.stop()  # SIGTERM: exit 143 and every child gone (checked inside)


@pytest.mark.slow
def test_nothing_outlives_a_killed_drophost_up_and_the_next_start_works(up_data_dir: Path, tmp_path: Path) -> None:
    with (
        running_up(up_data_dir, tmp_path / "up.log") as up,
        httpx.Client(timeout=30, trust_env=False, limits=NO_KEEPALIVE) as client,
    ):
        up.wait_healthy(client)
        deploy_site(client, up, "kept", b"<h1>kept</h1>")
        children = up.children() | {read_pid(up_data_dir / "run" / "service.pid")}
        up.process.send_signal(signal.SIGKILL)
        up.process.wait()
        # Each child was told to die with its parent (PR_SET_PDEATHSIG): none is left behind.
        assert wait_until(lambda: not [pid for pid in children if alive(pid)], limit=60), [
            pid for pid in children if alive(pid)
        ]
    with (
        running_up(up_data_dir, tmp_path / "again.log") as again,
        httpx.Client(timeout=30, trust_env=False, limits=NO_KEEPALIVE) as client,
    ):
        again.wait_healthy(client)
        assert client.get(f"{again.sites_url}/d/kept/").content == b"<h1>kept</h1>"
        again.stop()


@pytest.mark.slow
def test_start_stops_an_nginx_an_earlier_run_left_behind(up_data_dir: Path, tmp_path: Path) -> None:
    with (
        running_up(up_data_dir, tmp_path / "up.log") as up,
        httpx.Client(timeout=30, trust_env=False, limits=NO_KEEPALIVE) as client,
    ):
        up.wait_healthy(client)
        up.stop()
    # An nginx of this data directory that outlived its `drophost up` (as after an OOM kill before
    # children died with their parent): it holds the ports and its pid file names it.
    conf = up_data_dir / "nginx" / "nginx.conf"
    orphan = subprocess.Popen(
        ["nginx", "-e", str(up_data_dir / "nginx" / "error.log"), "-c", str(conf)], start_new_session=True
    )
    try:
        assert wait_until(lambda: (up_data_dir / "nginx" / "nginx.pid").exists() and alive(orphan.pid))
        # Someone else's process is never touched, even if a stale pid file named it.
        bystander = subprocess.Popen(["sleep", "60"])
        (up_data_dir / "run" / "service.pid").write_text(f"{bystander.pid}\n")
        with (
            running_up(up_data_dir, tmp_path / "again.log") as again,
            httpx.Client(timeout=30, trust_env=False, limits=NO_KEEPALIVE) as client,
        ):
            again.wait_healthy(client)
            assert "left running by an earlier run (nginx.pid)" in again.log()
            assert orphan.wait(timeout=30) is not None
            assert alive(bystander.pid)
            again.stop()
        bystander.kill()
        bystander.wait()
    finally:
        if orphan.poll() is None:
            orphan.kill()
            orphan.wait()


@pytest.mark.slow
def test_a_second_drophost_up_on_the_same_data_is_refused(up_data_dir: Path, tmp_path: Path) -> None:
    with (
        running_up(up_data_dir, tmp_path / "up.log") as up,
        httpx.Client(timeout=30, trust_env=False, limits=NO_KEEPALIVE) as client,
    ):
        up.wait_healthy(client)
        with running_up(up_data_dir, tmp_path / "second.log") as second:
            assert second.process.wait(timeout=60) == 2
            assert "another `drophost up` is running" in second.log()
            assert "Traceback" not in second.log()
        assert client.get(f"{up.base_url}/health").status_code == 200
        up.stop()


@pytest.mark.slow
def test_hosted_pushes_work_after_a_restart_of_drophost_up(
    up_data_dir: Path, scratch_root: Path, tmp_path: Path
) -> None:
    # Readable by the unprivileged users `drophost up` runs its parts as when started as root.
    config = Path(tempfile.mkdtemp(prefix="config-", dir=scratch_root)) / "deploy.yaml"
    os.chmod(config.parent, 0o755)
    config.write_text(HANDBOOK)
    work = work_repo(tmp_path, {"index.html": "<h1>one</h1>"})
    for round_number, body in enumerate(("<h1>one</h1>", "<h1>two</h1>"), start=1):
        # The second start hands the data directory to its owner again: git must still accept it.
        (work / "index.html").write_text(body)
        git("commit", "--quiet", "--allow-empty", "-am", f"round {round_number}", cwd=work)
        with (
            running_up(up_data_dir, tmp_path / f"up{round_number}.log", "--config", str(config)) as up,
            httpx.Client(timeout=30, trust_env=False, limits=NO_KEEPALIVE) as client,
        ):
            up.wait_healthy(client)
            code, output = push(work, up.push_url("handbook"), "main")
            assert f"remote: live at {up.sites_url}/d/handbook/ (version {round_number})" in output, output
            assert code == 0
            assert client.get(f"{up.sites_url}/d/handbook/").text == body
            up.stop()


@pytest.mark.slow
def test_a_deploy_running_when_the_service_died_fails_with_the_reason_and_is_not_retried(
    up_data_dir: Path, scratch_root: Path, tmp_path: Path
) -> None:
    # A git server that accepts and never answers: the fetch, and so the deploy, stays in progress.
    with socket.socket() as stalling:
        stalling.bind(("127.0.0.1", 0))
        stalling.listen(16)
        port = stalling.getsockname()[1]
        config = Path(tempfile.mkdtemp(prefix="config-", dir=scratch_root)) / "deploy.yaml"
        os.chmod(config.parent, 0o755)
        config.write_text(f'sites: []\nsources:\n  allow: ["http://127.0.0.1:{port}/*"]\n')
        with (
            running_up(up_data_dir, tmp_path / "up.log", "--config", str(config)) as up,
            httpx.Client(timeout=30, trust_env=False, limits=NO_KEEPALIVE) as client,
        ):
            up.wait_healthy(client)
            auth = {"Authorization": f"Bearer {up.token}"}
            answer = client.post(
                f"{up.base_url}/api/deployments",
                json={"repo": f"http://127.0.0.1:{port}/site.git", "branch": "main", "slot": "stalled"},
                headers=auth,
            )
            assert answer.status_code == 202, answer.text
            deployment = answer.json()["id"]

            def state() -> str:
                return str(client.get(f"{up.base_url}/api/deployments/{deployment}", headers=auth).json()["status"])

            assert wait_until(lambda: state() == "building"), state()
            os.kill(read_pid(up_data_dir / "run" / "service.pid"), signal.SIGKILL)
            assert wait_until(lambda: "killed by SIGKILL" in up.log()), up.log()
            up.wait_healthy(client)
            row = client.get(f"{up.base_url}/api/deployments/{deployment}", headers=auth).json()
            assert row["status"] == "failed"
            assert "killed by SIGKILL" in row["error"] and "not tried again" in row["error"]
            # Not queued again: the slot has that one deployment, and it stays failed.
            time.sleep(1)
            listed = client.get(f"{up.base_url}/api/deployments", params={"slot": "stalled"}, headers=auth).json()
            assert [d["id"] for d in listed["deployments"]] == [deployment]
            assert listed["deployments"][0]["status"] == "failed"
            up.stop()


@pytest.mark.slow
def test_drophost_up_runs_nginx_under_its_watcher_when_the_service_cannot_signal_it(
    up_data_dir: Path, tmp_path: Path
) -> None:
    # How `drophost up` runs when its service drops root (it cannot signal a root nginx master):
    # nginx/watcher.sh runs nginx and carries out the service's test and reload requests.
    with (
        running_up(up_data_dir, tmp_path / "up.log", environ={"DROPHOST_NGINX_CONTROL": "watcher"}) as up,
        httpx.Client(timeout=30, trust_env=False, limits=NO_KEEPALIVE) as client,
    ):
        up.wait_healthy(client)
        assert (up_data_dir / "nginx" / "control" / "heartbeat").exists()
        for slot in ("first", "second"):  # each a new slot: a sites-map change, nginx -t and a reload
            deploy_site(client, up, slot, f"<h1>{slot}</h1>".encode())
            assert client.get(f"{up.sites_url}/d/{slot}/").content == f"<h1>{slot}</h1>".encode()
        watcher = [
            pid for pid in children_of(up.process.pid) if b"watcher.sh" in Path(f"/proc/{pid}/cmdline").read_bytes()
        ]
        assert len(watcher) == 1
        nginx_master = read_pid(up_data_dir / "nginx" / "nginx.pid")
        up.process.send_signal(signal.SIGTERM)
        assert up.process.wait(timeout=60) == 128 + signal.SIGTERM, up.log()
        assert wait_until(lambda: not alive(nginx_master) and not alive(watcher[0]), limit=30)
