"""Commit statuses (issue 17): a git deploy posts `pending`, then `success` or `failure`, to the forge
deploy.yaml names, through each forge's documented API. A local server on 127.0.0.1 stands in for the
forge and every request is checked against that provider's documentation:

- GitHub, "Create a commit status": POST /repos/{owner}/{repo}/statuses/{sha}, JSON state
  (error|failure|pending|success), target_url, description, context; `Authorization: Bearer <token>`.
  https://docs.github.com/en/rest/commits/statuses#create-a-commit-status
- GitLab, "Set the pipeline status of a commit": POST /projects/:id/statuses/:sha, `id` the project's
  URL-encoded path, state pending|running|success|failed|canceled, target_url, description, name;
  `PRIVATE-TOKEN: <token>`. https://docs.gitlab.com/api/commits/#set-the-pipeline-status-of-a-commit
- Gitea/Forgejo, repoCreateStatus: POST /repos/{owner}/{repo}/statuses/{sha}, state
  pending|success|error|failure|warning, target_url, description, context; `Authorization: token <token>`.
  https://gitea.com/api/swagger#/repository/repoCreateStatus
- Bitbucket Cloud, "Create a build status for a commit":
  POST /2.0/repositories/{workspace}/{repo_slug}/commit/{commit}/statuses/build, key, state
  INPROGRESS|SUCCESSFUL|FAILED|STOPPED, url (required), name, description; `Authorization: Bearer`.
  https://developer.atlassian.com/cloud/bitbucket/rest/api-group-commit-statuses/
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from collections.abc import Iterator
from dataclasses import replace
from importlib import resources
from pathlib import Path
from typing import Any

import psycopg
import pytest

from drophost.settings import Settings
from tests.harness.auth import AUTH
from tests.harness.git import GitHttpServer
from tests.harness.processes import start_nginx, stop_process
from tests.harness.receiver import Receiver
from tests.harness.stacks import GitopsFactory, Stack
from tests.harness.waiting import wait_for_deployment, wait_until
from tests.integration.service_process import ServiceProcess

TOKEN = "forge-token-that-must-never-show-0123456789"
ENV = {"FORGE_TOKEN": TOKEN}
REPO = "acme/site"

# provider, the api_url path the stand-in serves under, the status path (after it) and the auth header.
FORGES: dict[str, tuple[str, str, tuple[str, str]]] = {
    "github": ("/api/v3", "/repos/acme/site/statuses/{sha}", ("authorization", f"Bearer {TOKEN}")),
    "gitlab": ("/api/v4", "/projects/acme%2Fsite/statuses/{sha}", ("private-token", TOKEN)),
    "gitea": ("/api/v1", "/repos/acme/site/statuses/{sha}", ("authorization", f"token {TOKEN}")),
    "bitbucket": ("", "/2.0/repositories/acme/site/commit/{sha}/statuses/build", ("authorization", f"Bearer {TOKEN}")),
}
# The documented state words for pending, success and failure, and each body's fields.
WORDS = {
    "github": ("pending", "success", "failure"),
    "gitlab": ("running", "success", "failed"),
    "gitea": ("pending", "success", "failure"),
    "bitbucket": ("INPROGRESS", "SUCCESSFUL", "FAILED"),
}
FIELDS = {
    "github": {"state", "target_url", "description", "context"},
    "gitlab": {"state", "target_url", "description", "name"},
    "gitea": {"state", "target_url", "description", "context"},
    "bitbucket": {"key", "state", "url", "name", "description"},
}


@pytest.fixture
def forge() -> Iterator[Receiver]:
    receiver = Receiver()
    yield receiver
    receiver.close()


def status_yaml(git_server: GitHttpServer, forge: Receiver, provider: str, extra: str = "") -> str:
    prefix = FORGES[provider][0]
    return (
        "sites:\n"
        "  - slot: site\n"
        f"    repo: {git_server.url(REPO)}\n"
        "    branch: main\n"
        "    status:\n"
        f"      provider: {provider}\n"
        f"      api_url: {forge.url(prefix)}\n"
        "      token_env: FORGE_TOKEN\n" + extra
    )


def check_request(provider: str, request: Any, sha: str) -> dict[str, Any]:
    prefix, path, (header, value) = FORGES[provider]
    assert request.path == prefix + path.format(sha=sha)
    assert request.headers[header] == value
    assert request.headers["content-type"] == "application/json"
    assert request.headers["idempotency-key"]
    body: dict[str, Any] = request.json()
    assert set(body) == FIELDS[provider], body
    assert len(body["description"]) <= 140
    name = body["key"] if provider == "bitbucket" else body.get("context") or body.get("name")
    assert name in ("drophost/site", "drophost-site")
    return body


def link(provider: str, body: dict[str, Any]) -> str:
    return str(body["url"] if provider == "bitbucket" else body["target_url"])


@pytest.mark.parametrize("provider", sorted(FORGES))
def test_a_git_deploy_posts_pending_then_success_with_the_permalink(
    git_server: GitHttpServer, gitops_stack: GitopsFactory, forge: Receiver, provider: str
) -> None:
    head = git_server.repo(REPO).commit({"index.html": "<h1>hello</h1>"})
    stack = gitops_stack(status_yaml(git_server, forge, provider), ENV)
    deployment = wait_for_deployment(stack, 1)
    assert deployment["status"] == "live", deployment
    pending, success = forge.wait_for(2)
    first, second = check_request(provider, pending, head), check_request(provider, success, head)
    assert (first["state"], second["state"]) == WORDS[provider][:2]
    # Success links the deployment's own permalink (issue 14), as the API shows it.
    assert link(provider, second) == deployment["permalink"]
    assert second["description"] == f"Live at {deployment['url']}"
    assert link(provider, first) == deployment["url"]
    # Once each: the worker marked both sent.
    assert forge.accepted() == {pending.headers["idempotency-key"]: 1, success.headers["idempotency-key"]: 1}
    # Marked sent once the answer came (the row's transaction commits just after it).
    assert wait_until(lambda: [d["state"] for d in outbox(stack)] == ["sent", "sent"])
    shown = outbox(stack)
    assert [(d["kind"], d["target"], d["state"], d["attempts"]) for d in shown] == [
        ("status", provider, "sent", 1),
        ("status", provider, "sent", 1),
    ]
    assert {d["host"] for d in shown} == {f"127.0.0.1:{forge.port}"}


def test_a_failed_build_posts_pending_then_failure_with_the_reason(
    git_server: GitHttpServer, gitops_stack: GitopsFactory, forge: Receiver
) -> None:
    head = git_server.repo(REPO).commit({"index.html": "x"})
    build = "    build:\n      command: 'echo the build broke; exit 3'\n      output: dist\n"
    stack = gitops_stack(status_yaml(git_server, forge, "github", build), ENV, build_sandbox="none")
    deployment = wait_for_deployment(stack, 1)
    assert deployment["status"] == "failed", deployment
    pending, failure = forge.wait_for(2)
    first, second = check_request("github", pending, head), check_request("github", failure, head)
    assert (first["state"], second["state"]) == ("pending", "failure")
    assert second["description"].startswith("Deploy failed: ")
    assert second["description"][len("Deploy failed: ") :] in deployment["error"]


@pytest.fixture
def templates(tmp_path: Path) -> Path:
    folder = tmp_path / "templates"
    shutil.copytree(str(resources.files("drophost.nginx_templates")), folder)
    return folder


def test_a_deploy_nginx_rejects_posts_failure_and_the_fix_posts_success(
    git_server: GitHttpServer, gitops_stack: GitopsFactory, forge: Receiver, templates: Path
) -> None:
    good = (templates / "site.conf.j2").read_text()
    # A map entry with three values: nginx -t refuses the whole configuration (as test_nginx_rejects.py).
    (templates / "site.conf.j2").write_text(good + "{{ slot }}-broken drophost_bad_entry three;\n")
    repo = git_server.repo(REPO)
    head = repo.commit({"index.html": "one"})
    stack = gitops_stack(status_yaml(git_server, forge, "gitlab"), ENV, nginx_template_dir=str(templates))
    deployment = wait_for_deployment(stack, 1)
    assert deployment["status"] == "failed" and "nginx rejected" in deployment["error"]
    pending, failure = forge.wait_for(2)
    assert [check_request("gitlab", r, head)["state"] for r in (pending, failure)] == ["running", "failed"]

    path = templates / "site.conf.j2"
    path.write_text(good)
    stamp = path.stat().st_mtime + 10
    os.utime(path, (stamp, stamp))  # Jinja reloads a template whose modification time changed
    fixed = repo.commit({"index.html": "two"})
    assert stack.client.post("/api/reload", headers=AUTH).status_code == 200
    assert wait_until(lambda: len(forge.received()) >= 4)
    later = forge.received()[2:]
    assert [check_request("gitlab", r, fixed)["state"] for r in later] == ["running", "success"]


def test_a_token_the_forge_echoes_never_reaches_the_outbox_the_api_or_the_log(
    git_server: GitHttpServer, gitops_stack: GitopsFactory, forge: Receiver, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    forge.status = 401
    forge.answer = f'{{"message": "Bad credentials", "you sent": "Bearer {TOKEN}"}}'.encode()
    git_server.repo(REPO).commit({"index.html": "x"})
    stack = gitops_stack(status_yaml(git_server, forge, "github"), ENV)
    assert wait_for_deployment(stack, 1)["status"] == "live"
    assert wait_until(lambda: [d["state"] for d in outbox(stack)] == ["failed", "failed"])
    shown = stack.client.get("/api/outbox", headers=AUTH)
    # A 401 will not change by itself: failed at the first answer, with the reason, the token cut out.
    for delivery in shown.json()["deliveries"]:
        assert delivery["attempts"] == 1 and delivery["response_status"] == 401
        assert delivery["last_error"].startswith("401 Unauthorized: ") and "***" in delivery["last_error"]
    assert TOKEN not in shown.text
    assert TOKEN not in caplog.text
    with psycopg.connect(stack.settings.database_url) as conn:
        dump = conn.execute("SELECT row_to_json(o)::text FROM outbox o").fetchall()
    assert dump and all(TOKEN not in row[0] and "FORGE_TOKEN" in row[0] for row in dump)
    # The deploy is unaffected by its status failing.
    assert stack.get("/d/site/").text == "x"


def outbox(stack: Stack) -> list[dict[str, Any]]:
    answer = stack.client.get("/api/outbox", headers=AUTH)
    assert answer.status_code == 200, answer.text
    deliveries: list[dict[str, Any]] = answer.json()["deliveries"]
    return list(reversed(deliveries))


@pytest.mark.slow
def test_a_deploy_cut_short_by_sigkill_posts_failure_then_the_requeued_deploy_posts_success(
    git_server: GitHttpServer, forge: Receiver, settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    head = git_server.repo(REPO).commit({"index.html": "x"})
    mark = tmp_path / "built-once"
    # The first build hangs (and is killed with the service); the one queued again after the restart builds.
    command = f"if [ -e {mark} ]; then :; else touch {mark}; sleep 20; fi; mkdir -p dist && echo ok > dist/index.html"
    build = f"    build:\n      command: {json.dumps(command)}\n      output: dist\n"
    config = tmp_path / "deploy.yaml"
    config.write_text(status_yaml(git_server, forge, "github", build))
    monkeypatch.setenv("FORGE_TOKEN", TOKEN)
    chosen = replace(settings, config=str(config), poll_interval=0, build_sandbox="none")
    _, nginx_process = start_nginx(chosen)
    service = ServiceProcess(chosen, tmp_path / "service.log")
    try:
        service.start()
        (pending,) = forge.wait_for(1)
        assert check_request("github", pending, head)["state"] == "pending"
        # Killed once the pending status is recorded as sent (before that, it would be sent again).
        assert wait_until(lambda: sent_states(chosen) == ["sent"])
        service.kill()
        service.start()
        statuses = forge.wait_for(4)
        states = [check_request("github", r, head)["state"] for r in statuses]
        assert states == ["pending", "failure", "pending", "success"]
        assert "interrupted" in statuses[1].json()["description"]
        assert len({r.headers["idempotency-key"] for r in statuses}) == 4
    finally:
        service.kill()
        stop_process(nginx_process)


def sent_states(settings: Settings) -> list[str]:
    with psycopg.connect(settings.database_url) as conn:
        return [str(row[0]) for row in conn.execute("SELECT state FROM outbox ORDER BY id").fetchall()]
