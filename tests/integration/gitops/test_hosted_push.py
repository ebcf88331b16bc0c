from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import httpx2 as httpx
import pytest

from drophost.cli import main
from tests.harness.git import HANDBOOK, git, push, work_repo
from tests.harness.stacks import Served


def test_git_push_deploys_and_prints_the_result(served_stack: Callable[..., Served], tmp_path: Path) -> None:
    served = served_stack(HANDBOOK)
    work = work_repo(tmp_path, {"index.html": "<h1>handbook</h1>"})
    code, output = push(work, served.push_url("handbook"), "main")
    assert code == 0, output
    assert f"remote: live at {served.sites_url}/d/handbook/ (version 1)" in output
    assert httpx.get(served.sites_url + "/d/handbook/").text == "<h1>handbook</h1>"
    rows = served.api("GET", "/api/deployments").json()["deployments"]
    # The bootstrap token has no user: that is the pusher recorded, not the name typed into the URL.
    assert (rows[0]["trigger"], rows[0]["pusher"], rows[0]["repo"]) == ("push", "bootstrap", "hosted:handbook")

    (work / "index.html").write_text("second")
    git("commit", "--quiet", "-am", "second", cwd=work)
    code, output = push(work, served.push_url("handbook"), "main")
    assert f"remote: live at {served.sites_url}/d/handbook/ (version 2)" in output
    assert httpx.get(served.sites_url + "/d/handbook/").text == "second"

    clone = tmp_path / "clone"
    git("clone", "--quiet", served.push_url("handbook"), str(clone))
    assert (clone / "index.html").read_text() == "second"


def test_a_push_that_fails_to_deploy_is_refused_and_says_why(
    served_stack: Callable[..., Served], tmp_path: Path
) -> None:
    served = served_stack(HANDBOOK)
    work = work_repo(tmp_path, {".hidden": "only a dotfile"})
    code, output = push(work, served.push_url("handbook"), "main")
    assert code != 0, output
    assert "remote: DropHost: deploy of handbook failed: the tree contains no files to publish" in output
    assert "main -> main (pre-receive hook declined)" in output
    assert httpx.get(served.sites_url + "/d/handbook/").status_code == 404
    assert git("ls-remote", served.push_url("handbook"), cwd=work).strip() == ""


def test_pushes_to_undeclared_names_and_without_the_token_are_refused(
    served_stack: Callable[..., Served], tmp_path: Path
) -> None:
    served = served_stack(HANDBOOK)
    work = work_repo(tmp_path, {"index.html": "x"})
    code, output = push(work, served.push_url("elsewhere"), "main")
    assert code != 0
    assert 'remote: DropHost: no site in deploy.yaml uses "hosted:elsewhere"' in output
    code, output = push(work, served.push_url("handbook", password="wrong"), "main")
    assert code != 0 and "Authentication failed" in output
    assert served.api("GET", "/api/deployments").json()["deployments"] == []
    assert httpx.get(served.base_url + "/git/handbook.git/HEAD", auth=("u", "test-token-0123456789")).status_code == 404


def test_drophost_plan_asks_the_running_service(
    served_stack: Callable[..., Served],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    served = served_stack(HANDBOOK)
    changed = tmp_path / "deploy.yaml"
    changed.write_text("sites:\n  - slot: blog\n    repo: hosted:blog\n")
    monkeypatch.setenv("DROPHOST_PORT", str(served.settings.port))
    monkeypatch.setenv("DROPHOST_API_TOKEN", served.settings.api_token)
    assert main(["plan", str(changed)]) == 0
    assert capsys.readouterr().out.splitlines() == [
        "+ blog      deploy hosted:blog main",
        "- handbook  take offline (no longer in deploy.yaml; its history stays)",
        "Plan: 1 to deploy, 0 to change, 1 to take offline.",
    ]


def test_the_pusher_is_the_token_s_user_and_a_token_without_deploy_rights_cannot_push(
    served_stack: Callable[..., Served], tmp_path: Path
) -> None:
    served = served_stack(HANDBOOK)
    for name, slots in (("dee", ["hand*"]), ("wes", ["web-*"])):
        body = {"name": name, "role": "deployer", "slots": slots, "password": "a long password"}
        assert served.api("POST", "/api/users", json=body).status_code == 201
    tokens = {
        name: served.api("POST", "/api/tokens", json={"name": "git", "scopes": scopes, "user": name}).json()["token"]
        for name, scopes in (("dee", ["deploy:hand*"]), ("wes", ["deploy:web-*"]))
    }
    work = work_repo(tmp_path, {"index.html": "<h1>by dee</h1>"})
    code, output = push(work, served.push_url("handbook", password=tokens["wes"]), "main")
    assert code != 0 and "wes may not use this repository" in output
    assert served.api("GET", "/api/deployments").json()["deployments"] == []
    refused = served.api("GET", "/api/audit", params={"action": "git_push"}).json()["entries"]
    assert [(e["actor"], e["target"], e["result"]) for e in refused] == [("wes (token 2)", "hosted:handbook", "403")]
    code, output = push(work, served.push_url("handbook", password=tokens["dee"]), "main")
    assert code == 0, output
    rows = served.api("GET", "/api/deployments").json()["deployments"]
    assert (rows[0]["pusher"], rows[0]["status"]) == ("dee", "live")
    queued = served.api("GET", "/api/audit", params={"action": "git_deploy"}).json()["entries"]
    assert queued[0]["actor"] == "dee" and queued[0]["target"] == "handbook"


PREVIEWS = HANDBOOK + '  - slot: "handbook-{branch}"\n    repo: hosted:handbook\n    branches: ["feature/*"]\n'


def test_deleting_a_pushed_preview_branch_takes_its_preview_offline(
    served_stack: Callable[..., Served], tmp_path: Path
) -> None:
    served = served_stack(PREVIEWS)
    work = work_repo(tmp_path, {"index.html": "preview"})
    code, output = push(work, served.push_url("handbook"), "main", "main:feature/x")
    assert code == 0, output
    assert httpx.get(served.sites_url + "/d/handbook-feature-x/").text == "preview"
    # post-receive starts Python only for a push that deletes a branch: this one does
    code, output = push(work, served.push_url("handbook"), ":feature/x")
    assert code == 0, output
    assert httpx.get(served.sites_url + "/d/handbook-feature-x/").status_code == 404
    assert httpx.get(served.sites_url + "/d/handbook/").text == "preview"
