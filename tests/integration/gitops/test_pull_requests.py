"""Pull-request previews through real PostgreSQL, nginx and git, driven by the providers' published payloads."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.harness.auth import AUTH
from tests.harness.git import GitHttpServer
from tests.harness.stacks import GitopsFactory, Stack
from tests.harness.waiting import wait_for_deployment, wait_until
from tests.harness.webhooks import ENV, SECRET, hex_hmac, only_queued

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "webhooks"


def pr_site(server: GitHttpServer, name: str, template: str = "docs-pr-{pr}", forks: bool = False) -> str:
    text = f'  - slot: "{template}"\n    repo: {server.url(name)}\n    webhook_secret_env: HOOK_SECRET\n'
    return text + ("    previews: {forks: true}\n" if forks else "")


def payload(server: GitHttpServer, fixture: str, old_url: str, name: str) -> dict[str, object]:
    """A published payload with its base repository's URLs pointed at the local git server."""
    raw = (FIXTURES / fixture).read_text()
    assert old_url in raw
    loaded: dict[str, object] = json.loads(raw.replace(old_url, f"http://127.0.0.1:{server.port}/{name}"))
    return loaded


def deliver(stack: Stack, provider: str, event: str, body: dict[str, object]) -> dict[str, object]:
    raw = json.dumps(body).encode()
    headers = {
        "github": {"X-GitHub-Event": event, "X-Hub-Signature-256": "sha256=" + hex_hmac(raw)},
        "gitea": {"X-Gitea-Event": event, "X-Gitea-Signature": hex_hmac(raw)},
        "gitlab": {"X-Gitlab-Event": event, "X-Gitlab-Token": SECRET},
        "bitbucket": {"X-Event-Key": event, "X-Hub-Signature": "sha256=" + hex_hmac(raw)},
    }[provider]
    answer = stack.client.post(f"/api/webhooks/{provider}", content=raw, headers=headers)
    assert answer.status_code == 202, answer.text
    result: dict[str, object] = answer.json()
    return result


def deployments(stack: Stack) -> list[dict[str, object]]:
    rows: list[dict[str, object]] = stack.client.get("/api/deployments", headers=AUTH).json()["deployments"]
    return rows


def slot_status(stack: Stack, slot: str) -> str | None:
    slots = stack.client.get("/api/slots", headers=AUTH).json()["slots"]
    return next((s["status"] for s in slots if s["slot"] == slot), None)


def test_a_github_pull_request_is_previewed_redeployed_and_taken_offline(
    git_server: GitHttpServer, gitops_stack: GitopsFactory
) -> None:
    repo = git_server.repo("Hello-World")
    repo.commit({"index.html": "master"}, branch="master")
    head = repo.commit({"index.html": "pull request, first push"}, branch="changes")
    repo.push_ref("changes", "refs/pull/2/head")
    stack = gitops_stack("sites:\n" + pr_site(git_server, "Hello-World"), ENV)
    body = payload(git_server, "github_pull_request_opened.json", "https://github.com/Codertocat/Hello-World",
                   "Hello-World")  # fmt: skip

    answer = deliver(stack, "github", "pull_request", body)
    first = only_queued(answer)
    row = wait_for_deployment(stack, first)
    assert row["status"] == "live", row
    assert (row["slot"], row["branch"], row["commit_sha"]) == ("docs-pr-2", "refs/pull/2/head", head)
    assert stack.get("/d/docs-pr-2/").text == "pull request, first push"

    # A push to the pull request: the forge moves refs/pull/2/head and says "synchronize".
    head = repo.commit({"index.html": "pull request, second push"}, branch="changes")
    repo.push_ref("changes", "refs/pull/2/head")
    body["action"] = "synchronize"
    second = only_queued(deliver(stack, "github", "pull_request", body))
    row = wait_for_deployment(stack, second)
    assert (row["status"], row["commit_sha"]) == ("live", head), row
    assert stack.get("/d/docs-pr-2/").text == "pull request, second push"

    body["action"] = "closed"
    assert deliver(stack, "github", "pull_request", body) == {"queued": [], "removed": ["docs-pr-2"]}
    assert wait_until(lambda: stack.get("/d/docs-pr-2/").status_code == 404)
    assert wait_until(lambda: slot_status(stack, "docs-pr-2") == "offline")
    # The preview's history stays, as for any slot taken offline.
    assert len(deployments(stack)) == 2


def test_a_gitlab_merge_request_is_previewed_until_merged(
    git_server: GitHttpServer, gitops_stack: GitopsFactory
) -> None:
    repo = git_server.repo("gitlab-test")
    repo.commit({"index.html": "master"}, branch="master")
    repo.commit({"index.html": "merge request"}, branch="ms-viewport")
    repo.push_ref("ms-viewport", "refs/merge-requests/1/head")
    stack = gitops_stack("sites:\n" + pr_site(git_server, "gitlab-test", "mr-{pr}"), ENV)
    body = payload(git_server, "gitlab_merge_request_hook.json", "http://example.com/gitlabhq/gitlab-test",
                   "gitlab-test")  # fmt: skip
    queued = only_queued(deliver(stack, "gitlab", "Merge Request Hook", body))
    row = wait_for_deployment(stack, queued)
    assert (row["status"], row["slot"], row["branch"]) == ("live", "mr-1", "refs/merge-requests/1/head"), row
    assert stack.get("/d/mr-1/").text == "merge request"
    attributes = body["object_attributes"]
    assert isinstance(attributes, dict)
    attributes["action"] = "merge"
    assert deliver(stack, "gitlab", "Merge Request Hook", body)["removed"] == ["mr-1"]
    assert wait_until(lambda: stack.get("/d/mr-1/").status_code == 404)


def test_a_bitbucket_pull_request_deploys_its_source_branch(
    git_server: GitHttpServer, gitops_stack: GitopsFactory
) -> None:
    repo = git_server.repo("bitbucket")
    repo.commit({"index.html": "master"}, branch="master")
    repo.commit({"index.html": "from branch2"}, branch="branch2")
    stack = gitops_stack("sites:\n" + pr_site(git_server, "bitbucket"), ENV)
    body = payload(git_server, "fixture_go-playground_bitbucket_cloud_pull-request-created.json",
                   "https://api.bitbucket.org/bitbucket/bitbucket", "bitbucket")  # fmt: skip
    queued = only_queued(deliver(stack, "bitbucket", "pullrequest:created", body))
    row = wait_for_deployment(stack, queued)
    assert (row["status"], row["slot"], row["branch"]) == ("live", "docs-pr-1", "branch2"), row
    assert deliver(stack, "bitbucket", "pullrequest:rejected", body)["removed"] == ["docs-pr-1"]
    assert wait_until(lambda: stack.get("/d/docs-pr-1/").status_code == 404)


def test_a_pull_request_from_a_fork_is_refused(
    git_server: GitHttpServer, gitops_stack: GitopsFactory, caplog: pytest.LogCaptureFixture
) -> None:
    # Gitea's delivery comes from a fork (head repository example2/example, base example/example).
    repo = git_server.repo("example")
    repo.commit({"index.html": "master"}, branch="master")
    repo.commit({"index.html": "code from a fork"}, branch="fork-head")
    repo.push_ref("fork-head", "refs/pull/2/head")
    stack = gitops_stack("sites:\n" + pr_site(git_server, "example"), ENV)
    body = payload(git_server, "fixture_go-playground_gitea_pull-request-event.json",
                   "http://localhost:3000/example/example", "example")  # fmt: skip
    answer = deliver(stack, "gitea", "pull_request", body)
    assert answer["queued"] == [] and answer["removed"] == []
    refused = answer["refused"]
    assert isinstance(refused, list) and len(refused) == 1
    reason = refused[0]
    assert reason == (
        "pull request #2 comes from a fork: slot docs-pr-2 (docs-pr-{pr}) previews forks only with"
        " previews: {forks: true}"
    )
    assert deployments(stack) == []
    assert stack.get("/d/docs-pr-2/").status_code == 404
    assert f"webhook gitea: refused: {reason}" in caplog.text
    # Closing it has no preview to take offline.
    body["action"] = "closed"
    assert deliver(stack, "gitea", "pull_request", body) == {"queued": [], "removed": []}


def test_a_fork_is_previewed_from_the_base_repository_when_allowed(
    git_server: GitHttpServer, gitops_stack: GitopsFactory
) -> None:
    repo = git_server.repo("example")
    repo.commit({"index.html": "master"}, branch="master")
    head = repo.commit({"index.html": "code from a fork"}, branch="fork-head")
    repo.push_ref("fork-head", "refs/pull/2/head")
    stack = gitops_stack("sites:\n" + pr_site(git_server, "example", forks=True), ENV)
    body = payload(git_server, "fixture_go-playground_gitea_pull-request-event.json",
                   "http://localhost:3000/example/example", "example")  # fmt: skip
    requests = git_server.requests
    queued = only_queued(deliver(stack, "gitea", "pull_request", body))
    row = wait_for_deployment(stack, queued)
    # The head came from the base repository's refs/pull/2/head; the payload's fork URL
    # (http://localhost:3000/example2/example, unreachable here) was never used.
    assert (row["status"], row["commit_sha"], row["repo"]) == ("live", head, git_server.url("example")), row
    assert git_server.requests > requests
    assert stack.get("/d/docs-pr-2/").text == "code from a fork"


def test_plan_lists_pull_request_sites_and_their_previews(
    git_server: GitHttpServer, gitops_stack: GitopsFactory
) -> None:
    repo = git_server.repo("Hello-World")
    repo.commit({"index.html": "x"}, branch="changes")
    repo.push_ref("changes", "refs/pull/2/head")
    yaml_text = "sites:\n" + pr_site(git_server, "Hello-World", forks=True)
    stack = gitops_stack(yaml_text, ENV)
    body = payload(git_server, "github_pull_request_opened.json", "https://github.com/Codertocat/Hello-World",
                   "Hello-World")  # fmt: skip
    queued = only_queued(deliver(stack, "github", "pull_request", body))
    assert wait_for_deployment(stack, queued)["status"] == "live"
    plan = stack.client.post("/api/plan", content=yaml_text, headers=AUTH).json()
    url = git_server.url("Hello-World")
    assert plan["changes"] == [
        {"action": "keep", "slot": "docs-pr-{pr}",
         "detail": f"previews {url} pull requests, forks too: one slot per open pull request"},
        {"action": "keep", "slot": "docs-pr-2", "detail": "preview of pull request refs/pull/2/head"},
    ]  # fmt: skip
