from __future__ import annotations

import json
from pathlib import Path

import psycopg
import pytest
from starlette.testclient import TestClient

from drophost.cli import main
from drophost.store import gitjobs
from drophost.store.migrate import migrate
from drophost.web.app import create_app
from tests.harness.auth import AUTH
from tests.harness.git import GitHttpServer
from tests.harness.gitjobs import queue_webhook_deploy
from tests.harness.stacks import GitopsFactory
from tests.harness.waiting import wait_for_deployment


def two_sites(server: GitHttpServer, *, b: bool = True, a_branch: str = "main") -> str:
    text = f"sites:\n  - slot: a\n    repo: {server.url('a')}\n    branch: {a_branch}\n"
    if b:
        text += f"  - slot: b\n    repo: {server.url('b')}\n"
    return text


def test_reload_applies_changes_and_a_removed_site_goes_offline(
    git_server: GitHttpServer, gitops_stack: GitopsFactory
) -> None:
    a, b = git_server.repo("a"), git_server.repo("b")
    a.commit({"index.html": "a main"})
    a.commit({"index.html": "a release"}, branch="release")
    b.commit({"index.html": "b"})
    stack = gitops_stack(two_sites(git_server))
    assert wait_for_deployment(stack, 1)["status"] == "live"
    assert wait_for_deployment(stack, 2)["status"] == "live"
    assert stack.get("/d/b/").text == "b"

    changed = two_sites(git_server, b=False, a_branch="release")
    plan = stack.client.post("/api/plan", content=changed.encode(), headers=AUTH).json()
    assert plan["changes"] == [
        {"action": "change", "slot": "a", "detail": "branch main -> release"},
        {"action": "remove", "slot": "b", "detail": "take offline (no longer in deploy.yaml; its history stays)"},
    ]
    assert plan["text"].splitlines()[-1] == "Plan: 0 to deploy, 1 to change, 1 to take offline."

    Path(stack.settings.config).write_text(changed)
    applied = stack.client.post("/api/reload", headers=AUTH).json()
    assert [c["action"] for c in applied["changes"]] == ["change", "remove"]
    assert stack.get("/d/b/").status_code == 404
    assert wait_for_deployment(stack, applied["queued"][0])["status"] == "live"
    assert stack.get("/d/a/").text == "a release"
    versions = stack.client.get("/api/slots/b/versions", headers=AUTH).json()
    assert versions["active"] is None and len(versions["versions"]) == 1  # its history stays
    again = stack.client.post("/api/plan", content=changed.encode(), headers=AUTH).json()
    assert again["changes"] == [{"action": "keep", "slot": "a", "detail": "unchanged"}]


def test_an_invalid_deploy_yaml_on_reload_changes_nothing(
    git_server: GitHttpServer, gitops_stack: GitopsFactory
) -> None:
    git_server.repo("a").commit({"index.html": "a"})
    git_server.repo("b").commit({"index.html": "b"})
    stack = gitops_stack(two_sites(git_server))
    assert [wait_for_deployment(stack, i)["status"] for i in (1, 2)] == ["live", "live"]
    Path(stack.settings.config).write_text("sites:\n  - slot: a\n    repo: file:///etc\n")
    answer = stack.client.post("/api/reload", headers=AUTH)
    assert answer.status_code == 422
    assert answer.json()["error"].startswith("deploy.yaml:3 sites[0].repo:")
    assert answer.json()["line"] == 3
    assert stack.get("/d/a/").text == "a" and stack.get("/d/b/").text == "b"
    bad_plan = stack.client.post("/api/plan", content=b"sites: [", headers=AUTH)
    assert bad_plan.status_code == 422 and "is not valid YAML" in bad_plan.json()["error"]


def test_queued_deploys_survive_a_restart(git_server: GitHttpServer, gitops_stack: GitopsFactory) -> None:
    repo = git_server.repo("a")
    repo.commit({"index.html": "first"})
    stack = gitops_stack(two_sites(git_server, b=False))
    assert wait_for_deployment(stack, 1)["status"] == "live"
    stack.client.app.state.gitops.stop()  # type: ignore[attr-defined]
    head = repo.commit({"index.html": "queued before the restart"})
    answer = stack.client.post(
        "/api/deployments", json={"repo": git_server.url("a"), "branch": "main", "slot": "a"}, headers=AUTH
    )
    assert answer.status_code == 202
    stack.client.__exit__(None, None, None)
    stack.client = TestClient(create_app(stack.settings, {}), raise_server_exceptions=False)
    with stack.client:
        row = wait_for_deployment(stack, answer.json()["id"])
        assert row["status"] == "live" and row["commit_sha"] == head
        assert stack.get("/d/a/").text == "queued before the restart"


def test_drophost_check(tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    good = Path(__file__).resolve().parents[3] / "deploy.yaml"
    monkeypatch.setenv("DOCS_HOOK_SECRET", "x")
    assert main(["check", str(good)]) == 0
    assert capsys.readouterr().out.splitlines()[-1] == "deploy.yaml: OK, 3 site(s)"
    monkeypatch.delenv("DOCS_HOOK_SECRET")
    # Unset where the check runs (a config repository's CI): a warning; --strict makes it an error.
    assert main(["check", str(good)]) == 0
    captured = capsys.readouterr()
    assert "warning: deploy.yaml:" in captured.err and "DOCS_HOOK_SECRET is not set here" in captured.err
    assert captured.out.splitlines()[-1] == "deploy.yaml: OK, 3 site(s), 2 warning(s)"
    assert main(["check", "--strict", str(good)]) == 1
    assert "DOCS_HOOK_SECRET is not set" in capsys.readouterr().err
    # Patterns are quoted as written, not as checked.
    patterns = tmp_path / "patterns.yaml"
    patterns.write_text('sites: []\nsources:\n  allow: ["http://127.0.0.1:*/*"]\n')
    assert main(["check", str(patterns)]) == 1
    assert capsys.readouterr().err == 'patterns.yaml:3 sources.allow[0]: "http://127.0.0.1:*/*" has an invalid port\n'
    branches = tmp_path / "branches.yaml"
    branches.write_text(
        'sites:\n  - slot: d-{branch}\n    repo: https://git.example.lan/x.git\n    branches: ["feat/*..x"]\n'
    )
    assert main(["check", str(branches)]) == 1
    assert '"feat/*..x" is not a valid branch name' in capsys.readouterr().err
    bad = tmp_path / "deploy.yaml"
    bad.write_text('sites:\n  - slot: "Docs!"\n    repo: https://git.example.lan/x.git\n')
    assert main(["check", str(bad)]) == 1
    assert capsys.readouterr().err.startswith('deploy.yaml:2 sites[0].slot: "Docs!" is not a valid slot name')


def test_plan_needs_the_token(git_server: GitHttpServer, gitops_stack: GitopsFactory) -> None:
    stack = gitops_stack("sites: []\n")
    assert stack.client.post("/api/plan", content=b"sites: []").status_code == 401
    assert stack.client.post("/api/reload").status_code == 401
    ok = stack.client.post("/api/plan", content=json.dumps({"sites": []}).encode(), headers=AUTH)
    assert ok.status_code == 200 and ok.json()["changes"] == []


def test_a_deploy_interrupted_while_building_is_queued_again_at_start(
    git_server: GitHttpServer, gitops_stack: GitopsFactory, database_url: str
) -> None:
    head = git_server.repo("a").commit({"index.html": "after the crash"})
    with psycopg.connect(database_url, autocommit=True) as conn:
        migrate(conn)
        interrupted = queue_webhook_deploy(conn, slot="a", repo=git_server.url("a"), pusher="ann").deployment_id
        assert gitjobs.claim_next(conn) is not None  # it was building when the service stopped
    stack = gitops_stack(two_sites(git_server, b=False))
    first = stack.client.get(f"/api/deployments/{interrupted}", headers=AUTH).json()
    assert first["status"] == "failed" and first["error"].startswith("interrupted")
    again = wait_for_deployment(stack, interrupted + 1)
    assert (again["status"], again["trigger"], again["pusher"], again["commit_sha"]) == ("live", "webhook", "ann", head)


def test_a_queued_deploy_for_a_slot_no_longer_declared_does_not_go_live(
    git_server: GitHttpServer, gitops_stack: GitopsFactory, database_url: str
) -> None:
    git_server.repo("a").commit({"index.html": "a"})
    with psycopg.connect(database_url, autocommit=True) as conn:
        migrate(conn)
        queued = queue_webhook_deploy(conn, slot="a", repo=git_server.url("a"), pusher=None).deployment_id
    stack = gitops_stack("sites: []\n")
    row = wait_for_deployment(stack, queued)
    assert row["status"] == "failed" and row["error"] == "cancelled: the slot is no longer declared in deploy.yaml"
    assert stack.get("/d/a/").status_code == 404
