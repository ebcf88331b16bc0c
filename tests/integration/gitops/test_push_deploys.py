"""A hosted push deploys before its branch moves: build lines as remote: lines, a failed deploy refuses
the push, a push outside the site's path deploys nothing; and the build queue under concurrency 1."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx2 as httpx
import pytest

from tests.harness.auth import AUTH
from tests.harness.git import GitHttpServer, git, push, work_repo
from tests.harness.stacks import GitopsFactory, Served
from tests.harness.waiting import wait_for_deployment, wait_until
from tests.harness.webhooks import ENV, hex_hmac

needs_bwrap = pytest.mark.skipif(shutil.which("bwrap") is None, reason="bubblewrap is not installed")

BUILD = (
    'mkdir dist; echo "step one for $DROPHOST_SLOT"; echo "the secret is $SITE_SECRET";'
    " if [ -f fail ]; then echo 'broken on purpose' >&2; exit 3; fi; cp index.html dist/"
)


def build_yaml(command: str, path: str = "") -> str:
    lines = [
        "sites:",
        "  - slot: handbook",
        "    repo: hosted:handbook",
        "    branch: main",
        *([f"    path: {path}"] if path else []),
        "    build:",
        f"      command: {json.dumps(command)}",
        "      output: dist",
        "      secrets_env: [SITE_SECRET]",
    ]
    return "\n".join(lines) + "\n"


def commit(work: Path, files: dict[str, str]) -> str:
    for name, text in files.items():
        (work / name).parent.mkdir(parents=True, exist_ok=True)
        (work / name).write_text(text)
    git("add", "-A", cwd=work)
    git("commit", "--quiet", "-m", "change", cwd=work)
    return git("rev-parse", "HEAD", cwd=work)


def remote_head(served: Served, work: Path) -> str:
    return git("ls-remote", served.push_url("handbook"), "refs/heads/main", cwd=work).split("\t")[0]


def deployments(served: Served, slot: str = "handbook") -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = served.api("GET", f"/api/deployments?slot={slot}").json()["deployments"]
    return rows


@needs_bwrap
def test_a_good_push_prints_its_build_lines_then_the_url_with_secrets_masked(
    served_stack: Callable[..., Served], tmp_path: Path
) -> None:
    served = served_stack(build_yaml(BUILD), {"SITE_SECRET": "hunter2-s3cret"})
    work = work_repo(tmp_path, {"index.html": "<h1>one</h1>"})
    code, output = push(work, served.push_url("handbook"), "main")
    assert code == 0, output
    lines = output.splitlines()
    step = next(i for i, line in enumerate(lines) if line.startswith("remote: ") and "step one for handbook" in line)
    live = lines.index(f"remote: live at {served.sites_url}/d/handbook/ (version 1)" + " " * 8)
    assert step < live
    assert "the secret is ***" in output and "hunter2-s3cret" not in output
    (row,) = deployments(served)
    assert "hunter2-s3cret" not in served.api("GET", f"/api/deployments/{row['id']}/log").text
    assert httpx.get(served.sites_url + "/d/handbook/").text == "<h1>one</h1>"


@needs_bwrap
def test_a_push_whose_build_fails_is_refused_and_its_branch_stays(
    served_stack: Callable[..., Served], tmp_path: Path
) -> None:
    served = served_stack(build_yaml(BUILD), {"SITE_SECRET": "x-secret"})
    work = work_repo(tmp_path, {"index.html": "<h1>one</h1>"})
    code, output = push(work, served.push_url("handbook"), "main")
    assert code == 0, output
    first = git("rev-parse", "HEAD", cwd=work)

    commit(work, {"index.html": "<h1>two</h1>", "fail": "yes"})
    code, output = push(work, served.push_url("handbook"), "main")
    assert code != 0, output
    assert "remote: " in output and "broken on purpose" in output
    assert "remote: DropHost: deploy of handbook failed: the build command exited with status 3" in output, output
    assert "main -> main (pre-receive hook declined)" in output
    assert remote_head(served, work) == first
    assert httpx.get(served.sites_url + "/d/handbook/").text == "<h1>one</h1>"
    assert [row["status"] for row in deployments(served)] == ["failed", "live"]

    # The next good push goes live on top of the commit the server has.
    git("reset", "--quiet", "--hard", first, cwd=work)
    good = commit(work, {"index.html": "<h1>three</h1>"})
    code, output = push(work, served.push_url("handbook"), "main")
    assert code == 0, output
    assert remote_head(served, work) == good
    assert httpx.get(served.sites_url + "/d/handbook/").text == "<h1>three</h1>"


def test_a_push_nginx_rejects_is_refused_and_its_branch_stays(
    served_stack: Callable[..., Served], tmp_path: Path
) -> None:
    # A redirect target longer than nginx's 4 kB token buffer passes DropHost's own checks once the
    # operator raised the line cap, and nginx -t refuses it ("too long parameter").
    served = served_stack(
        "sites:\n  - slot: handbook\n    repo: hosted:handbook\n    branch: main\n", max_rule_line=20000
    )
    work = work_repo(tmp_path, {"index.html": "<h1>one</h1>"})
    code, output = push(work, served.push_url("handbook"), "main")
    assert code == 0, output
    first = git("rev-parse", "HEAD", cwd=work)
    commit(work, {"index.html": "<h1>two</h1>", "_redirects": "/old /" + "a" * 5000 + " 301\n"})
    code, output = push(work, served.push_url("handbook"), "main")
    assert code != 0, output
    assert "remote: DropHost: deploy of handbook failed: nginx rejected" in output, output
    assert remote_head(served, work) == first
    assert httpx.get(served.sites_url + "/d/handbook/").text == "<h1>one</h1>"


@needs_bwrap
def test_a_push_touching_only_files_outside_path_builds_nothing(
    served_stack: Callable[..., Served], tmp_path: Path
) -> None:
    served = served_stack(build_yaml(BUILD, path="docs"), {"SITE_SECRET": "x-secret"})
    work = work_repo(tmp_path, {"docs/index.html": "<h1>docs</h1>", "README": "one"})
    code, output = push(work, served.push_url("handbook"), "main")
    assert code == 0 and "(version 1)" in output, output

    pushed = commit(work, {"README": "two", "src/app.js": "x"})
    code, output = push(work, served.push_url("handbook"), "main")
    assert code == 0, output
    assert 'nothing under "docs" changed since the live version: no build' in output
    assert "DropHost: building" not in output and "step one" not in output
    assert f"remote: DropHost: handbook unchanged: {served.sites_url}/d/handbook/ serves this already" in output
    assert remote_head(served, work) == pushed
    rows = deployments(served)
    assert [(row["status"], row["commit_sha"]) for row in rows][0] == ("unchanged", pushed)
    assert len(served.api("GET", "/api/slots/handbook/versions").json()["versions"]) == 1

    commit(work, {"docs/index.html": "<h1>docs 2</h1>"})
    code, output = push(work, served.push_url("handbook"), "main")
    assert code == 0 and "(version 2)" in output, output
    assert httpx.get(served.sites_url + "/d/handbook/").text == "<h1>docs 2</h1>"


@needs_bwrap
def test_with_concurrency_1_builds_queue_and_a_waiting_slot_builds_only_its_newest_commit(
    git_server: GitHttpServer, gitops_stack: GitopsFactory
) -> None:
    command = "mkdir dist; date +%s.%N > dist/start; sleep 2; date +%s.%N > dist/end; cp index.html dist/"
    lines = ["sites:"]
    repos = {slot: git_server.repo(slot) for slot in ("a", "b")}
    for slot, repo in repos.items():
        repo.commit({"index.html": f"{slot}0"})
        lines += [
            f"  - slot: {slot}",
            f"    repo: {git_server.url(slot)}",
            "    webhook_secret_env: HOOK_SECRET",
            "    build:",
            f"      command: {json.dumps(command)}",
            "      output: dist",
        ]
    stack = gitops_stack("\n".join(lines) + "\n", ENV, build_concurrency=1)
    assert {wait_for_deployment(stack, i)["status"] for i in (1, 2)} == {"live"}

    def deliver(slot: str) -> list[int]:
        body = json.dumps({"repo": git_server.url(slot), "branch": "main", "pusher": "ann"}).encode()
        answer = stack.client.post(
            "/api/webhooks/generic", content=body, headers={"X-Signature": "sha256=" + hex_hmac(body)}
        )
        assert answer.status_code == 202, answer.text
        queued: list[int] = answer.json()["queued"]
        return queued

    def status(deployment_id: int) -> str:
        answer: str = stack.client.get(f"/api/deployments/{deployment_id}", headers=AUTH).json()["status"]
        return answer

    repos["a"].commit({"index.html": "a1"})
    (building,) = deliver("a")
    assert wait_until(lambda: status(building) == "building")
    queued = set()
    for number in (1, 2, 3):
        newest = repos["b"].commit({"index.html": f"b{number}"})
        queued.update(deliver("b"))
    # While a builds, b waits queued: every push to it joined one deploy, which builds the newest commit.
    (waiting,) = queued
    assert status(waiting) == "queued"
    b = wait_for_deployment(stack, waiting)
    assert (b["status"], b["commit_sha"]) == ("live", newest)
    assert wait_for_deployment(stack, building)["status"] == "live"
    spans = sorted(
        (float(stack.get(f"/d/{slot}/start").text), float(stack.get(f"/d/{slot}/end").text)) for slot in ("a", "b")
    )
    assert spans[0][1] <= spans[1][0]
    assert stack.get("/d/b/").text == "b3"
    slot_b = stack.client.get("/api/deployments?slot=b", headers=AUTH).json()["deployments"]
    assert len(slot_b) == 2


def test_the_tree_caps_apply_to_the_sites_path_not_the_whole_pushed_tree(
    served_stack: Callable[..., Served], tmp_path: Path
) -> None:
    served = served_stack(
        "sites:\n  - slot: handbook\n    repo: hosted:handbook\n    branch: main\n    path: site\n", max_entries=20
    )
    vendored = {f"vendor/{number}.js": "x" for number in range(30)}
    work = work_repo(tmp_path, {"site/index.html": "<h1>one</h1>", **vendored})
    code, output = push(work, served.push_url("handbook"), "main")
    assert code == 0 and "(version 1)" in output, output
    first = git("rev-parse", "HEAD", cwd=work)

    commit(work, {f"site/{number}.html": "x" for number in range(30)})
    code, output = push(work, served.push_url("handbook"), "main")
    assert code != 0, output
    assert "remote: DropHost: the push of main was refused: the tree has more than 20 entries" in output
    assert remote_head(served, work) == first
    assert [row["status"] for row in deployments(served)] == ["live"]


def test_a_webhook_push_touching_only_files_outside_path_deploys_nothing(
    git_server: GitHttpServer, gitops_stack: GitopsFactory
) -> None:
    repo = git_server.repo("site")
    repo.commit({"site/index.html": "one", "README": "one"})
    yaml = f"sites:\n  - slot: docs\n    repo: {git_server.url('site')}\n    path: site\n"
    stack = gitops_stack(yaml + "    webhook_secret_env: HOOK_SECRET\n", ENV)
    assert wait_for_deployment(stack, 1)["status"] == "live"
    outside = repo.commit({"README": "two"})
    body = json.dumps({"repo": git_server.url("site"), "branch": "main", "pusher": "ann"}).encode()
    answer = stack.client.post(
        "/api/webhooks/generic", content=body, headers={"X-Signature": "sha256=" + hex_hmac(body)}
    )
    (queued,) = answer.json()["queued"]
    row = wait_for_deployment(stack, queued)
    assert (row["status"], row["commit_sha"]) == ("unchanged", outside)
    versions = stack.client.get("/api/slots/docs/versions", headers=AUTH).json()["versions"]
    assert [v["version"] for v in versions] == [1]
    assert stack.get("/d/docs/").text == "one"
