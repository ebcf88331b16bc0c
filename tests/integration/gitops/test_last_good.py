"""An invalid deploy.yaml never stops serving: the last good one (kept in PostgreSQL) stays in force."""

from __future__ import annotations

import hashlib
from pathlib import Path

import psycopg
import pytest
from starlette.testclient import TestClient

from drophost.web.app import create_app
from tests.harness.auth import AUTH, TOKEN
from tests.harness.git import GitHttpServer, Repo
from tests.harness.manifests import HOSTILE, Hostile
from tests.harness.stacks import GitopsFactory, Stack
from tests.harness.waiting import wait_for_deployment

# Line 3 names a key deploy.yaml does not have.
UNKNOWN_KEY = "sites:\n  - slot: a\n    colour: blue\n    repo: https://git.example.lan/a.git\n"
UNKNOWN_KEY_ERROR = "deploy.yaml:3 sites[0].colour: is not a known key"


def two_sites(server: GitHttpServer, *, b: bool = True) -> str:
    text = f"sites:\n  - slot: a\n    repo: {server.url('a')}\n"
    if b:
        text += f"  - slot: b\n    repo: {server.url('b')}\n"
    return text


def started_with_two_live_sites(git_server: GitHttpServer, gitops_stack: GitopsFactory) -> tuple[Stack, Repo]:
    """The stack and repository b."""
    git_server.repo("a").commit({"index.html": "a"})
    b = git_server.repo("b")
    b.commit({"index.html": "b"})
    stack = gitops_stack(two_sites(git_server))
    assert [wait_for_deployment(stack, i)["status"] for i in (1, 2)] == ["live", "live"]
    return stack, b


def restart(stack: Stack) -> None:
    """A new app over the same database, nginx and data directory (as after a crash or an upgrade)."""
    stack.client.__exit__(None, None, None)
    stack.client = TestClient(create_app(stack.settings, {}), raise_server_exceptions=False)
    stack.client.__enter__()


def managed(database_url: str) -> list[str]:
    with psycopg.connect(database_url, autocommit=True) as conn:
        return [row[0] for row in conn.execute("SELECT slot FROM managed_slots ORDER BY slot").fetchall()]


def test_an_invalid_file_on_reload_keeps_the_last_good_state_until_fixed(
    git_server: GitHttpServer, gitops_stack: GitopsFactory
) -> None:
    stack, b = started_with_two_live_sites(git_server, gitops_stack)
    good = Path(stack.settings.config).read_bytes()
    assert stack.client.get("/health").json()["status"] == "ok"

    Path(stack.settings.config).write_text(UNKNOWN_KEY)
    answer = stack.client.post("/api/reload", headers=AUTH)
    assert answer.status_code == 422
    assert answer.json()["error"].startswith(UNKNOWN_KEY_ERROR)
    assert (answer.json()["line"], answer.json()["field"]) == (3, "sites[0].colour")
    # Nothing declared goes offline, and the file in force is still the good one.
    assert stack.get("/d/a/").text == "a" and stack.get("/d/b/").text == "b"
    assert sorted(stack.client.app.state.gitops.manifest.fixed_sites()) == ["a", "b"]  # type: ignore[attr-defined]

    health = stack.client.get("/health")
    # Degraded, not down: every site is served.
    assert health.status_code == 200 and health.json()["status"] == "degraded"
    config = health.json()["config"]
    assert config["error"].startswith(UNKNOWN_KEY_ERROR) and config["since"]
    assert config["in_force"]["sha256"] == hashlib.sha256(good).hexdigest()

    plan = stack.client.post("/api/plan", content=good, headers=AUTH).json()
    assert plan["config"]["error"].startswith(UNKNOWN_KEY_ERROR)
    assert f"The service's deploy.yaml is invalid since {config['since'][:10]}" in plan["text"]
    assert f"Meanwhile the last good deploy.yaml (sha256 {config['in_force']['sha256'][:12]}" in plan["text"]

    stack.client.post("/signin", data={"token": TOKEN, "next": "/"}, follow_redirects=False)
    banner = stack.client.get("/").text
    assert 'id="config-error"' in banner and "sites[0].colour: is not a known key" in banner
    assert "stays in force" in banner

    # A second invalid reload keeps when the trouble started.
    Path(stack.settings.config).write_bytes(b"sites: []\n# \x1b[31m\n")
    answer = stack.client.post("/api/reload", headers=AUTH)
    assert answer.status_code == 422 and answer.json()["line"] == 2
    assert stack.client.get("/health").json()["config"]["since"] == config["since"]

    # Fixed (b removed): the reload applies it and /health is ok again.
    Path(stack.settings.config).write_text(two_sites(git_server, b=False))
    applied = stack.client.post("/api/reload", headers=AUTH)
    assert applied.status_code == 200, applied.text
    assert [c["action"] for c in applied.json()["changes"]] == ["keep", "remove"]
    assert stack.get("/d/b/").status_code == 404 and stack.get("/d/a/").text == "a"
    healthy = stack.client.get("/health").json()
    assert healthy["status"] == "ok" and "config" not in healthy
    assert 'id="config-error"' not in stack.client.get("/").text


def test_a_restart_over_a_broken_file_serves_and_reconciles_with_the_stored_state(
    git_server: GitHttpServer, gitops_stack: GitopsFactory, database_url: str
) -> None:
    stack, b = started_with_two_live_sites(git_server, gitops_stack)
    good = Path(stack.settings.config).read_bytes()
    Path(stack.settings.config).write_bytes(b"sites:\n  - slot: a\n    repo: x # \x00\n")
    restart(stack)

    assert stack.get("/d/a/").text == "a" and stack.get("/d/b/").text == "b"
    assert managed(database_url) == ["a", "b"]
    health = stack.client.get("/health").json()
    assert health["status"] == "degraded"
    assert health["config"]["error"].startswith("deploy.yaml:3: has a control character (U+0000)")
    assert health["config"]["in_force"]["sha256"] == hashlib.sha256(good).hexdigest()
    # The stored state is in force: a deploy of a declared slot goes through it.
    head = b.commit({"index.html": "b again"})
    queued = stack.client.post("/api/deployments", json={"repo": git_server.url("b"), "slot": "b"}, headers=AUTH)
    assert queued.status_code == 202, queued.text
    row = wait_for_deployment(stack, queued.json()["id"])
    assert (row["status"], row["commit_sha"]) == ("live", head)
    assert stack.get("/d/b/").text == "b again"


def test_a_broken_file_with_nothing_stored_declares_nothing_and_takes_nothing_offline(
    git_server: GitHttpServer, gitops_stack: GitopsFactory, database_url: str
) -> None:
    stack, _ = started_with_two_live_sites(git_server, gitops_stack)
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("DELETE FROM declared_state")  # as after an upgrade from a version that kept none
    Path(stack.settings.config).write_text(UNKNOWN_KEY)
    restart(stack)

    assert stack.get("/d/a/").text == "a" and stack.get("/d/b/").text == "b"
    assert managed(database_url) == ["a", "b"]
    assert stack.client.app.state.gitops.manifest.sites == ()  # type: ignore[attr-defined]
    config = stack.client.get("/health").json()["config"]
    assert config["error"].startswith(UNKNOWN_KEY_ERROR) and config["in_force"] is None
    plan = stack.client.post("/api/plan", content=b"sites: []\n", headers=AUTH).json()
    assert "Meanwhile no deploy.yaml was ever applied" in plan["text"]


@pytest.mark.parametrize("case", HOSTILE, ids=[case.name for case in HOSTILE])
def test_a_hostile_file_is_a_4xx_sentence_for_plan_and_reload(
    case: Hostile, git_server: GitHttpServer, gitops_stack: GitopsFactory
) -> None:
    git_server.repo("a").commit({"index.html": "a"})
    stack = gitops_stack(two_sites(git_server, b=False))
    assert wait_for_deployment(stack, 1)["status"] == "live"

    plan = stack.client.post("/api/plan", content=case.raw, headers=AUTH)
    if len(case.raw) > 256 * 1024:  # past the route's body cap: refused before it is read
        assert plan.status_code == 413
        assert plan.json()["error"].startswith("the request body is larger than the limit")
    else:
        assert plan.status_code == 422, plan.text
        assert plan.json()["error"].startswith(case.starts) and case.says in plan.json()["error"]
    assert "Traceback" not in plan.text

    Path(stack.settings.config).write_bytes(case.raw)
    reload = stack.client.post("/api/reload", headers=AUTH)
    assert reload.status_code == 422, reload.text
    assert reload.json()["error"].startswith(case.starts) and case.says in reload.json()["error"]
    assert "Traceback" not in reload.text
    assert stack.get("/d/a/").text == "a"
    assert stack.client.get("/health").json()["status"] == "degraded"
