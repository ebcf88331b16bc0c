"""Draft repo-URL deploys: `"activate": false` publishes a git deploy without making it live."""

from __future__ import annotations

from typing import Any

import psycopg

from tests.harness.auth import AUTH
from tests.harness.git import GitHttpServer
from tests.harness.stacks import GitopsFactory, Stack
from tests.harness.waiting import wait_for_deployment
from tests.integration.test_host_names import by_host


def allowing(server: GitHttpServer) -> str:
    return f'sites: []\nsources:\n  allow: ["http://127.0.0.1:{server.port}/*"]\n'


def repo_deploy(stack: Stack, server: GitHttpServer, **fields: object) -> dict[str, Any]:
    answer = stack.client.post(
        "/api/deployments", json={"repo": server.url("site"), "slot": "site", **fields}, headers=AUTH
    )
    assert answer.status_code == 202, answer.text
    shown: dict[str, Any] = answer.json()
    return shown


def test_a_draft_repo_deploy_leaves_the_live_site_until_it_is_promoted(
    git_server: GitHttpServer, gitops_stack: GitopsFactory
) -> None:
    repo = git_server.repo("site")
    repo.commit({"index.html": "one"})
    stack = gitops_stack(allowing(git_server))
    live = wait_for_deployment(stack, int(repo_deploy(stack, git_server)["id"]))
    assert live["status"] == "live"
    second_sha = repo.commit({"index.html": "two", "css/site.css": "body{}"})
    queued = repo_deploy(stack, git_server, activate=False)
    draft = wait_for_deployment(stack, int(queued["id"]))
    assert (draft["status"], draft["commit_sha"], draft["config_version"]) == ("draft", second_sha, 2)
    assert stack.get("/d/site/").text == "one" and by_host(stack, "site.localhost").text == "one"
    versions = stack.client.get("/api/slots/site/versions", headers=AUTH).json()
    assert versions["active"] == 1
    assert [(v["version"], v["status"]) for v in versions["versions"]] == [(2, "draft"), (1, "active")]

    port = stack.settings.sites_listen_port
    assert draft["permalink"] == f"http://{draft['id']}--site.localhost:{port}/"
    own = by_host(stack, f"{draft['id']}--site.localhost")
    assert own.status_code == 200 and own.text == "two"
    assert own.headers["x-robots-tag"] == "noindex"
    assert by_host(stack, f"{draft['id']}--site.localhost", "/css/site.css").text == "body{}"

    promoted = stack.client.post("/api/slots/site/promote", json={"deployment_id": draft["id"]}, headers=AUTH)
    assert promoted.status_code == 200, promoted.text
    assert promoted.json() == {"slot": "site", "active": 2, "deployment_id": draft["id"]}
    assert stack.get("/d/site/").text == "two" and by_host(stack, "site.localhost").text == "two"
    events = stack.client.get("/api/slots/site/events", headers=AUTH).json()["events"]
    assert [e["action"] for e in events][:2] == ["promote", "deploy"]


def test_activate_must_be_a_boolean(git_server: GitHttpServer, gitops_stack: GitopsFactory) -> None:
    git_server.repo("site").commit({"index.html": "one"})
    stack = gitops_stack(allowing(git_server))
    answer = stack.client.post(
        "/api/deployments",
        json={"repo": git_server.url("site"), "slot": "site", "activate": "false"},
        headers=AUTH,
    )
    assert answer.status_code == 422
    assert answer.json()["field"] == "activate"


def test_a_draft_and_a_live_request_queued_together_both_happen(
    git_server: GitHttpServer, gitops_stack: GitopsFactory
) -> None:
    repo = git_server.repo("site")
    sha = repo.commit({"index.html": "head"})
    stack = gitops_stack(allowing(git_server))
    with psycopg.connect(stack.settings.database_url, autocommit=True) as conn:
        # A deploy of the slot "building" holds every queued one of that slot, so all the
        # requests below wait side by side, as they would behind a slow build.
        holder = conn.execute(
            "INSERT INTO deployments (slot, source, state) VALUES ('site', 'upload', 'building') RETURNING id"
        ).fetchone()
        assert holder is not None
        live = repo_deploy(stack, git_server)
        draft = repo_deploy(stack, git_server, activate=False)
        live_again = repo_deploy(stack, git_server)
        draft_again = repo_deploy(stack, git_server, activate=False)
        assert live["id"] != draft["id"]
        # Each request joins the waiting one of its own kind only.
        assert (live_again["id"], draft_again["id"]) == (live["id"], draft["id"])
        conn.execute("UPDATE deployments SET state = 'failed', finished_at = now() WHERE id = %s", (holder[0],))
    shown_live = wait_for_deployment(stack, int(live["id"]))
    shown_draft = wait_for_deployment(stack, int(draft["id"]))
    assert (shown_live["status"], shown_live["commit_sha"]) == ("live", sha)
    assert (shown_draft["status"], shown_draft["commit_sha"]) == ("draft", sha)
    assert stack.get("/d/site/").text == "head"
    assert by_host(stack, f"{shown_draft['id']}--site.localhost").text == "head"
    versions = stack.client.get("/api/slots/site/versions", headers=AUTH).json()
    # Two workers take the two jobs at once: either may reach the slot's lock first and get version 1.
    numbered = {v["status"]: v["version"] for v in versions["versions"]}
    assert len(versions["versions"]) == 2 and sorted(numbered.values()) == [1, 2]
    assert versions["active"] == numbered["active"] and "draft" in numbered
