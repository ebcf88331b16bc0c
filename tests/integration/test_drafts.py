"""Drafts: a deployment published without going live, made live later by a promote."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from drophost.client.http import EXIT_NOT_FOUND
from drophost.settings import Settings
from tests.harness.auth import AUTH
from tests.harness.stacks import LiveStack, Stack, running_stack
from tests.integration.test_cli import drophost, site
from tests.integration.test_host_names import by_host


def promote(stack: Stack, slot: str, deployment_id: int) -> tuple[int, dict[str, object]]:
    answer = stack.client.post(f"/api/slots/{slot}/promote", json={"deployment_id": deployment_id}, headers=AUTH)
    return answer.status_code, answer.json()


def test_a_draft_leaves_the_live_site_unchanged_until_it_is_promoted(stack: Stack) -> None:
    live = stack.deploy({"index.html": "one"}, "site").json()
    draft = stack.deploy({"index.html": "two"}, "site", activate="false")
    assert draft.status_code == 201, draft.text
    shown = draft.json()
    assert (shown["status"], shown["config_version"]) == ("draft", 2)
    assert stack.get("/d/site/").text == "one" and by_host(stack, "site.localhost").text == "one"
    versions = stack.client.get("/api/slots/site/versions", headers=AUTH).json()
    assert versions["active"] == 1
    assert [(v["version"], v["status"]) for v in versions["versions"]] == [(2, "draft"), (1, "active")]
    listed = stack.client.get("/api/deployments", headers=AUTH).json()["deployments"]
    assert [(d["id"], d["status"]) for d in listed] == [(shown["id"], "draft"), (live["id"], "live")]

    code, answer = promote(stack, "site", shown["id"])
    assert (code, answer) == (200, {"slot": "site", "active": 2, "deployment_id": shown["id"]})
    assert stack.get("/d/site/").text == "two" and by_host(stack, "site.localhost").text == "two"
    events = stack.client.get("/api/slots/site/events", headers=AUTH).json()["events"]
    assert [e["action"] for e in events][:2] == ["promote", "deploy"]
    listed = stack.client.get("/api/deployments", headers=AUTH).json()["deployments"]
    assert [d["status"] for d in listed] == ["live", "superseded"]
    # An earlier deployment can be promoted too: the same switch as a rollback.
    assert promote(stack, "site", live["id"])[0] == 200
    assert stack.get("/d/site/").text == "one"


def test_a_draft_of_a_new_slot_serves_nothing_until_promoted(stack: Stack) -> None:
    draft = stack.deploy({"index.html": "new"}, "fresh", activate="false").json()
    assert stack.get("/d/fresh/").status_code == 404
    assert promote(stack, "fresh", draft["id"])[0] == 200
    assert stack.get("/d/fresh/").text == "new"


def test_a_promote_of_a_failed_or_unknown_deployment_is_refused(stack: Stack) -> None:
    stack.deploy({"index.html": "one"}, "site")
    failed = stack.deploy({"index.html": "x", "_redirects": "/a\n"}, "site")
    assert failed.status_code == 422
    failed_id = failed.json()["deployment_id"]
    code, answer = promote(stack, "site", failed_id)
    assert code == 409 and "never published" in str(answer["error"])
    assert promote(stack, "site", 999)[0] == 404
    assert promote(stack, "other", 1)[0] == 404
    bad = stack.client.post("/api/slots/site/promote", json={"deployment_id": "1"}, headers=AUTH)
    assert bad.status_code == 422
    assert stack.deploy({"index.html": "x"}, "site", activate="maybe").status_code == 422


@pytest.fixture
def retaining_stack(settings: Settings) -> Iterator[Stack]:
    with running_stack(replace(settings, keep_versions=2)) as running:
        yield running


def test_a_promote_of_a_deployment_retention_removed_is_refused(retaining_stack: Stack) -> None:
    stack = retaining_stack
    first = stack.deploy({"index.html": "one"}, "site", activate="false").json()
    for n in range(3):
        stack.deploy({"index.html": f"later {n}"}, "site")
    code, answer = promote(stack, "site", first["id"])
    assert code == 409 and "retention" in str(answer["error"])
    assert stack.get("/d/site/").text == "later 2"


def test_the_cli_deploys_a_folder_as_a_draft_and_promotes_it(
    live: LiveStack, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    code, _, err = drophost(live, capsys, "deploy", str(site(tmp_path, "cli", {"index.html": "one"})))
    assert code == 0, err
    folder = site(tmp_path / "two", "cli", {"index.html": "two"})
    code, out, err = drophost(live, capsys, "deploy", str(folder), "--draft")
    assert code == 0, err
    assert out.splitlines() == [
        "cli: draft deployment 2 (version 2, 1 files); make it live with: drophost promote cli 2",
        f"permalink: http://2--cli.localhost:{live.settings.sites_listen_port}/",
    ]
    assert live.get("/d/cli/").text == "one"
    code, out, err = drophost(live, capsys, "promote", "cli", "2")
    assert (code, out.strip()) == (0, "cli now serves deployment 2 (version 2)")
    assert live.get("/d/cli/").text == "two"
    code, _, err = drophost(live, capsys, "promote", "cli", "99")
    assert code == EXIT_NOT_FOUND, err
