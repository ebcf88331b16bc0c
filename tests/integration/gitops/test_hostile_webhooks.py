"""Signed but hostile webhook deliveries: a 4xx sentence each, no deployment, the live site unchanged."""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest

from tests.harness.auth import AUTH
from tests.harness.git import GitHttpServer
from tests.harness.stacks import GitopsFactory, Stack
from tests.harness.waiting import wait_for_deployment
from tests.harness.webhooks import ENV, SECRET, hex_hmac, site_yaml
from tests.integration.support import assert_error

# Each provider's signature header and a push event header, as it signs a body.
SIGNED: dict[str, Callable[[bytes], dict[str, str]]] = {
    "github": lambda body: {"X-GitHub-Event": "push", "X-Hub-Signature-256": "sha256=" + hex_hmac(body)},
    "gitlab": lambda body: {"X-Gitlab-Event": "Push Hook", "X-Gitlab-Token": SECRET},
    "gitea": lambda body: {"X-Gitea-Event": "push", "X-Gitea-Signature": hex_hmac(body)},
    "bitbucket": lambda body: {"X-Event-Key": "repo:push", "X-Hub-Signature": "sha256=" + hex_hmac(body)},
    "generic": lambda body: {"X-Signature": "sha256=" + hex_hmac(body)},
}
# Deeper than json.loads can recurse.
DEEP = b'{"repo": "x", "branch": "main", "a": ' + b"[" * 50_000 + b"]" * 50_000 + b"}"


@pytest.fixture
def stack(git_server: GitHttpServer, gitops_stack: GitopsFactory) -> Stack:
    repo = git_server.repo("site")
    repo.commit({"index.html": "live"})
    stack = gitops_stack(site_yaml(git_server, "site", "main"), ENV)
    assert wait_for_deployment(stack, 1)["status"] == "live"
    repo.commit({"index.html": "must not go live"})
    return stack


def deployments(stack: Stack) -> list[int]:
    return [row["id"] for row in stack.client.get("/api/deployments", headers=AUTH).json()["deployments"]]


def test_deeply_nested_bodies_are_a_400_on_every_provider(stack: Stack) -> None:
    for provider, signed in SIGNED.items():
        answer = stack.client.post(f"/api/webhooks/{provider}", content=DEEP, headers=signed(DEEP))
        message = assert_error(answer, 400, stack.settings)
        assert message == "the webhook body nests JSON deeper than 64 levels", provider
    assert deployments(stack) == [1]
    assert stack.get("/d/site/").text == "live"


def test_a_github_signature_in_another_case_is_refused(stack: Stack) -> None:
    body = b'{"ref": "refs/heads/main", "repository": {"clone_url": "x"}}'
    for signature, says in (
        ("sha256=" + hex_hmac(body).upper(), "does not match the configured webhook secret"),
        ("SHA256=" + hex_hmac(body), 'must look like "sha256=<hex digest>"'),
    ):
        headers = {"X-GitHub-Event": "push", "X-Hub-Signature-256": signature}
        answer = stack.client.post("/api/webhooks/github", content=body, headers=headers)
        assert says in assert_error(answer, 401, stack.settings)
    assert deployments(stack) == [1]
    assert stack.get("/d/site/").text == "live"


@pytest.mark.parametrize(
    ("provider", "event_header"),
    [
        ("github", "X-GitHub-Event"),
        ("gitlab", "X-Gitlab-Event"),
        ("gitea", "X-Gitea-Event"),
        ("bitbucket", "X-Event-Key"),
    ],
)
def test_a_signed_push_without_its_event_header_is_a_400_and_deploys_nothing(
    git_server: GitHttpServer, stack: Stack, provider: str, event_header: str
) -> None:
    # The generic shape reads as a push on every provider once the event header is given.
    body = json.dumps({"ref": "refs/heads/main", "object_kind": "push", "after": "1" * 40,
                       "repository": {"clone_url": git_server.url("site"), "git_http_url": git_server.url("site")},
                       "project": {"git_http_url": git_server.url("site")}}).encode()  # fmt: skip
    headers = {name: value for name, value in SIGNED[provider](body).items() if name != event_header}
    answer = stack.client.post(f"/api/webhooks/{provider}", content=body, headers=headers)
    message = assert_error(answer, 400, stack.settings)
    assert message == f"the delivery has no {event_header} header saying which event it is"
    assert deployments(stack) == [1]
    assert stack.get("/d/site/").text == "live"
