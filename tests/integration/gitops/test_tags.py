"""Sites following tags (`tags: "v*"`): the newest tag by version order, from webhooks, polling and
`git push --tags`; an older tag or a deleted one never rolls the site back."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path

import httpx2 as httpx

from tests.harness.auth import AUTH
from tests.harness.git import GitHttpServer, git, push, work_repo
from tests.harness.stacks import GitopsFactory, Served, Stack
from tests.harness.waiting import wait_for_deployment, wait_until
from tests.harness.webhooks import ENV, SECRET, only_queued

from .test_push_deploys import commit

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "webhooks"
ZERO = "0" * 40


def tag_site(url: str, *, secret: bool = True) -> str:
    text = f'sites:\n  - slot: releases\n    repo: {url}\n    tags: "v*"\n'
    return text + ("    webhook_secret_env: HOOK_SECRET\n" if secret else "")


def gitlab_tag_push(stack: Stack, server: GitHttpServer, tag: str, after: str) -> dict[str, object]:
    """GitLab's published Tag Push Hook example, pointed at the local repository and at `tag`."""
    raw = (FIXTURES / "gitlab_tag_push_hook.json").read_text()
    body = json.loads(raw.replace("http://example.com/jsmith/example", f"http://127.0.0.1:{server.port}/example"))
    body.update(ref=f"refs/tags/{tag}", after=after, checkout_sha=None if after == ZERO else after)
    answer = stack.client.post(
        "/api/webhooks/gitlab",
        content=json.dumps(body).encode(),
        headers={"X-Gitlab-Event": "Tag Push Hook", "X-Gitlab-Token": SECRET},
    )
    assert answer.status_code == 202, answer.text
    result: dict[str, object] = answer.json()
    return result


def releases(stack: Stack) -> list[dict[str, object]]:
    rows: list[dict[str, object]] = stack.client.get("/api/deployments?slot=releases", headers=AUTH).json()[
        "deployments"
    ]
    return rows


def test_tag_pushes_deploy_the_newest_tag_and_never_roll_back(
    git_server: GitHttpServer, gitops_stack: GitopsFactory
) -> None:
    repo = git_server.repo("example")
    repo.commit({"index.html": "main"})
    repo.tag("v1.9", {"index.html": "v1.9"})
    newest = repo.tag("v1.10", {"index.html": "v1.10"})
    repo.commit({"index.html": "main moved on"})
    stack = gitops_stack(tag_site(git_server.url("example")), ENV)
    # Applying deploy.yaml deploys the newest tag: v1.10, not v1.9 (nor main).
    first = wait_for_deployment(stack, 1)
    assert (first["status"], first["branch"], first["commit_sha"]) == ("live", "refs/tags/v1.10", newest), first
    assert stack.get("/d/releases/").text == "v1.10"

    rc = repo.tag("v2.0-rc1", {"index.html": "v2.0-rc1"})
    queued = only_queued(gitlab_tag_push(stack, git_server, "v2.0-rc1", rc))
    assert wait_for_deployment(stack, queued)["status"] == "live"
    assert stack.get("/d/releases/").text == "v2.0-rc1"

    older = repo.tag("v1.11", {"index.html": "v1.11"})
    assert gitlab_tag_push(stack, git_server, "v1.11", older) == {
        "ignored": "tag v1.11 is older than v2.0-rc1, which slot releases was given: a site following tags never"
        " rolls back"
    }

    final = repo.tag("v2.0", {"index.html": "v2.0"})
    queued = only_queued(gitlab_tag_push(stack, git_server, "v2.0", final))
    assert wait_for_deployment(stack, queued)["commit_sha"] == final
    assert stack.get("/d/releases/").text == "v2.0"

    git("push", "--quiet", "origin", ":refs/tags/v2.0", cwd=repo.work)
    answer = gitlab_tag_push(stack, git_server, "v2.0", ZERO)
    assert answer == {"ignored": "a deleted tag is not acted on: sites following tags never roll back"}
    assert stack.get("/d/releases/").text == "v2.0"
    assert [row["branch"] for row in releases(stack)] == ["refs/tags/v2.0", "refs/tags/v2.0-rc1", "refs/tags/v1.10"]


def test_polling_follows_the_newest_tag_in_version_order(
    git_server: GitHttpServer, gitops_stack: GitopsFactory
) -> None:
    repo = git_server.repo("site")
    repo.commit({"index.html": "main"})
    repo.tag("v1.9", {"index.html": "v1.9"}, annotated=False)
    stack = gitops_stack("poll_interval: 1s\n" + tag_site(git_server.url("site"), secret=False))
    assert wait_for_deployment(stack, 1)["status"] == "live"
    assert stack.get("/d/releases/").text == "v1.9"

    head = repo.tag("v1.10", {"index.html": "v1.10"})
    assert wait_until(lambda: stack.get("/d/releases/").text == "v1.10")
    newest = wait_for_deployment(stack, int(str(releases(stack)[0]["id"])))
    assert (newest["trigger"], newest["commit_sha"], newest["branch"]) == ("poll", head, "refs/tags/v1.10")

    # An older tag, then the newest one deleted: polling keeps v1.10.
    repo.tag("v1.2", {"index.html": "v1.2"})
    git("push", "--quiet", "origin", ":refs/tags/v1.10", cwd=repo.work)
    requests = git_server.requests
    assert wait_until(lambda: git_server.requests > requests + 2)
    assert stack.get("/d/releases/").text == "v1.10"
    assert len(releases(stack)) == 2


def test_git_push_tags_to_a_hosted_repository(served_stack: Callable[..., Served], tmp_path: Path) -> None:
    served = served_stack('sites:\n  - slot: releases\n    repo: hosted:handbook\n    tags: "v*"\n')
    work = work_repo(tmp_path, {"index.html": "untagged"})
    code, output = push(work, served.push_url("handbook"), "main")
    assert code == 0 and "no site in deploy.yaml deploys the pushed branch(es)" in output, output
    for tag in ("v1.9", "v1.10", "v1.2"):
        (work / "index.html").write_text(tag)
        git("commit", "--quiet", "-am", tag, cwd=work)
        git("tag", "-a", "-m", tag, tag, cwd=work)
    code, output = push(work, served.push_url("handbook"), "--tags")
    assert code == 0, output
    assert f"remote: live at {served.sites_url}/d/releases/ (version 1)" in output
    assert httpx.get(served.sites_url + "/d/releases/").text == "v1.10"
    rows = served.api("GET", "/api/deployments").json()["deployments"]
    assert [(r["branch"], r["trigger"]) for r in rows] == [("refs/tags/v1.10", "push")]


def test_a_refused_push_of_a_tag_does_not_hold_back_an_older_tag(
    served_stack: Callable[..., Served], tmp_path: Path
) -> None:
    served = served_stack(
        "sites:\n  - slot: handbook\n    repo: hosted:handbook\n    branch: main\n"
        '  - slot: releases\n    repo: hosted:handbook\n    tags: "v*"\n'
    )
    work = work_repo(tmp_path, {"index.html": "one"})
    git("tag", "v1.0", cwd=work)
    code, output = push(work, served.push_url("handbook"), "main", "v1.0")
    assert code == 0, output
    good = commit(work, {"index.html": "two"})
    git("tag", "v2.0", cwd=work)
    commit(work, {"index.html": "bad", "_redirects": "/only-a-source\n"})
    # main's deploy fails, so git moves neither ref: v2.0's ready draft never lands.
    code, output = push(work, served.push_url("handbook"), "main", "v2.0")
    assert code != 0, output
    assert "v2.0" not in git("ls-remote", "--tags", served.push_url("handbook"), cwd=work)
    git("tag", "v1.5", good, cwd=work)
    code, output = push(work, served.push_url("handbook"), "v1.5")
    assert code == 0, output
    assert httpx.get(served.sites_url + "/d/releases/").text == "two"
    # Landing a tag reads its ref alone: no `git cat-file --batch` is left running for the web thread.
    assert not git_readers(), git_readers()


def git_readers() -> list[str]:
    """The `git cat-file` processes this process (the service runs in it) has left running."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            cmdline = (stat.parent / "cmdline").read_bytes().split(b"\0")
        except (OSError, IndexError):
            continue
        if int(fields[1]) == os.getpid() and b"cat-file" in cmdline:
            found.append(b" ".join(cmdline).decode(errors="replace"))
    return found
