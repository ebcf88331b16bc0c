"""The audit log's git actors, deploy locks, a rollback that locks, and drift from a forced upload."""

from __future__ import annotations

import json

from tests.harness.auth import AUTH
from tests.harness.git import GitHttpServer
from tests.harness.stacks import GitopsFactory, Stack
from tests.harness.waiting import wait_for_deployment, wait_until
from tests.harness.webhooks import ENV, hex_hmac, site_yaml
from tests.harness.zips import make_zip
from tests.integration.test_host_names import by_host


def audit(stack: Stack, **filters: str) -> list[dict[str, str]]:
    entries: list[dict[str, str]] = stack.client.get("/api/audit", params=filters, headers=AUTH).json()["entries"]
    return entries


def push_webhook(stack: Stack, git_server: GitHttpServer) -> list[int]:
    body = json.dumps({"repo": git_server.url("site"), "branch": "main", "pusher": "ann"}).encode()
    answer = stack.client.post(
        "/api/webhooks/generic", content=body, headers={"X-Signature": "sha256=" + hex_hmac(body)}
    )
    assert answer.status_code == 202, answer.text
    queued: list[int] = answer.json()["queued"]
    return queued


def upload(stack: Stack, slot: str, text: str, **data: str) -> tuple[int, dict[str, str]]:
    answer = stack.client.post(
        "/api/deployments",
        files={"file": (f"{slot}.zip", make_zip({"index.html": text}), "application/zip")},
        data={"slot": slot, **data},
        headers=AUTH,
    )
    return answer.status_code, answer.json()


def test_git_deploys_are_audited_with_their_actor(git_server: GitHttpServer, gitops_stack: GitopsFactory) -> None:
    repo = git_server.repo("site")
    repo.commit({"index.html": "0"})
    stack = gitops_stack("poll_interval: 1s\n" + site_yaml(git_server, "site", "main"), ENV)
    assert wait_for_deployment(stack, 1)["status"] == "live"
    repo.commit({"index.html": "by webhook"})
    [queued] = push_webhook(stack, git_server)
    assert wait_for_deployment(stack, queued)["status"] == "live"
    repo.commit({"index.html": "by polling"})
    assert wait_until(lambda: stack.get("/d/site/").text == "by polling")
    # The outcome's row is written once the new version is live, so a moment after it is served.
    assert wait_until(lambda: "poll" in [e["actor"] for e in audit(stack, target="site", action="git_deploy_result")])
    actors = [e["actor"] for e in audit(stack, target="site", action="git_deploy")]
    assert actors[-1] == "deploy.yaml"
    assert "webhook:generic" in actors and "poll" in actors
    assert all(e["result"].startswith(("queued deployment", "joined")) for e in audit(stack, action="git_deploy"))
    # How each ended is a second row, named after the same actor.
    ended = {e["detail"].split(" of ")[0]: e for e in audit(stack, target="site", action="git_deploy_result")}
    assert ended["deployment 1"]["actor"] == "deploy.yaml" and ended["deployment 1"]["result"] == "live"
    assert ended[f"deployment {queued}"]["actor"] == "webhook:generic"
    assert ended[f"deployment {queued}"]["result"] in ("live", "superseded")
    assert "poll" in [e["actor"] for e in ended.values()]


def test_an_api_repo_deploy_audits_its_outcome_with_the_caller(
    git_server: GitHttpServer, gitops_stack: GitopsFactory
) -> None:
    repo = git_server.repo("site")
    repo.commit({"index.html": "0"})
    stack = gitops_stack(site_yaml(git_server, "site", "main"), ENV)
    assert wait_for_deployment(stack, 1)["status"] == "live"
    body = {"repo": git_server.url("site"), "branch": "main", "slot": "copy"}
    answer = stack.client.post("/api/deployments", json=body, headers=AUTH)
    assert answer.status_code == 202, answer.text
    assert wait_for_deployment(stack, answer.json()["id"])["status"] == "live"
    missing = {"repo": git_server.url("site"), "branch": "nope", "slot": "broken"}
    failed = stack.client.post("/api/deployments", json=missing, headers=AUTH)
    assert failed.status_code == 202  # a branch the remote lacks fails in the worker, not at the door
    assert wait_for_deployment(stack, failed.json()["id"])["status"] == "failed"
    [row] = audit(stack, target="broken", action="git_deploy_result")
    assert row["result"] == "failed" and row["actor"] == "bootstrap" and 'branch "nope"' in row["detail"]
    [queued] = audit(stack, target="copy", action="git_deploy")
    [ended] = audit(stack, target="copy", action="git_deploy_result")
    assert ended["actor"] == queued["actor"] == "bootstrap" and ended["result"] == "live"
    assert ended["detail"].startswith(f"deployment {answer.json()['id']} of {git_server.url('site')} main commit ")


def test_a_locked_slot_builds_pushes_but_serves_nothing_new(
    git_server: GitHttpServer, gitops_stack: GitopsFactory
) -> None:
    repo = git_server.repo("site")
    repo.commit({"index.html": "first"})
    stack = gitops_stack(site_yaml(git_server, "site", "main"), ENV)
    assert wait_for_deployment(stack, 1)["status"] == "live"
    locked = stack.client.post("/api/slots/site/lock", json={"reason": "release freeze"}, headers=AUTH)
    assert locked.status_code == 200 and locked.json()["locked"] is True
    page = stack.client.get("/api/slots", headers=AUTH)
    assert page.status_code == 200
    repo.commit({"index.html": "second"})
    [queued] = push_webhook(stack, git_server)
    kept = wait_for_deployment(stack, queued)
    assert kept["status"] == "draft" and kept["error"].startswith("slot is locked (release freeze")
    assert stack.get("/d/site/").text == "first"
    assert by_host(stack, f"{kept['id']}--site.localhost").text == "second"
    promoted = stack.client.post("/api/slots/site/promote", json={"deployment_id": kept["id"]}, headers=AUTH)
    assert promoted.status_code == 200 and promoted.json()["deployment_id"] == kept["id"]
    assert stack.get("/d/site/").text == "second"
    assert stack.client.post("/api/slots/site/unlock", headers=AUTH).json()["was_locked"] is True
    repo.commit({"index.html": "third"})
    [queued] = push_webhook(stack, git_server)
    assert wait_for_deployment(stack, queued)["status"] == "live"
    assert stack.get("/d/site/").text == "third"
    actions = [(e["action"], e["result"]) for e in audit(stack, target="site")]
    assert ("lock_slot", "200") in actions and ("unlock_slot", "200") in actions and ("promote", "200") in actions


def test_a_rollback_of_a_git_slot_locks_it_and_says_why(git_server: GitHttpServer, gitops_stack: GitopsFactory) -> None:
    repo = git_server.repo("site")
    repo.commit({"index.html": "one"})
    stack = gitops_stack(site_yaml(git_server, "site", "main"), ENV)
    assert wait_for_deployment(stack, 1)["status"] == "live"
    repo.commit({"index.html": "two"})
    [queued] = push_webhook(stack, git_server)
    assert wait_for_deployment(stack, queued)["status"] == "live"
    rolled = stack.client.post("/api/slots/site/rollback", json={}, headers=AUTH)
    assert rolled.status_code == 200 and rolled.json() == {"slot": "site", "active": 1, "locked": True}
    repo.commit({"index.html": "three"})
    [queued] = push_webhook(stack, git_server)
    assert wait_for_deployment(stack, queued)["status"] == "draft"
    assert stack.get("/d/site/").text == "one"
    # The dashboard shows the lock and its reason.
    stack.client.post("/signin", data={"token": AUTH["Authorization"][7:]}, follow_redirects=False)
    page = stack.client.get("/slots/site").text
    assert "locked" in page and "rolled back by hand to version 1" in page


def test_an_upload_to_a_git_slot_is_refused_unless_forced_and_then_shows_as_drift(
    git_server: GitHttpServer, gitops_stack: GitopsFactory
) -> None:
    repo = git_server.repo("site")
    repo.commit({"index.html": "from git"})
    stack = gitops_stack(site_yaml(git_server, "site", "main"), ENV)
    assert wait_for_deployment(stack, 1)["status"] == "live"
    status, answer = upload(stack, "site", "by hand")
    assert status == 409 and answer["repository"] == git_server.url("site") and "deploy.yaml" in answer["error"]
    digest = stack.client.post("/api/uploads", json={"slot": "site", "files": {}}, headers=AUTH)
    assert digest.status_code == 409
    status, answer = upload(stack, "site", "by hand", force="true")
    assert status == 201
    assert stack.get("/d/site/").text == "by hand"
    plan = stack.client.post("/api/plan", content=site_yaml(git_server, "site", "main").encode(), headers=AUTH).json()
    assert {"action": "drift", "slot": "site"}.items() <= plan["changes"][0].items()
    assert "! site" in plan["text"] and "forced upload" in plan["text"] and "Drift: 1 slot(s)" in plan["text"]
    # Another slot takes uploads as before.
    assert upload(stack, "other", "free")[0] == 201
    # The dashboard marks the same drift, on the overview and the slot page, and only there.
    stack.client.post("/signin", data={"token": AUTH["Authorization"][7:]}, follow_redirects=False)
    overview = stack.client.get("/ui/overview").text
    assert overview.count(">drift</span>") == 1
    site_row = overview[overview.index('data-slot="site"') :]
    assert ">drift</span>" in site_row[: site_row.index("</tr>")]
    page = stack.client.get("/slots/site").text
    assert 'id="slot-drift"' in page and "serves a forced upload" in page
    assert 'id="slot-drift"' not in stack.client.get("/slots/other").text
