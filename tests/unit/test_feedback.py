"""Outgoing feedback planned and rendered (pure): which outbox rows a change makes, each forge's request
and each notification body, the URL allow-list, deploy.yaml's keys, the backoff."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from drophost.gitops.delivery import backoff
from drophost.gitops.manifest import forge_project, parse, secret_problems
from drophost.gitops.repourls import parse_repo_url
from drophost.pipeline import feedback, messages
from drophost.pipeline.feedback import FeedbackConfig, Notifier, StatusSpec, check_url
from drophost.settings import Settings

SETTINGS = Settings(data_dir=Path("/tmp/dh"), sites_domain="sites.lan", sites_url="https://sites.lan")
SHA = "0123456789abcdef0123456789abcdef01234567"
ROW: dict[str, Any] = {
    "id": 12,
    "slot": "docs",
    "source": "git",
    "state": "ready",
    "repo": "https://github.com/acme/docs.git",
    "branch": "main",
    "commit_sha": SHA,
    "error": None,
}


def spec(provider: str, project: str = "acme/docs") -> StatusSpec:
    return StatusSpec(provider, feedback.DEFAULT_API_URLS[provider], "FORGE_TOKEN", project)


@pytest.mark.parametrize(
    ("provider", "url", "state"),
    [
        # https://docs.github.com/en/rest/commits/statuses#create-a-commit-status
        ("github", f"https://api.github.com/repos/acme/docs/statuses/{SHA}", "success"),
        # https://docs.gitlab.com/api/commits/#set-the-pipeline-status-of-a-commit (id: the URL-encoded path)
        ("gitlab", f"https://gitlab.com/api/v4/projects/acme%2Fdocs/statuses/{SHA}", "success"),
        # https://gitea.com/api/swagger#/repository/repoCreateStatus
        ("gitea", f"https://gitea.com/api/v1/repos/acme/docs/statuses/{SHA}", "success"),
        # https://developer.atlassian.com/cloud/bitbucket/rest/api-group-commit-statuses/
        (
            "bitbucket",
            f"https://api.bitbucket.org/2.0/repositories/acme/docs/commit/{SHA}/statuses/build",
            "SUCCESSFUL",
        ),
    ],
)
def test_each_forge_gets_its_documented_path_and_state(provider: str, url: str, state: str) -> None:
    config = FeedbackConfig(
        status_for=lambda slot, branch: spec(provider) if (slot, branch) == ("docs", "main") else None
    )
    (message,) = feedback.deployment_messages(config, SETTINGS, ROW, feedback.SUCCESS, permalink_served=True)
    body = json.loads(message.body)
    assert (message.kind, message.target, message.url, message.secret_env) == ("status", provider, url, "FORGE_TOKEN")
    assert body["state"] == state
    assert body.get("target_url", body.get("url")) == "https://12--docs.sites.lan/"
    assert body["description"] == "Live at https://docs.sites.lan/"


def test_gitlab_groups_are_one_url_encoded_id_and_states_follow_the_docs() -> None:
    url, body = messages.status_request(
        "gitlab",
        "http://git.lan/api/v4/",
        "team/web/docs",
        SHA,
        "pending",
        target_url="u",
        description="d",
        context="c",
    )
    assert url == f"http://git.lan/api/v4/projects/team%2Fweb%2Fdocs/statuses/{SHA}"
    assert body == {"state": "running", "target_url": "u", "description": "d", "name": "c"}
    assert messages.STATES["gitlab"]["failure"] == "failed"
    assert messages.STATES["bitbucket"] == {"pending": "INPROGRESS", "success": "SUCCESSFUL", "failure": "FAILED"}


def test_auth_headers_are_each_forges_documented_one() -> None:
    assert messages.auth_headers("github", "t")["Authorization"] == "Bearer t"
    assert messages.auth_headers("gitlab", "t") == {"PRIVATE-TOKEN": "t"}
    assert messages.auth_headers("gitea", "t") == {"Authorization": "token t"}
    assert messages.auth_headers("bitbucket", "t") == {"Authorization": "Bearer t"}


def test_a_failure_status_gives_the_reason_within_140_characters_and_links_no_permalink() -> None:
    config = FeedbackConfig(status_for=lambda slot, branch: spec("github"))
    row = {**ROW, "state": "failed", "error": "build failed (exit 3)\n" + "x" * 500}
    (status,) = feedback.deployment_messages(config, SETTINGS, row, feedback.FAILURE, permalink_served=True)
    body = json.loads(status.body)
    assert body["state"] == "failure" and body["description"] == "Deploy failed: build failed (exit 3)"
    assert body["target_url"] == "https://docs.sites.lan/"
    long = {**ROW, "state": "failed", "error": "y" * 500}
    (status,) = feedback.deployment_messages(config, SETTINGS, long, feedback.FAILURE, permalink_served=True)
    assert len(json.loads(status.body)["description"]) == 140


def test_zip_deploys_and_drafts_make_no_status_and_keys_differ_per_state() -> None:
    config = FeedbackConfig(status_for=lambda slot, branch: spec("github"))
    assert (
        feedback.deployment_messages(config, SETTINGS, {**ROW, "source": "zip"}, "success", permalink_served=True) == []
    )
    pending = feedback.deployment_messages(config, SETTINGS, ROW, "pending", permalink_served=True)
    success = feedback.deployment_messages(config, SETTINGS, ROW, "success", permalink_served=True)
    assert pending[0].key != success[0].key and pending[0].stream == success[0].stream
    (draft,) = feedback.deployment_messages(config, SETTINGS, ROW, "success", permalink_served=True, draft=True)
    assert json.loads(draft.body)["description"].startswith("Published as a draft, not live")


def test_notifiers_get_only_their_events_and_slots() -> None:
    notifiers = (
        Notifier("https://h.lan/a", "json", ("live",), secret_env="S"),
        Notifier("https://h.lan/b", "slack", ("failed",)),
        Notifier("https://h.lan/c", "teams", ("live",), slots=("docs-*",)),
    )
    config = FeedbackConfig(notifiers=notifiers)
    live = feedback.deployment_messages(config, SETTINGS, {**ROW, "source": "zip"}, "success", permalink_served=True)
    assert [(m.target, m.event, m.secret_env) for m in live] == [("json", "live", "S")]
    preview = {**ROW, "slot": "docs-pr-1"}
    assert [
        m.target for m in feedback.deployment_messages(config, SETTINGS, preview, "success", permalink_served=False)
    ] == [
        "json",
        "teams",
    ]
    failed = feedback.deployment_messages(
        config, SETTINGS, {**ROW, "state": "failed"}, "failure", permalink_served=False
    )
    assert [m.target for m in failed] == ["slack"]


def facts(event: str, **extra: Any) -> dict[str, Any]:
    base = {
        "id": "k",
        "event": event,
        "slot": "docs",
        "deployment_id": 12,
        "url": "https://docs.sites.lan/",
        "permalink": "https://12--docs.sites.lan/",
        "dashboard": None,
        "commit": SHA,
    }
    return {**base, **extra}


def test_notification_bodies_follow_each_format() -> None:
    text = "DropHost: docs is live at https://docs.sites.lan/ (deployment 12, commit 0123456789ab)"
    assert messages.notification_body("json", facts("live"))["text"] == text
    slack = messages.notification_body("slack", facts("failed", error="<script> & co"))
    assert slack == {
        "text": "DropHost: docs deploy failed (deployment 12, commit 0123456789ab): &lt;script&gt; &amp; co"
    }
    matrix = messages.notification_body("matrix", facts("rollback", version=3, error=None))
    assert matrix["username"] == "DropHost" and matrix["html"].endswith(
        '<a href="https://12--docs.sites.lan/">open</a>'
    )
    teams = messages.notification_body("teams", facts("offline"))
    card = teams["attachments"][0]["content"]
    assert card["type"] == "AdaptiveCard" and "actions" not in card  # nothing to open on a slot taken offline
    expiring = messages.notification_body("json", facts("expiring", expires_at="2026-01-01T00:00:00+00:00"))
    assert expiring["text"].endswith(
        "expires within the hour (deployment 12, commit 0123456789ab, at 2026-01-01T00:00:00+00:00)"
    )


def test_slot_events_are_keyed_by_what_changed() -> None:
    config = FeedbackConfig(notifiers=(Notifier("https://h.lan/a", "json", feedback.EVENTS),))
    one = feedback.slot_messages(config, SETTINGS, event="rollback", slot="docs", subject="7", row=ROW, version=2)
    two = feedback.slot_messages(config, SETTINGS, event="rollback", slot="docs", subject="8", row=ROW, version=2)
    assert one[0].key != two[0].key
    when = datetime(2026, 1, 1, tzinfo=UTC)
    (expiring,) = feedback.slot_messages(
        config, SETTINGS, event="expiring", slot="docs", subject="docs-1", row=None, expires_at=when
    )
    assert json.loads(expiring.body)["expires_at"] == "2026-01-01T00:00:00+00:00"


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("https://hooks.example.lan/x", None),
        ("http://10.0.0.5:8080/hook?room=ops", None),
        ("ftp://hooks.example.lan/x", "must be an http:// or https:// URL"),
        ("javascript:alert(1)", "must be an http:// or https:// URL"),
        ("https://user:pw@hooks.example.lan/x", "must not hold credentials"),
        ("https://token@hooks.example.lan/x", "must not hold credentials"),
        ("https://hooks.example.lan/x#frag", "must not have a #fragment"),
        ("https:///x", "has no host name"),
        ("https://hooks.example.lan/a b", "must be a URL of printable ASCII"),
        ("https://hooks.example.lan:99999/x", "is not a valid URL"),
        ("https://hooks.exämple.lan/x", "must be a URL of printable ASCII"),
    ],
)
def test_destinations_are_allow_listed(url: str, reason: str | None) -> None:
    if reason is None:
        assert check_url(url) == url
        return
    with pytest.raises(ValueError, match=reason.replace("(", r"\(").replace("?", r"\?")):
        check_url(url)


def test_the_api_url_takes_no_query_and_hosts_are_shown_without_paths() -> None:
    with pytest.raises(ValueError, match="must not have a"):
        check_url("https://api.github.com/?x=1", query=False)
    assert feedback.host_of("https://hooks.slack.com/services/T0/B0/SECRET") == "hooks.slack.com"


@pytest.mark.parametrize(
    ("repo", "project"),
    [
        ("https://github.com/acme/docs.git", "acme/docs"),
        ("https://gitlab.lan/team/web/docs", "team/web/docs"),
        ("ssh://git@gitea.lan:2222/acme/docs.git", "acme/docs"),
        ("git@bitbucket.org:acme/docs.git", "acme/docs"),
        ("https://git.lan/docs.git", None),
        ("hosted:docs", None),
    ],
)
def test_the_forge_project_comes_from_the_repository_url(repo: str, project: str | None) -> None:
    assert forge_project(parse_repo_url(repo)) == project


def test_deploy_yaml_declares_statuses_and_notifications() -> None:
    manifest = parse(
        b"sites:\n"
        b"  - slot: docs\n    repo: https://git.lan/team/docs.git\n"
        b"    status: {provider: gitea, api_url: 'https://git.lan/api/v1', token_env: GITEA_TOKEN}\n"
        b"  - slot: web\n    repo: https://github.com/acme/web.git\n    status: {provider: github, token_env: GH}\n"
        b"notifications:\n"
        b"  - {url: 'https://chat.lan/hook', format: matrix, events: [failed, expired], slots: [docs]}\n"
        b"  - {url: 'https://ops.lan/in', format: json, events: [live, live], secret_env: OPS_SECRET}\n"
    )
    docs, web = manifest.sites
    assert docs.status == StatusSpec("gitea", "https://git.lan/api/v1", "GITEA_TOKEN", "team/docs")
    assert web.status == StatusSpec("github", "https://api.github.com", "GH", "acme/web")
    assert manifest.notifications[0] == Notifier(
        "https://chat.lan/hook", "matrix", ("failed", "expired"), None, ("docs",)
    )
    assert manifest.notifications[1].events == ("live",)
    config = manifest.feedback()
    assert config.status_for("web", "main") == web.status and config.status_for("other", "main") is None
    assert secret_problems(manifest, {"GH": "x"}) == [
        "deploy.yaml:2 sites[0].status.token_env: GITEA_TOKEN is not set",
        "deploy.yaml notifications[1].secret_env: OPS_SECRET is not set",
    ]


def test_backoff_doubles_up_to_an_hour() -> None:
    assert [backoff(5.0, n) for n in (1, 2, 3, 4)] == [5.0, 10.0, 20.0, 40.0]
    assert backoff(5.0, 40) == 3600.0


DOCUMENTED = json.loads(
    (Path(__file__).resolve().parents[1] / "fixtures" / "feedback" / "status_requests.json").read_text()
)


@pytest.mark.parametrize("provider", feedback.PROVIDERS)
def test_status_requests_stay_inside_what_each_forge_documents(provider: str) -> None:
    documented = DOCUMENTED[provider]
    # The documented example itself uses only the documented fields and states (the fixture is sane).
    assert set(documented["example"]) <= set(documented["fields"])
    assert documented["example"]["state"] in documented["states"]
    for state in (feedback.PENDING, feedback.SUCCESS, feedback.FAILURE):
        url, body = messages.status_request(
            provider, "https://forge.lan/api", "acme/docs", SHA, state, target_url="u", description="d", context="c"
        )
        assert set(body) <= set(documented["fields"]) and body["state"] in documented["states"]
        template = documented["path"]
        for name, value in (
            ("{owner}", "acme"), ("{workspace}", "acme"), ("{repo}", "docs"), ("{repo_slug}", "docs"),
            (":id", "acme%2Fdocs"), ("{sha}", SHA), (":sha", SHA), ("{commit}", SHA),
        ):  # fmt: skip
            template = template.replace(name, value)
        assert url == "https://forge.lan/api" + template
    name, value = documented["header"].split(": ", 1)
    shown = {
        k: v for k, v in messages.auth_headers(provider, "TOKEN").items() if k in ("Authorization", "PRIVATE-TOKEN")
    }
    assert shown == {name: value.split(" <")[0] + " TOKEN" if " " in value else "TOKEN"}


def test_without_status_or_notifications_nothing_is_planned() -> None:
    assert FeedbackConfig().empty
    assert feedback.deployment_messages(FeedbackConfig(), SETTINGS, ROW, "success", permalink_served=True) == []
    manifest = parse(b"sites:\n  - slot: docs\n    repo: https://github.com/acme/docs.git\n")
    assert manifest.feedback().empty
    declared = parse(
        b"sites:\n  - slot: docs\n    repo: https://github.com/acme/docs.git\n"
        b"    status: {provider: github, token_env: GH}\n"
    )
    assert not declared.feedback().empty and declared.feedback().has_statuses
