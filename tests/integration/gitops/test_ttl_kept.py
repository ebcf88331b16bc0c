"""A git redeploy keeps the slot's time to live; a ttl sets a new one, "none" removes it."""

from __future__ import annotations

from tests.harness.auth import AUTH
from tests.harness.git import GitHttpServer
from tests.harness.stacks import GitopsFactory, Stack
from tests.harness.waiting import wait_for_deployment


def expiry(stack: Stack, slot: str) -> str | None:
    found = {s["slot"]: s for s in stack.client.get("/api/slots", headers=AUTH).json()["slots"]}[slot]
    assert found["status"] == "live"
    value: str | None = found["expires_at"]
    return value


def test_a_git_redeploy_keeps_the_ttl_unless_it_names_one(
    git_server: GitHttpServer, gitops_stack: GitopsFactory
) -> None:
    repo = git_server.repo("other")
    stack = gitops_stack(f'sites: []\nsources:\n  allow: ["http://127.0.0.1:{git_server.port}/*"]\n')

    def deploy(text: str, **ttl: str) -> None:
        repo.commit({"index.html": text})
        body = {"repo": git_server.url("other"), "branch": "main", "slot": "other", **ttl}
        answer = stack.client.post("/api/deployments", json=body, headers=AUTH)
        assert answer.status_code == 202, answer.text
        assert wait_for_deployment(stack, answer.json()["id"])["status"] == "live"

    deploy("one", ttl="1d")
    first = expiry(stack, "other")
    assert first is not None
    deploy("two")
    assert expiry(stack, "other") == first
    deploy("three", ttl="2d")
    changed = expiry(stack, "other")
    assert changed is not None and changed > first
    deploy("four", ttl="none")
    assert expiry(stack, "other") is None
    assert stack.get("/d/other/").text == "four"
