from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.harness.auth import AUTH
from tests.harness.git import GitHttpServer
from tests.harness.stacks import GitopsFactory, Stack
from tests.harness.waiting import wait_for_deployment, wait_until
from tests.harness.webhooks import ENV, SECRET, hex_hmac, site_yaml

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "webhooks"


def github_headers(body: bytes) -> dict[str, str]:
    return {"X-GitHub-Event": "push", "X-Hub-Signature-256": "sha256=" + hex_hmac(body)}


def gitea_headers(body: bytes) -> dict[str, str]:
    return {"X-Gitea-Event": "push", "X-Gitea-Signature": hex_hmac(body)}


def gitlab_headers(body: bytes) -> dict[str, str]:
    return {"X-Gitlab-Event": "Push Hook", "X-Gitlab-Token": SECRET}


def bitbucket_server_headers(body: bytes) -> dict[str, str]:
    return {"X-Event-Key": "repo:refs_changed", "X-Hub-Signature": "sha256=" + hex_hmac(body)}


def bitbucket_cloud_headers(body: bytes) -> dict[str, str]:
    return {"X-Event-Key": "repo:push", "X-Hub-Signature": "sha256=" + hex_hmac(body)}


Headers = Callable[[bytes], dict[str, str]]
# provider, fixture, the repository URL in it, the local repository standing in for it, branch, pusher.
PUSHES: list[tuple[str, str, str, str, str, str, Headers]] = [
    ("github", "fixture_go-playground_github_push.json", "https://github.com/binkkatal/sample_app",
     "sample_app", "master", "binkkatal", github_headers),
    ("github", "fixture_argocd_github_push.json", "https://github.com/jessesuen/test-repo",
     "test-repo", "master", "jessesuen", github_headers),
    ("gitlab", "gitlab_push_hook.json", "http://example.com/mike/diaspora", "diaspora", "master", "jsmith",
     gitlab_headers),
    ("gitea", "gitea_push.json", "http://localhost:3000/gitea/webhooks", "webhooks", "develop", "gitea",
     gitea_headers),
    ("gitea", "fixture_go-playground_gitea_push-event.json", "http://localhost:3000/example/example",
     "example", "master", "example", gitea_headers),
    ("bitbucket", "fixture_argocd_bitbucket_server_refs_changed.json",
     "https://bitbucketserver/scm/myproject/test-repo", "test-repo", "master", "john", bitbucket_server_headers),
    ("bitbucket", "fixture_go-playground_bitbucket_cloud_repo-push.json",
     "https://api.bitbucket.org/bitbucket/bitbucket", "bitbucket", "name-of-branch", "emmap1",
     bitbucket_cloud_headers),
]  # fmt: skip


def pointed_at(server: GitHttpServer, fixture: str, old_url: str, name: str) -> bytes:
    """The real payload with its repository URLs rewritten to the local test server."""
    raw = (FIXTURES / fixture).read_bytes()
    assert old_url.encode() in raw
    return raw.replace(old_url.encode(), f"http://127.0.0.1:{server.port}/{name}".encode())


def started(gitops_stack: GitopsFactory, yaml_text: str) -> Stack:
    stack = gitops_stack(yaml_text, ENV)
    first = wait_for_deployment(stack, 1)
    assert first["status"] == "live", first
    return stack


@pytest.mark.parametrize(
    ("provider", "fixture", "old_url", "name", "branch", "pusher", "headers"), PUSHES, ids=[p[1] for p in PUSHES]
)
def test_real_push_payloads_deploy_the_branch_head(
    git_server: GitHttpServer,
    gitops_stack: GitopsFactory,
    provider: str,
    fixture: str,
    old_url: str,
    name: str,
    branch: str,
    pusher: str,
    headers: Headers,
) -> None:
    repo = git_server.repo(name)
    repo.commit({"index.html": "before"}, branch=branch)
    stack = started(gitops_stack, site_yaml(git_server, name, branch))
    head = repo.commit({"index.html": "after the push"}, branch=branch)
    body = pointed_at(git_server, fixture, old_url, name)
    answer = stack.client.post(f"/api/webhooks/{provider}", content=body, headers=headers(body))
    assert answer.status_code == 202, answer.text
    (deployment_id,) = answer.json()["queued"]
    row = wait_for_deployment(stack, deployment_id)
    assert row["status"] == "live", row
    # The branch head after fetching from deploy.yaml's repo, never the payload's commit.
    assert (row["commit_sha"], row["trigger"], row["pusher"]) == (head, "webhook", pusher)
    assert stack.get("/d/site/").text == "after the push"


def test_ping_answers_200_and_unknown_repositories_are_ignored(
    git_server: GitHttpServer, gitops_stack: GitopsFactory
) -> None:
    git_server.repo("site").commit({"index.html": "x"})
    stack = started(gitops_stack, site_yaml(git_server, "site", "main"))
    ping = (FIXTURES / "github_ping.json").read_bytes()
    headers = {"X-GitHub-Event": "ping", "X-Hub-Signature-256": "sha256=" + hex_hmac(ping)}
    answer = stack.client.post("/api/webhooks/github", content=ping, headers=headers)
    assert answer.status_code == 200 and answer.json() == {"ok": "ping received"}
    push = (FIXTURES / "fixture_go-playground_github_push.json").read_bytes()
    answer = stack.client.post("/api/webhooks/github", content=push, headers=github_headers(push))
    assert answer.status_code == 202
    assert answer.json() == {"ignored": "no site in deploy.yaml deploys this repository"}
    tag = (FIXTURES / "gitlab_tag_push_hook.json").read_bytes()
    answer = stack.client.post(
        "/api/webhooks/gitlab", content=tag, headers={"X-Gitlab-Event": "Tag Push Hook", "X-Gitlab-Token": SECRET}
    )
    # A tag push is read now (sites can follow tags), but no site deploys this repository.
    assert answer.status_code == 202
    assert answer.json() == {"ignored": "no site in deploy.yaml deploys this repository"}
    deleted_tag = (FIXTURES / "github_push_tag_deleted.json").read_bytes()
    answer = stack.client.post("/api/webhooks/github", content=deleted_tag, headers=github_headers(deleted_tag))
    assert answer.status_code == 202
    assert answer.json() == {"ignored": "a deleted tag is not acted on: sites following tags never roll back"}


def bad_deliveries(body: bytes) -> list[tuple[dict[str, str] | dict[str, bytes], int, str]]:
    good = "sha256=" + hex_hmac(body)
    return [
        ({"X-GitHub-Event": "push"}, 401, "has no X-Hub-Signature-256 header"),
        ({"X-GitHub-Event": "push", "X-Hub-Signature-256": "sha256=" + hex_hmac(body, "wrong")}, 401, "does not match"),
        ({"X-GitHub-Event": "push", "X-Hub-Signature-256": good[:-2]}, 401, "does not match"),
        ({"X-GitHub-Event": "push", "X-Hub-Signature-256": "sha256=\u00e9t\u00e9".encode("latin-1")}, 401,
         "is not a valid signature"),
        ({"X-GitHub-Event": "push", "X-Hub-Signature-256": hex_hmac(body)}, 401, 'must look like "sha256='),
    ]  # fmt: skip


def test_unsigned_badly_signed_oversized_and_replayed_deliveries_change_nothing(
    git_server: GitHttpServer, gitops_stack: GitopsFactory
) -> None:
    repo = git_server.repo("sample_app")
    repo.commit({"index.html": "live"}, branch="master")
    stack = started(gitops_stack, site_yaml(git_server, "sample_app", "master"))
    repo.commit({"index.html": "must not go live"}, branch="master")
    body = pointed_at(git_server, "fixture_go-playground_github_push.json", "https://github.com/binkkatal/sample_app",
                      "sample_app")  # fmt: skip
    for headers, status, message in bad_deliveries(body):
        answer = stack.client.post("/api/webhooks/github", content=body, headers=headers)
        assert answer.status_code == status, (headers, answer.text)
        assert message in answer.json()["error"]
    huge = body + b" " * (1024 * 1024)
    answer = stack.client.post("/api/webhooks/github", content=huge, headers=github_headers(huge))
    assert answer.status_code == 413 and "larger than" in answer.json()["error"]
    not_json = b"{not json"
    answer = stack.client.post("/api/webhooks/github", content=not_json, headers=github_headers(not_json))
    assert answer.status_code == 400
    assert stack.client.post("/api/webhooks/nope", content=body, headers=github_headers(body)).status_code == 404
    assert len(stack.client.get("/api/deployments", headers=AUTH).json()["deployments"]) == 1
    assert stack.get("/d/site/").text == "live"

    delivery = {"X-GitHub-Delivery": str(uuid.uuid4()), **github_headers(body)}
    first = stack.client.post("/api/webhooks/github", content=body, headers=delivery)
    assert first.status_code == 202
    replay = stack.client.post("/api/webhooks/github", content=body, headers=delivery)
    assert replay.status_code == 409 and "was already received" in replay.json()["error"]
    assert wait_for_deployment(stack, first.json()["queued"][0])["status"] == "live"
    assert len(stack.client.get("/api/deployments", headers=AUTH).json()["deployments"]) == 2


def test_no_secret_configured_is_403(git_server: GitHttpServer, gitops_stack: GitopsFactory) -> None:
    git_server.repo("site").commit({"index.html": "x"})
    stack = gitops_stack(site_yaml(git_server, "site", "main", secret=False), {})
    body = json.dumps({"repo": git_server.url("site"), "branch": "main"}).encode()
    answer = stack.client.post(
        "/api/webhooks/generic", content=body, headers={"X-Signature": "sha256=" + hex_hmac(body)}
    )
    assert answer.status_code == 403 and "webhook secret" in answer.json()["error"]


def test_a_secret_variable_named_but_unset_refuses_that_sites_webhooks(
    git_server: GitHttpServer, gitops_stack: GitopsFactory
) -> None:
    git_server.repo("site").commit({"index.html": "x"})
    stack = gitops_stack(site_yaml(git_server, "site", "main"), {})
    reloaded = stack.client.post("/api/reload", headers=AUTH)
    assert reloaded.json()["errors"] == ["deploy.yaml:2 sites[0].webhook_secret_env: HOOK_SECRET is not set"]
    body = json.dumps({"repo": git_server.url("site"), "branch": "main"}).encode()
    for secret in ("", "anything"):
        signature = "sha256=" + hex_hmac(body, secret)
        answer = stack.client.post("/api/webhooks/generic", content=body, headers={"X-Signature": signature})
        assert answer.status_code == 403


def test_a_burst_of_pushes_coalesces_and_ends_on_the_newest_commit(
    git_server: GitHttpServer, gitops_stack: GitopsFactory
) -> None:
    repo = git_server.repo("site")
    repo.commit({"index.html": "0"})
    stack = started(gitops_stack, site_yaml(git_server, "site", "main"))
    ids = set()
    for number in range(1, 11):
        head = repo.commit({"index.html": str(number)})
        body = json.dumps({"repo": git_server.url("site"), "branch": "main", "pusher": "ann"}).encode()
        answer = stack.client.post(
            "/api/webhooks/generic", content=body, headers={"X-Signature": "sha256=" + hex_hmac(body)}
        )
        assert answer.status_code == 202
        ids.update(answer.json()["queued"])
    rows = [wait_for_deployment(stack, i) for i in sorted(ids)]
    assert len(ids) <= 10
    # An earlier deploy of the burst may already have fetched the newest commit: the last one then
    # finds nothing new and ends "unchanged". Either way the newest commit is what is live.
    assert rows[-1]["status"] in ("live", "unchanged") and rows[-1]["commit_sha"] == head
    assert stack.get("/d/site/").text == "10"
    all_rows = stack.client.get("/api/deployments?slot=site", headers=AUTH).json()["deployments"]
    assert all(r["status"] in ("live", "superseded", "unchanged") for r in all_rows)
    [live] = [r for r in all_rows if r["status"] == "live"]
    assert live["commit_sha"] == head


def test_preview_slots_come_with_a_push_and_go_with_the_branch(
    git_server: GitHttpServer, gitops_stack: GitopsFactory
) -> None:
    name = "webhook-test"
    repo = git_server.repo(name)
    repo.commit({"index.html": "main"})
    yaml_text = (
        site_yaml(git_server, name, "main")
        + f'  - slot: "pr-{{branch}}"\n    repo: {git_server.url(name)}\n    branches: ["feature/*"]\n'
        "    ttl: 1h\n    webhook_secret_env: HOOK_SECRET\n"
    )
    stack = started(gitops_stack, yaml_text)
    repo.commit({"index.html": "work in progress"}, branch="feature/wip")
    body = json.dumps({"repo": git_server.url(name), "branch": "feature/wip"}).encode()
    answer = stack.client.post(
        "/api/webhooks/generic", content=body, headers={"X-Signature": "sha256=" + hex_hmac(body)}
    )
    row = wait_for_deployment(stack, answer.json()["queued"][0])
    assert row["slot"] == "pr-feature-wip" and row["status"] == "live" and row["ttl_seconds"] == 3600
    assert stack.get("/d/pr-feature-wip/").text == "work in progress"
    slots = {s["slot"]: s for s in stack.client.get("/api/slots", headers=AUTH).json()["slots"]}
    assert slots["pr-feature-wip"]["expires_at"] is not None
    plan = stack.client.post("/api/plan", content=yaml_text.encode(), headers=AUTH).json()
    assert {"action": "keep", "slot": "pr-feature-wip", "detail": "preview of branch feature/wip"} in plan["changes"]

    # Bitbucket Server's real branch-deletion payload for feature/wip.
    repo.delete_branch("feature/wip")
    deletion = pointed_at(
        git_server,
        "fixture_go-playground_bitbucket_server_repo-refs-changed.json",
        "https://server.bitbucket.local/scm/~gopher/webhook-test",
        name,
    )
    answer = stack.client.post("/api/webhooks/bitbucket", content=deletion, headers=bitbucket_server_headers(deletion))
    assert answer.status_code == 202 and answer.json() == {"queued": [], "removed": ["pr-feature-wip"]}
    assert wait_until(lambda: stack.get("/d/pr-feature-wip/").status_code == 404)
    assert stack.get("/d/site/").text == "main"
