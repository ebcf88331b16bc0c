from __future__ import annotations

from pathlib import Path

from tests.harness.auth import AUTH
from tests.harness.git import GitHttpServer
from tests.harness.stacks import GitopsFactory
from tests.harness.waiting import wait_for_deployment, wait_until


def test_polling_deploys_a_push_no_webhook_announced(git_server: GitHttpServer, gitops_stack: GitopsFactory) -> None:
    repo = git_server.repo("site")
    repo.commit({"index.html": "before"})
    stack = gitops_stack(f"poll_interval: 1s\nsites:\n  - slot: site\n    repo: {git_server.url('site')}\n")
    assert wait_for_deployment(stack, 1)["status"] == "live"
    head = repo.commit({"index.html": "found by polling"})
    assert wait_until(lambda: stack.get("/d/site/").text == "found by polling")
    newest = stack.client.get("/api/deployments?slot=site", headers=AUTH).json()["deployments"][0]
    # The new release is served a moment before its deployment is recorded as live.
    newest = wait_for_deployment(stack, newest["id"])
    assert (newest["trigger"], newest["commit_sha"], newest["status"]) == ("poll", head, "live")
    # An unchanged branch is not deployed again.
    requests = git_server.requests
    assert wait_until(lambda: git_server.requests > requests + 1)
    assert len(stack.client.get("/api/deployments?slot=site", headers=AUTH).json()["deployments"]) == 2


def test_deploy_yaml_poll_interval_wins_over_the_setting(
    git_server: GitHttpServer, gitops_stack: GitopsFactory
) -> None:
    stack = gitops_stack("sites: []\n", poll_interval=0)
    gitops = stack.client.app.state.gitops  # type: ignore[attr-defined]
    assert gitops.poller.interval() == 0
    Path(stack.settings.config).write_text("poll_interval: 2m\nsites: []\n")
    assert stack.client.post("/api/reload", headers=AUTH).status_code == 200
    assert gitops.poller.interval() == 120


def test_polling_creates_and_removes_preview_slots(git_server: GitHttpServer, gitops_stack: GitopsFactory) -> None:
    repo = git_server.repo("site")
    repo.commit({"index.html": "main"})
    url = git_server.url("site")
    stack = gitops_stack(
        f'poll_interval: 1s\nsites:\n  - slot: site\n    repo: {url}\n  - slot: "pre-{{branch}}"\n    repo: {url}\n'
        '    branches: ["feature/*"]\n'
    )
    assert wait_for_deployment(stack, 1)["status"] == "live"
    repo.commit({"index.html": "preview"}, branch="feature/poll")
    assert wait_until(lambda: stack.get("/d/pre-feature-poll/").text == "preview")
    repo.delete_branch("feature/poll")
    assert wait_until(lambda: stack.get("/d/pre-feature-poll/").status_code == 404)

    def statuses() -> dict[str, str]:
        return {s["slot"]: s["status"] for s in stack.client.get("/api/slots", headers=AUTH).json()["slots"]}

    # nginx stops serving the slot a moment before PostgreSQL records it offline.
    assert wait_until(lambda: statuses() == {"site": "live", "pre-feature-poll": "offline"})
