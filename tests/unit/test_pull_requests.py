"""Pull-request and merge-request deliveries of each provider, read from their published payloads."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from drophost.errors import ValidationError
from drophost.gitops import targets
from drophost.gitops.manifest import parse
from drophost.gitops.refs import pr_slot
from drophost.gitops.repourls import repo_key
from drophost.gitops.webhooks import PROVIDERS, Event, PullRequest, parse_event

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "webhooks"
GITHUB = "github_pull_request_opened.json"
GITLAB = "gitlab_merge_request_hook.json"
GITEA = "fixture_go-playground_gitea_pull-request-event.json"
BITBUCKET = "fixture_go-playground_bitbucket_cloud_pull-request-created.json"


def payload(name: str) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((FIXTURES / name).read_bytes())
    return loaded


def read(provider: str, event: str, body: dict[str, Any] | bytes) -> Event:
    p = PROVIDERS[provider]
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return parse_event(p, {p.event_headers[0]: event}, raw)


@pytest.mark.parametrize(
    ("provider", "event", "name", "expected", "repo"),
    [
        ("github", "pull_request", GITHUB,
         PullRequest(2, "deploy", False, "refs/pull/2/head", "changes", "ec26c3e57ca3a959ca5aad62de7213c562f8c821"),
         "github.com/codertocat/hello-world"),
        ("gitlab", "Merge Request Hook", GITLAB,
         PullRequest(1, "deploy", False, "refs/merge-requests/1/head", "ms-viewport",
                     "da1560886d4f094c3e6c9ef40349f7d38b5d27d7"),
         "example.com/gitlabhq/gitlab-test"),
        # The upstream Gitea delivery comes from a fork: head repo 2 (example2/example), base repo 1.
        ("gitea", "pull_request", GITEA,
         PullRequest(2, "deploy", True, "refs/pull/2/head", "master", "48e773f892a831faa47c0a160d1b7f0cd369ae2a"),
         "localhost:3000/example/example"),
        ("bitbucket", "pullrequest:created", BITBUCKET,
         PullRequest(1, "deploy", False, "refs/heads/branch2", "branch2", "d3022fc0ca3d"),
         "api.bitbucket.org/bitbucket/bitbucket"),
    ],
    ids=["github", "gitlab", "gitea", "bitbucket"],
)  # fmt: skip
def test_published_pull_request_payloads_are_read(
    provider: str, event: str, name: str, expected: PullRequest, repo: str
) -> None:
    parsed = read(provider, event, (FIXTURES / name).read_bytes())
    assert parsed.kind == "pull_request"
    assert parsed.pull_request == expected
    # The base repository is what deploy.yaml is matched against, never the head's.
    assert repo in {repo_key(url) for url in parsed.repo_urls}


@pytest.mark.parametrize(
    ("action", "expected"),
    [("opened", "deploy"), ("synchronize", "deploy"), ("reopened", "deploy"), ("closed", "close")],
)
def test_github_actions_deploy_or_close(action: str, expected: str) -> None:
    body = payload(GITHUB)
    body["action"] = action
    if action == "closed":
        body["pull_request"]["merged"] = True
    parsed = read("github", "pull_request", body)
    assert parsed.pull_request is not None and parsed.pull_request.action == expected


def test_other_github_actions_and_bad_numbers_are_ignored() -> None:
    body = payload(GITHUB)
    body["action"] = "labeled"
    assert read("github", "pull_request", body).kind == "ignored"
    for number in (True, "2", -1, 0, 2**40, None):
        body = payload(GITHUB)
        body["number"] = number
        body["pull_request"]["number"] = number
        parsed = read("github", "pull_request", body)
        assert parsed.kind == "ignored" and "number" in parsed.reason


def test_a_github_fork_is_told_by_the_head_repository() -> None:
    body = payload(GITHUB)
    body["pull_request"]["head"]["repo"]["id"] = 1
    body["pull_request"]["head"]["repo"]["full_name"] = "mallory/Hello-World"
    body["pull_request"]["head"]["repo"]["clone_url"] = "https://evil.example/mallory/Hello-World.git"
    pull = read("github", "pull_request", body).pull_request
    assert pull is not None and pull.fork
    # Still the base repository's ref: the fork's URL is never something to fetch.
    assert pull.head_ref == "refs/pull/2/head"
    body["pull_request"]["head"]["repo"] = None  # a deleted fork
    pull = read("github", "pull_request", body).pull_request
    assert pull is not None and pull.fork


def test_gitea_synchronized_and_closed() -> None:
    body = payload(GITEA)
    body["action"] = "synchronized"
    pull = read("gitea", "pull_request", body).pull_request
    assert pull is not None and pull.action == "deploy"
    body["action"] = "closed"
    pull = read("gitea", "pull_request_sync", body).pull_request
    assert pull is not None and pull.action == "close"


@pytest.mark.parametrize(
    ("action", "oldrev", "expected"),
    [("open", None, "deploy"), ("reopen", None, "deploy"), ("update", "abc", "deploy"), ("update", None, None),
     ("close", None, "close"), ("merge", None, "close"), ("approved", None, None)],
)  # fmt: skip
def test_gitlab_actions(action: str, oldrev: str | None, expected: str | None) -> None:
    body = payload(GITLAB)
    body["object_attributes"]["action"] = action
    if oldrev:
        body["object_attributes"]["oldrev"] = oldrev
    parsed = read("gitlab", "Merge Request Hook", body)
    if expected is None:
        assert parsed.kind == "ignored"
    else:
        assert parsed.pull_request is not None and parsed.pull_request.action == expected


def test_a_gitlab_fork_is_a_different_source_project() -> None:
    body = payload(GITLAB)
    body["object_attributes"]["source_project_id"] = 99
    pull = read("gitlab", "Merge Request Hook", body).pull_request
    assert pull is not None and pull.fork and pull.head_ref == "refs/merge-requests/1/head"


def test_bitbucket_close_events_and_forks() -> None:
    for key in ("pullrequest:fulfilled", "pullrequest:rejected"):
        pull = read("bitbucket", key, payload(BITBUCKET)).pull_request
        assert pull is not None and pull.action == "close"
    body = payload(BITBUCKET)
    body["pullrequest"]["source"]["repository"]["uuid"] = "{another}"
    body["pullrequest"]["source"]["repository"]["full_name"] = "mallory/repo_name"
    pull = read("bitbucket", "pullrequest:updated", body).pull_request
    # Bitbucket Cloud keeps no ref of a fork's head in the base repository: nothing to fetch.
    assert pull is not None and pull.fork and pull.head_ref is None
    body = payload(BITBUCKET)
    body["pullrequest"]["source"]["branch"]["name"] = "../../etc"
    pull = read("bitbucket", "pullrequest:updated", body).pull_request
    assert pull is not None and pull.head_ref is None


SITES = parse(
    b'sites:\n  - slot: "docs-pr-{pr}"\n    repo: https://github.com/Codertocat/Hello-World\n'
    b'  - slot: "forks-pr-{pr}"\n    repo: https://github.com/Codertocat/Hello-World\n    previews: {forks: true}\n'
    b"  - slot: docs\n    repo: https://github.com/Codertocat/Hello-World\n"
).sites


def test_a_pull_request_deploys_its_head_ref_to_each_pr_slot() -> None:
    pull = PullRequest(7, "deploy", False, "refs/pull/7/head", "feature")
    decision = targets.for_pull_request("github", pull, SITES)
    assert [(t.slot, t.branch, t.ref, t.template) for t in decision.deploys] == [
        ("docs-pr-7", "refs/pull/7/head", "refs/pull/7/head", "docs-pr-{pr}"),
        ("forks-pr-7", "refs/pull/7/head", "refs/pull/7/head", "forks-pr-{pr}"),
    ]
    assert decision.refused == () and decision.removed == ()


def test_a_fork_deploys_only_where_forks_are_allowed() -> None:
    pull = PullRequest(7, "deploy", True, "refs/pull/7/head", "feature")
    decision = targets.for_pull_request("github", pull, SITES)
    assert [t.slot for t in decision.deploys] == ["forks-pr-7"]
    (reason,) = decision.refused
    assert "comes from a fork" in reason and "previews: {forks: true}" in reason
    bitbucket_fork = PullRequest(7, "deploy", True, None, "feature")
    decision = targets.for_pull_request("bitbucket", bitbucket_fork, SITES)
    assert decision.deploys == () and len(decision.refused) == 2


def test_closing_removes_every_pr_slot_fork_or_not() -> None:
    decision = targets.for_pull_request("github", PullRequest(7, "close", True, "refs/pull/7/head"), SITES)
    assert decision.removed == ("docs-pr-7", "forks-pr-7") and decision.deploys == ()


def test_a_bitbucket_pull_request_fetches_its_source_branch() -> None:
    pull = PullRequest(1, "deploy", False, "refs/heads/branch2", "branch2")
    (first, _) = targets.for_pull_request("bitbucket", pull, SITES).deploys
    assert (first.slot, first.branch, first.ref) == ("docs-pr-1", "branch2", None)


def test_the_slot_is_made_from_the_number_only() -> None:
    assert pr_slot("docs-pr-{pr}", 2147483647) == "docs-pr-2147483647"
    for bad in (0, -3, 2**31, True):
        with pytest.raises(ValidationError):
            pr_slot("docs-pr-{pr}", bad)
    site = SITES[0]
    assert site.owns("docs-pr-12") and not site.owns("docs-pr-") and not site.owns("docs-pr-012")
    assert not site.owns("docs-pr-1x") and not site.owns("forks-pr-1")
