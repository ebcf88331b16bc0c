"""Two pushes racing for one branch of a hosted repository: the site serves the one git kept.

Both start from the same commit, so git lets only the first hook to finish move the branch (its
update checks the old value). The loser's deploy must never be what stays live.
"""

from __future__ import annotations

import shutil
import threading
from collections.abc import Callable
from pathlib import Path

import httpx2 as httpx
import pytest

from tests.harness.git import git, push, work_repo
from tests.harness.stacks import Served
from tests.harness.waiting import wait_until

from .test_push_deploys import build_yaml, commit, deployments, remote_head

needs_bwrap = pytest.mark.skipif(shutil.which("bwrap") is None, reason="bubblewrap is not installed")

# A commit holding `slow` builds for a few seconds, long enough for the other push to queue behind it.
SLOW_BUILD = "mkdir dist; if [ -f slow ]; then sleep 4; fi; cp index.html dist/"


@needs_bwrap
def test_of_two_racing_pushes_the_site_serves_the_one_the_branch_kept(
    served_stack: Callable[..., Served], tmp_path: Path
) -> None:
    served = served_stack(build_yaml(SLOW_BUILD), {"SITE_SECRET": "x"})
    work = work_repo(tmp_path, {"index.html": "X"})
    code, output = push(work, served.push_url("handbook"), "main")
    assert code == 0, output
    base = git("rev-parse", "HEAD", cwd=work)
    slow = commit(work, {"index.html": "A", "slow": "yes"})
    git("reset", "--quiet", "--hard", base, cwd=work)
    (work / "slow").unlink(missing_ok=True)
    fast = commit(work, {"index.html": "B"})

    outcomes: dict[str, tuple[int, str]] = {}

    def push_slow() -> None:
        outcomes["slow"] = push(work, served.push_url("handbook"), f"{slow}:refs/heads/main")

    racer = threading.Thread(target=push_slow)
    racer.start()
    try:
        assert wait_until(
            lambda: any(row["commit_sha"] == slow and row["status"] == "building" for row in deployments(served))
        )
        # Queued behind the slow build of its slot, from the same old commit.
        outcomes["fast"] = push(work, served.push_url("handbook"), f"{fast}:refs/heads/main")
    finally:
        racer.join(timeout=120)

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
