"""Notifications (issue 17): deploy.yaml's `notifications:` announce live, failed, rollback, promote,
offline, expired and expiring to a local server standing in for each format's receiver, and the outbox
retries a destination that is down, then marks it failed, without touching the deploy.

The formats, as their receivers document them:
- json: DropHost's own body, signed like DropHost's generic webhook verifies (HMAC-SHA256 over the raw
  body, `X-Signature: sha256=<hex>`; README "Webhooks").
- slack: an incoming webhook's `text` (https://api.slack.com/messaging/webhooks, "&, < and >" escaped
  as https://api.slack.com/reference/surfaces/formatting#escaping says); Mattermost
  (https://developers.mattermost.com/integrate/webhooks/incoming/) and Rocket.Chat take `text` too.
- matrix: matrix-hookshot's generic webhook: `text`, optional `html` and `username`
  (https://matrix-org.github.io/matrix-hookshot/latest/setup/webhooks).
- teams: an Adaptive Card as a `message` attachment, as "Send Adaptive Cards using an Incoming Webhook"
  shows (https://learn.microsoft.com/microsoftteams/platform/webhooks-and-connectors/how-to/add-incoming-webhook).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from drophost.gitops import webhooks
from drophost.settings import Settings
from drophost.web.app import create_app
from tests.harness.auth import AUTH, TOKEN
from tests.harness.ports import free_port
from tests.harness.processes import start_nginx, stop_process
from tests.harness.receiver import Received, Receiver
from tests.harness.stacks import Stack
from tests.harness.waiting import wait_until
from tests.integration.support import deploy_site, site, upload
from tests.zipcraft import std_zip

SECRET = "notification-signing-secret-0123456789"
ENV = {"NOTIFY_SECRET": SECRET}
ALL = "[live, failed, rollback, promote, offline, expired, expiring]"


@pytest.fixture
def notified(settings: Settings, data_dir: Path) -> Iterator[Any]:
    """Start nginx and the app with a deploy.yaml of notifications only."""
    opened: list[Stack] = []

    def make(deploy_yaml: str, **overrides: Any) -> Stack:
        config = data_dir / "deploy.yaml"
        config.write_text(deploy_yaml)
        chosen = replace(settings, config=str(config), poll_interval=0, **overrides)
        nginx, process = start_nginx(chosen)
        client = TestClient(create_app(chosen, ENV), raise_server_exceptions=False)
        client.__enter__()
        stack = Stack(settings=chosen, nginx=nginx, process=process, client=client)
        opened.append(stack)
        return stack

    yield make
    for stack in opened:
        stack.client.__exit__(None, None, None)
        stop_process(stack.process)


def formats_yaml(receiver: Receiver) -> str:
    return (
        "sites: []\n"
        "notifications:\n"
        f"  - url: {receiver.url('/json')}\n    format: json\n    events: {ALL}\n    secret_env: NOTIFY_SECRET\n"
        f"  - url: {receiver.url('/slack/T000/B000/XXXX')}\n    format: slack\n    events: [live, failed]\n"
        f"  - url: {receiver.url('/matrix/hook')}\n    format: matrix\n    events: {ALL}\n"
        f"  - url: {receiver.url('/teams')}\n    format: teams\n    events: [live]\n    slots: ['docs-*']\n"
    )


def of(receiver: Receiver, path: str) -> list[Received]:
    return [r for r in receiver.received() if r.path.startswith(path)]


def test_each_format_gets_the_events_it_asked_for_in_its_documented_shape(notified: Any, receiver: Receiver) -> None:
    stack = notified(formats_yaml(receiver), expiry_interval=0.2)
    first = deploy_site(stack, site("one"))
    deploy_site(stack, site("two"))
    assert stack.client.post("/api/slots/site/rollback", json={"version": 1}, headers=AUTH).status_code == 200
    # A draft is not live (no event); promoting it is.
    form = {"slot": "site", "activate": "false"}
    zipped = {"file": ("d.zip", std_zip(site("draft")), "application/zip")}
    draft = stack.client.post("/api/deployments", files=zipped, data=form, headers=AUTH).json()
    promoted = stack.client.post("/api/slots/site/promote", json={"deployment_id": draft["id"]}, headers=AUTH)
    assert promoted.status_code == 200, promoted.text
    docs = deploy_site(stack, site("docs"), slot="docs-main")
    # A time to live inside the hour: `expiring` now, `expired` when it runs out.
    answer = stack.client.patch("/api/slots/docs-main", json={"ttl": "2s"}, headers=AUTH)
    assert answer.status_code == 200, answer.text
    assert stack.client.delete("/api/slots/site", headers=AUTH).status_code == 200
    refused = upload(stack, b"not a zip", slot="site")
    assert refused.status_code == 422  # refused before anything is recorded: no deployment, no event

    # Each destination is its own stream: wait for all of them.
    expected = {"/json": 8, "/slack/": 3, "/matrix/": 8, "/teams": 1}
    assert wait_until(lambda: all(len(of(receiver, p)) >= n for p, n in expected.items()), limit=30)
    signed = of(receiver, "/json")
    events = [r.json()["event"] for r in signed]
    # In the order of the changes (the expiry loop plans `expiring` whenever it next runs).
    assert [e for e in events if not e.startswith("expir")] == [
        "live",
        "live",
        "rollback",
        "promote",
        "live",
        "offline",
    ]
    assert [e for e in events if e.startswith("expir")] == ["expiring", "expired"]
    by_event = {r.json()["event"]: r.json() for r in signed}
    for request in signed:
        # Verified by DropHost's own generic-webhook code, over the raw bytes as received.
        generic = webhooks.provider("generic")
        assert webhooks.verified_secrets(generic, request.headers, request.body, [SECRET]) == [SECRET]
        body = request.json()
        assert request.headers["idempotency-key"] == body["id"] == request.headers["x-delivery-id"]
        assert request.headers["x-event"] == body["event"]
    live = signed[0].json()
    assert live["slot"] == "site" and live["deployment_id"] == first["id"]
    assert live["url"] == first["url"] and live["permalink"] == first["permalink"]
    assert live["text"].startswith(f"DropHost: site is live at {first['url']}")
    assert by_event["rollback"]["version"] == 1
    assert by_event["promote"]["deployment_id"] == draft["id"] and by_event["promote"]["version"] == 3
    assert by_event["expiring"]["expires_at"] and by_event["expiring"]["slot"] == "docs-main"
    assert by_event["expired"]["slot"] == "docs-main" and by_event["offline"]["slot"] == "site"

    # slack: only live and failed, as `text`.
    slack = [r.json() for r in of(receiver, "/slack/")]
    assert [set(b) for b in slack] == [{"text"}] * 3
    assert slack[0]["text"].startswith("DropHost: site is live at ")
    # matrix (hookshot): text, html, username.
    matrix = [r.json() for r in of(receiver, "/matrix/")]
    assert len(matrix) == 8 and all(set(b) == {"text", "html", "username"} for b in matrix)
    assert f'<a href="{first["permalink"]}">open</a>' in matrix[0]["html"]
    # teams: only docs-* slots, an Adaptive Card with a link to the deployment.
    (teams,) = [r.json() for r in of(receiver, "/teams")]
    assert teams["type"] == "message"
    (attachment,) = teams["attachments"]
    assert attachment["contentType"] == "application/vnd.microsoft.card.adaptive"
    card = attachment["content"]
    assert card["type"] == "AdaptiveCard" and card["version"] == "1.2"
    assert card["body"][0]["type"] == "TextBlock" and "docs-main is live" in card["body"][0]["text"]
    assert card["actions"] == [{"type": "Action.OpenUrl", "title": "Open", "url": docs["permalink"]}]
    # Each delivery once: every key answered 2xx exactly one time.
    assert set(receiver.accepted().values()) == {1}


def test_a_destination_that_is_down_is_retried_with_backoff_then_failed_and_the_deploy_goes_on(
    notified: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    down = f"http://127.0.0.1:{free_port()}/hook/secret-path"
    text = f"sites: []\nnotifications:\n  - url: {down}\n    format: json\n    events: [live]\n"
    stack = notified(text, outbox_attempts=3, outbox_backoff=0.3)
    started = time.monotonic()
    deployed = deploy_site(stack, site("one"))
    assert deployed["status"] == "live"
    assert stack.get("/d/site/").status_code == 200

    def failed() -> bool:
        return [d["state"] for d in stack.client.get("/api/outbox", headers=AUTH).json()["deliveries"]] == ["failed"]

    assert wait_until(failed, limit=30)
    # Three attempts, 0.3 s then 0.6 s apart at least.
    assert time.monotonic() - started >= 0.9
    (delivery,) = stack.client.get("/api/outbox", headers=AUTH).json()["deliveries"]
    assert delivery["attempts"] == 3 and delivery["last_error"] == "connection refused"
    assert delivery["host"] == down.split("/")[2] and delivery["next_attempt_at"] is None
    # Neither the API nor the log shows the URL's path, which is often the webhook's secret.
    assert "secret-path" not in stack.client.get("/api/outbox", headers=AUTH).text
    assert "secret-path" not in caplog.text and "again in" in caplog.text
    # The deploy was never held up: live, and the next one too.
    assert deploy_site(stack, site("two"))["status"] == "live"
    assert stack.client.get("/api/outbox?state=failed", headers=AUTH).json()["deliveries"][0]["id"] == delivery["id"]
    # The dashboard's Deliveries page shows the same, the reason included, the path left out.
    assert stack.client.get("/deliveries", follow_redirects=False).status_code == 303
    assert stack.client.post("/signin", data={"token": TOKEN, "next": "/"}, follow_redirects=False).status_code == 303
    page = stack.client.get("/deliveries?state=failed")
    assert page.status_code == 200 and 'class="delivery-failed"' in page.text
    assert "connection refused" in page.text and down.split("/")[2] in page.text and "secret-path" not in page.text
    assert stack.client.get("/deliveries?state=lost").status_code == 422


def test_notifications_are_declared_only_in_deploy_yaml_and_checked(notified: Any, receiver: Receiver) -> None:
    text = f"sites: []\nnotifications:\n  - url: {receiver.url('/x').replace('http://', 'http://user:pw@')}\n"
    text += "    format: json\n    events: [live]\n"
    stack = notified("sites: []\n")
    config = Path(stack.settings.config)
    config.write_text(text)
    answer = stack.client.post("/api/reload", headers=AUTH)
    assert answer.status_code == 422
    assert "notifications[0].url: must not hold credentials" in answer.json()["error"]
    assert stack.client.get("/api/outbox?state=bogus", headers=AUTH).status_code == 422
    assert stack.client.get("/api/outbox").status_code == 401
