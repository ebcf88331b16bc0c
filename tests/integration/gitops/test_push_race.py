"""A hosted push goes live only once git has moved its branch (post-receive makes its draft live).

Two pushes racing for one branch, both from the same commit: git lets only the first hook to finish
move the branch (its update checks the old value). The loser's deploy must never be what is live,
nor be announced live.
"""

from __future__ import annotations

import shutil
import subprocess
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx2 as httpx
import pytest

from drophost.web.app import create_app
from tests.harness.git import HANDBOOK, git, push, work_repo
from tests.harness.processes import serve_in_thread, stop_server
from tests.harness.receiver import Receiver
from tests.harness.stacks import Served
from tests.harness.waiting import wait_until

from .test_push_deploys import build_yaml, commit, deployments, remote_head

needs_bwrap = pytest.mark.skipif(shutil.which("bwrap") is None, reason="bubblewrap is not installed")

# A commit holding `slow` builds for a few seconds, long enough for the other push to queue behind it.
SLOW_BUILD = "mkdir dist; if [ -f slow ]; then sleep 4; fi; cp index.html dist/"


@needs_bwrap
def test_of_two_racing_pushes_the_site_serves_the_one_the_branch_kept(
    served_stack: Callable[..., Served], receiver: Receiver, tmp_path: Path
) -> None:
    notify = f"notifications:\n  - url: {receiver.url('/json')}\n    format: json\n    events: [live, promote]\n"
    served = served_stack(build_yaml(SLOW_BUILD) + notify, {"SITE_SECRET": "x"})
    work = work_repo(tmp_path, {"index.html": "X"})
    code, output = push(work, served.push_url("handbook"), "main")
    assert code == 0, output
    base = git("rev-parse", "HEAD", cwd=work)
    slow = commit(work, {"index.html": "A", "slow": "yes"})
    git("reset", "--quiet", "--hard", base, cwd=work)
    (work / "slow").unlink(missing_ok=True)
    fast = commit(work, {"index.html": "B"})

    # The fast one queued behind the slow build of its slot, from the same old commit.
    outcomes = dict(zip(("slow", "fast"), race(served, work, slow, fast), strict=True))

    codes = sorted(code for code, _ in outcomes.values())
    assert codes[0] == 0 and codes[1] != 0, outcomes
    head = remote_head(served, work)
    assert head in (slow, fast)
    loser = "fast" if head == slow else "slow"
    assert outcomes[loser][0] != 0 and "-> main (failed to update ref)" in outcomes[loser][1], outcomes[loser][1]
    winner = "slow" if loser == "fast" else "fast"
    assert f"remote: live at {served.sites_url}/d/handbook/" in outcomes[winner][1], outcomes[winner][1]
    (live,) = [row for row in deployments(served) if row["status"] == "live"]
    assert live["commit_sha"] == head
    assert httpx.get(served.sites_url + "/d/handbook/").text == ("A" if head == slow else "B")
    # The loser's deploy stays a draft, never announced: one `live` per commit that went live.
    (kept,) = [row for row in deployments(served) if row["commit_sha"] == (fast if head == slow else slow)]
    assert kept["status"] == "draft"
    assert wait_until(lambda: len(receiver.received()) == 2)
    announced = [request.json() for request in receiver.received()]
    assert sorted((body["event"], body["commit"]) for body in announced) == sorted([("live", base), ("live", head)])


def test_a_push_to_a_locked_slot_moves_its_branch_and_leaves_its_draft_waiting(
    served_stack: Callable[..., Served], tmp_path: Path
) -> None:
    served = served_stack(HANDBOOK)
    work = work_repo(tmp_path, {"index.html": "one"})
    code, output = push(work, served.push_url("handbook"), "main")
    assert code == 0, output
    assert served.api("POST", "/api/slots/handbook/lock", json={"reason": "release freeze"}).status_code == 200
    pushed = commit(work, {"index.html": "two"})
    code, output = push(work, served.push_url("handbook"), "main")
    assert code == 0, output
    assert "remote: DropHost: handbook was not made live: slot is locked (release freeze" in output, output
    assert remote_head(served, work) == pushed
    assert httpx.get(served.sites_url + "/d/handbook/").text == "one"
    newest = deployments(served)[0]
    assert (newest["status"], newest["commit_sha"]) == ("draft", pushed)
    # Unlocking, even with a restart, makes nothing live by itself: the draft waits for a promote.
    assert served.api("POST", "/api/slots/handbook/unlock").status_code == 200
    with restarted(served):
        assert httpx.get(served.sites_url + "/d/handbook/").text == "one"
        promoted = served.api("POST", "/api/slots/handbook/promote", json={"deployment_id": newest["id"]})
        assert promoted.status_code == 200, promoted.text
        assert httpx.get(served.sites_url + "/d/handbook/").text == "two"


def test_a_draft_whose_branch_a_later_push_moved_on_is_not_made_live(
    served_stack: Callable[..., Served], tmp_path: Path
) -> None:
    served = served_stack(HANDBOOK)
    work = work_repo(tmp_path, {"index.html": "one"})
    code, output = push(work, served.push_url("handbook"), "main")
    assert code == 0, output
    base = git("rev-parse", "HEAD", cwd=work)
    # The first push's post-receive comes late: here, only once the next push has landed.
    hook = post_receive(served)
    saved = hook.read_bytes()
    hook.unlink()
    early = commit(work, {"index.html": "two"})
    code, output = push(work, served.push_url("handbook"), "main")
    assert code == 0 and "live at" not in output, output
    hook.write_bytes(saved)
    hook.chmod(0o755)
    later = commit(work, {"index.html": "three"})
    code, output = push(work, served.push_url("handbook"), "main")
    assert code == 0 and f"remote: live at {served.sites_url}/d/handbook/ (version 3)" in output, output

    late = {"stage": "post-receive", "repository": "handbook", "updates": [[base, early, "refs/heads/main"]]}
    answer = served.api("POST", "/api/git/hook", json=late)
    assert answer.status_code == 200, answer.text
    assert answer.json()["messages"] == [
        f"DropHost: handbook was not made live: a later push moved main on to {later[:12]}; that push makes it live"
    ]
    assert httpx.get(served.sites_url + "/d/handbook/").text == "three"
    kept = next(row for row in deployments(served) if row["commit_sha"] == early)
    assert kept["status"] == "draft" and kept["error"].startswith("a later push moved main on")


@needs_bwrap
def test_of_two_pushes_of_one_commit_the_one_git_kept_goes_live(
    served_stack: Callable[..., Served], tmp_path: Path
) -> None:
    served = served_stack(build_yaml(SLOW_BUILD), {"SITE_SECRET": "x"})
    work = work_repo(tmp_path, {"index.html": "BASE"})
    code, output = push(work, served.push_url("handbook"), "main")
    assert code == 0, output
    pushed = commit(work, {"index.html": "X", "slow": "yes"})
    # The same commit again: its own draft builds behind the first one's.
    outcomes = dict(zip(("first", "second"), race(served, work, pushed, pushed), strict=True))

    assert remote_head(served, work) == pushed
    winners = [output for code, output in outcomes.values() if code == 0]
    assert len(winners) == 1, outcomes
    assert f"remote: live at {served.sites_url}/d/handbook/" in winners[0], winners[0]
    assert httpx.get(served.sites_url + "/d/handbook/").text == "X"


def test_a_push_whose_post_receive_never_reached_the_service_goes_live_by_the_poller(
    served_stack: Callable[..., Served], tmp_path: Path
) -> None:
    served = served_stack(HANDBOOK)
    work = work_repo(tmp_path, {"index.html": "one"})
    code, output = push(work, served.push_url("handbook"), "main")
    assert code == 0, output
    held, output = push_missing_its_post_receive(served, work, {"index.html": "two"})
    pushed = held["commit_sha"]
    assert remote_head(served, work) == pushed
    (held,) = [row for row in deployments(served) if row["commit_sha"] == pushed]
    assert f"remote: DropHost: handbook version 2 is ready (deployment {held['id']})" in output, output
    assert httpx.get(served.sites_url + "/d/handbook/").text == "one"
    # Pushing again cannot help (git has the branch there already); the poller lands it.
    Path(served.settings.config).write_text("poll_interval: 1s\n" + HANDBOOK)
    assert served.api("POST", "/api/reload").status_code == 200
    assert wait_until(lambda: httpx.get(served.sites_url + "/d/handbook/").text == "two")
    (live,) = [row for row in deployments(served) if row["status"] == "live"]
    assert live["id"] == held["id"]


def test_a_push_whose_post_receive_never_reached_the_service_goes_live_when_it_starts(
    served_stack: Callable[..., Served], tmp_path: Path
) -> None:
    served = served_stack(HANDBOOK)
    work = work_repo(tmp_path, {"index.html": "one"})
    code, output = push(work, served.push_url("handbook"), "main")
    assert code == 0, output
    held, output = push_missing_its_post_receive(served, work, {"index.html": "two"})
    pushed = held["commit_sha"]
    with restarted(served):
        assert httpx.get(served.sites_url + "/d/handbook/").text == "two"
        (live,) = [row for row in deployments(served) if row["status"] == "live"]
        assert live["commit_sha"] == pushed


# A build that fails for a commit holding `bad`: its push is refused, the branch stays where it was.
FAILS_IF_BAD = build_yaml("mkdir dist; if [ -f bad ]; then exit 1; fi; cp index.html dist/").replace(
    "      secrets_env: [SITE_SECRET]\n", ""
)


@needs_bwrap
@pytest.mark.parametrize("undo", ["rollback", "promote"])
def test_a_start_keeps_what_a_user_made_live_after_the_head_went_live(
    served_stack: Callable[..., Served], tmp_path: Path, undo: str
) -> None:
    served = served_stack(FAILS_IF_BAD)
    work = work_repo(tmp_path, {"index.html": "one"})
    assert push(work, served.push_url("handbook"), "main")[0] == 0
    commit(work, {"index.html": "two"})
    code, output = push(work, served.push_url("handbook"), "main")
    assert code == 0 and "live at" in output, output
    if undo == "rollback":
        r = served.api("POST", "/api/slots/handbook/rollback", json={"version": 1})
    else:
        first = min(row["id"] for row in deployments(served))
        r = served.api("POST", "/api/slots/handbook/promote", json={"deployment_id": first})
    assert r.status_code == 200, r.text
    assert httpx.get(served.sites_url + "/d/handbook/").text == "one"
    # A fix whose build fails: the push is refused, the branch stays at two (which went live once).
    commit(work, {"index.html": "three", "bad": "x"})
    code, output = push(work, served.push_url("handbook"), "main")
    assert code != 0, output
    before = {row["id"] for row in deployments(served)}
    with restarted(served):  # the start's catch_up ran (and queued nothing) before it serves
        assert {row["id"] for row in deployments(served)} == before
        assert httpx.get(served.sites_url + "/d/handbook/").text == "one"


def test_a_start_keeps_offline_a_slot_taken_offline_after_a_push_its_post_receive_missed(
    served_stack: Callable[..., Served], tmp_path: Path
) -> None:
    served = served_stack(HANDBOOK)
    work = work_repo(tmp_path, {"index.html": "one"})
    assert push(work, served.push_url("handbook"), "main")[0] == 0
    held, output = push_missing_its_post_receive(served, work, {"index.html": "two"})
    r = served.api("DELETE", "/api/slots/handbook")
    assert r.status_code == 200, r.text
    note = f"the slot changed since this push: promote deployment {held['id']} to make it live"
    with restarted(served):  # the start's catch_up ran before it serves
        assert httpx.get(served.sites_url + "/d/handbook/").status_code == 404
        (row,) = [row for row in deployments(served) if row["id"] == held["id"]]
        assert row["status"] == "draft" and note in (row["error"] or ""), row
        # The note's advice works.
        r = served.api("POST", "/api/slots/handbook/promote", json={"deployment_id": held["id"]})
        assert r.status_code == 200, r.text
        assert httpx.get(served.sites_url + "/d/handbook/").text == "two"


def test_a_push_nginx_could_not_make_live_says_what_makes_it_live(
    served_stack: Callable[..., Served], tmp_path: Path
) -> None:
    served = served_stack(HANDBOOK)
    work = work_repo(tmp_path, {"index.html": "one"})
    assert push(work, served.push_url("handbook"), "main")[0] == 0
    # The landing's switch finds no nginx to signal (its pid names a process that has ended); the
    # nginx in front keeps serving the push itself.
    pid_file = served.settings.nginx_dir / "nginx.pid"
    real = pid_file.read_text()
    ended = subprocess.Popen(["true"])
    ended.wait()
    pid_file.write_text(f"{ended.pid}\n")
    try:
        pushed = commit(work, {"index.html": "two"})
        code, output = push(work, served.push_url("handbook"), "main")
    finally:
        pid_file.write_text(real)
    assert code == 0 and remote_head(served, work) == pushed, output
    assert (
        "DropHost: handbook could not be made live: nginx is not running; the branch moved, what was live"
        " stays live (once the cause is fixed, push a new commit or deploy the branch: POST /api/deployments)"
    ) in output, output
    assert httpx.get(served.sites_url + "/d/handbook/").text == "one"
    # What it says works (a promote of that deployment does not: its version failed).
    commit(work, {"index.html": "three"})
    code, output = push(work, served.push_url("handbook"), "main")
    assert code == 0 and "live at" in output, output
    assert httpx.get(served.sites_url + "/d/handbook/").text == "three"


def test_a_landing_a_start_could_not_make_live_is_audited_as_failed(
    served_stack: Callable[..., Served], tmp_path: Path
) -> None:
    served = served_stack(HANDBOOK)
    work = work_repo(tmp_path, {"index.html": "one"})
    assert push(work, served.push_url("handbook"), "main")[0] == 0
    held, output = push_missing_its_post_receive(served, work, {"index.html": "two"})
    pid_file = served.settings.nginx_dir / "nginx.pid"
    real = pid_file.read_text()
    ended = subprocess.Popen(["true"])
    ended.wait()
    pid_file.write_text(f"{ended.pid}\n")
    try:
        with restarted(served):  # the start's catch_up ran before it serves
            pid_file.write_text(real)
            entries = served.api("GET", "/api/audit", params={"target": "handbook", "action": "git_deploy_result"})
            results = [
                (e["actor"], e["result"])
                for e in entries.json()["entries"]
                if e["detail"].startswith(f"deployment {held['id']} ") and "after git moved it" in e["detail"]
            ]
            assert results == [("drophost", "failed")], entries.text
    finally:
        pid_file.write_text(real)


def post_receive(served: Served) -> Path:
    return served.settings.data_dir / "git" / "hosted" / "handbook.git" / "hooks" / "post-receive"


def push_missing_its_post_receive(served: Served, work: Path, files: dict[str, str]) -> tuple[dict[str, Any], str]:
    """Push a commit of `files` to main with no post-receive (as if git could not reach the service
    when it ran it): the push's held draft, and git's output."""
    post_receive(served).unlink()
    pushed = commit(work, files)
    code, output = push(work, served.push_url("handbook"), "main")
    assert code == 0 and "live at" not in output, output
    (held,) = [row for row in deployments(served) if row["commit_sha"] == pushed]
    return held, output


def race(served: Served, work: Path, first: str, second: str) -> tuple[tuple[int, str], tuple[int, str]]:
    """Push `first` to main, then `second` while the first one's build runs: both from the same old commit."""
    outcomes: dict[str, tuple[int, str]] = {}

    def push_first() -> None:
        outcomes["first"] = push(work, served.push_url("handbook"), f"{first}:refs/heads/main")

    racer = threading.Thread(target=push_first)
    racer.start()
    try:
        assert wait_until(
            lambda: any(row["commit_sha"] == first and row["status"] == "building" for row in deployments(served))
        )
        outcomes["second"] = push(work, served.push_url("handbook"), f"{second}:refs/heads/main")
    finally:
        racer.join(timeout=120)
    return outcomes["first"], outcomes["second"]


@contextmanager
def restarted(served: Served) -> Iterator[None]:
    """The service stopped and started again on the same socket, until the block ends."""
    (old,) = [t for t in threading.enumerate() if getattr(t, "_target", None) == served.server.run]
    stop_server(served.server, old)
    served.server, thread = serve_in_thread(served.settings, create_app(served.settings, {}))
    try:
        yield
    finally:
        stop_server(served.server, thread)
