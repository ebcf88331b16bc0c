"""Feedback planned (pure): which outbox rows a state change produces, given what deploy.yaml declares.

deploy.yaml (gitops/manifest.py) declares per site a `status:` (a forge to post commit statuses to)
and a top-level `notifications:` list; gitops hands the result here as a `FeedbackConfig`, and the
places that record a state change (record.py) call the planners inside their own transaction, so a
change and the calls it causes are committed together. Bodies are rendered by messages.py.
"""

from __future__ import annotations

import fnmatch
import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

from drophost.pipeline import messages
from drophost.settings import Settings

EVENTS = ("live", "failed", "rollback", "promote", "offline", "expired", "expiring")
FORMATS = ("json", "slack", "matrix", "teams")
PROVIDERS = ("github", "gitlab", "gitea", "bitbucket")
# The public service each provider's api_url defaults to.
DEFAULT_API_URLS = {
    "github": "https://api.github.com",
    "gitlab": "https://gitlab.com/api/v4",
    "gitea": "https://gitea.com/api/v1",
    "bitbucket": "https://api.bitbucket.org",
}
# A status is a commit's state as DropHost saw it: being deployed, live, or failed.
PENDING, SUCCESS, FAILURE = "pending", "success", "failure"
MAX_URL = 2048


@dataclass(frozen=True)
class StatusSpec:
    """`status:` of a site: where the commit statuses of its deploys go, and the variable with the token."""

    provider: str
    api_url: str
    token_env: str
    # The repository on the forge: "owner/repo" (GitLab: "group/sub/project"), from the site's repo URL.
    project: str


@dataclass(frozen=True)
class Notifier:
    """One `notifications:` entry: a destination, its body format, the events it wants, which slots."""

    url: str
    format: str
    events: tuple[str, ...]
    secret_env: str | None = None
    slots: tuple[str, ...] = ()

    def wants(self, event: str, slot: str) -> bool:
        if event not in self.events:
            return False
        return not self.slots or any(fnmatch.fnmatchcase(slot, pattern) for pattern in self.slots)


def _no_status(slot: str, branch: str) -> StatusSpec | None:
    return None


@dataclass(frozen=True)
class FeedbackConfig:
    """What the deploy.yaml in force declares; empty until one is applied."""

    notifiers: tuple[Notifier, ...] = ()
    # (slot, branch) of a git deployment -> the status: of the site that deploys it.
    status_for: Callable[[str, str], StatusSpec | None] = field(default=_no_status)
    # Whether any site declares a status: (without one, and without notifiers, nothing is planned at all).
    has_statuses: bool = False

    @property
    def empty(self) -> bool:
        return not self.notifiers and not self.has_statuses


@dataclass(frozen=True)
class Message:
    """One outbox row: what to send where, once, under its idempotency key."""

    key: str
    kind: str  # "status" or "notification"
    target: str  # the provider or the format
    event: str
    slot: str
    deployment_id: int | None
    url: str
    body: str
    secret_env: str | None
    stream: str


@dataclass(frozen=True)
class Links:
    """Where a deployment can be seen: the slot, and the deployment's own permalink when it is served."""

    slot_url: str
    permalink: str | None
    dashboard: str | None


def check_url(text: object, *, query: bool = True) -> str:
    """The allow-list for a destination: http(s), a host, no credentials, no fragment, printable ASCII.

    Raises ValueError with the reason (manifest.py adds the file, line and field)."""
    if not isinstance(text, str) or not text:
        raise ValueError("must be an http:// or https:// URL")
    if len(text) > MAX_URL or not text.isascii() or any(ord(ch) <= 32 or ord(ch) == 127 for ch in text):
        raise ValueError(f"must be a URL of printable ASCII without spaces, at most {MAX_URL} characters")
    try:
        parts = urlsplit(text)
        parts.port  # noqa: B018  (a bad port raises here)
    except ValueError:
        raise ValueError("is not a valid URL") from None
    if parts.scheme not in ("http", "https"):
        raise ValueError("must be an http:// or https:// URL")
    if not parts.hostname:
        raise ValueError("has no host name")
    if parts.username is not None or parts.password is not None or "@" in parts.netloc:
        raise ValueError("must not hold credentials; name an environment variable (token_env, secret_env)")
    if parts.fragment or text.endswith("#"):
        raise ValueError("must not have a #fragment")
    if not query and (parts.query or "?" in text):
        raise ValueError("must not have a ?query")
    return text


def host_of(url: str) -> str:
    """The destination as the outbox shows it: its host (and port), never its path, which may be a secret."""
    parts = urlsplit(url)
    return parts.netloc


def status_message(
    spec: StatusSpec, *, slot: str, deployment_id: int, sha: str, state: str, links: Links, description: str
) -> Message:
    """A commit status: `state` is pending, success or failure (each provider's word is messages.py's)."""
    target = (links.permalink or links.slot_url) if state == SUCCESS else (links.dashboard or links.slot_url)
    url, body = messages.status_request(
        spec.provider,
        spec.api_url,
        spec.project,
        sha,
        state,
        target_url=target,
        description=description,
        context=f"drophost/{slot}",
    )
    return Message(
        key=f"status-{deployment_id}-{state}-{_digest(spec.provider, url)}",
        kind="status",
        target=spec.provider,
        event=state,
        slot=slot,
        deployment_id=deployment_id,
        url=url,
        body=messages.to_json(body),
        secret_env=spec.token_env,
        stream=f"status {url}",
    )


def notification_messages(config: FeedbackConfig, event: str, *, subject: str, facts: dict[str, Any]) -> list[Message]:
    """One message per notifier that wants `event` for this slot. `subject` makes the key unique per
    state change (a deployment id, an activation id, an expiry time)."""
    slot = str(facts["slot"])
    planned = []
    for index, notifier in enumerate(config.notifiers):
        if not notifier.wants(event, slot):
            continue
        key = f"{event}-{subject}-{index}-{_digest(notifier.url, notifier.format)}"
        body = messages.notification_body(notifier.format, {**facts, "event": event, "id": key})
        planned.append(
            Message(
                key=key,
                kind="notification",
                target=notifier.format,
                event=event,
                slot=slot,
                deployment_id=facts.get("deployment_id"),
                url=notifier.url,
                body=messages.to_json(body),
                # Only json bodies are signed; the chat formats authenticate by their secret URL.
                secret_env=notifier.secret_env if notifier.format == "json" else None,
                stream=f"notification {notifier.url}",
            )
        )
    return planned


def deployment_messages(
    config: FeedbackConfig,
    settings: Settings,
    row: dict[str, Any],
    state: str,
    *,
    permalink_served: bool,
    draft: bool = False,
) -> list[Message]:
    """What a deployment's new state causes: its commit status (git deploys of a site with `status:`),
    and for success/failure the `live`/`failed` notifications (a draft is not live: no notification).
    `row` is the deployments row."""
    slot = str(row["slot"])
    deployment_id = int(row["id"])
    links = deployment_links(settings, slot, deployment_id, permalink_served=permalink_served)
    error = first_line(row.get("error"))
    planned = []
    spec = config.status_for(slot, row.get("branch") or "") if row.get("source") == "git" else None
    if spec is not None and row.get("commit_sha"):
        description = {
            PENDING: f"Deploying to {slot}",
            SUCCESS: f"Published as a draft, not live: {links.permalink or links.slot_url}"
            if draft
            else f"Live at {links.slot_url}",
            FAILURE: f"Deploy failed: {error}" if error else "Deploy failed",
        }[state]
        planned.append(
            status_message(
                spec,
                slot=slot,
                deployment_id=deployment_id,
                sha=str(row["commit_sha"]),
                state=state,
                links=links,
                description=description,
            )
        )
    if state != PENDING and not draft and row.get("state") != "unchanged":
        event = "live" if state == SUCCESS else "failed"
        facts = _facts(row, links, error=error if state == FAILURE else None)
        planned.extend(notification_messages(config, event, subject=str(deployment_id), facts=facts))
    return planned


def slot_messages(
    config: FeedbackConfig,
    settings: Settings,
    *,
    event: str,
    slot: str,
    subject: str,
    row: dict[str, Any] | None,
    version: int | None = None,
    expires_at: datetime | None = None,
) -> list[Message]:
    """rollback, promote, offline, expired, expiring: notifications only (no commit changed)."""
    deployment_id = int(row["id"]) if row is not None else None
    links = (
        deployment_links(settings, slot, deployment_id, permalink_served=False)
        if deployment_id is not None
        else Links(slot_url=slot_url(settings, slot), permalink=None, dashboard=dashboard_url(settings, slot))
    )
    facts = _facts(row or {"slot": slot}, links, error=None)
    facts.update(version=version, expires_at=expires_at.isoformat() if expires_at else None)
    return notification_messages(config, event, subject=subject, facts=facts)


def deployment_links(settings: Settings, slot: str, deployment_id: int, *, permalink_served: bool) -> Links:
    permalink = f"{settings.host_url(f'{int(deployment_id)}--{slot}')}/" if permalink_served else None
    return Links(slot_url=slot_url(settings, slot), permalink=permalink, dashboard=dashboard_url(settings, slot))


def slot_url(settings: Settings, slot: str) -> str:
    # The same addresses as web/views.py shows (a slot named with "--" keeps its path).
    if "--" in slot:
        return f"{settings.site_base_url}/d/{slot}/"
    return f"{settings.host_url(slot)}/"


def dashboard_url(settings: Settings, slot: str) -> str | None:
    return f"{settings.public_url.rstrip('/')}/slots/{slot}" if settings.public_url else None


def first_line(text: object, limit: int = 200) -> str | None:
    if not text:
        return None
    line = str(text).strip().splitlines()[0] if str(text).strip() else ""
    return line[:limit] or None


def _facts(row: dict[str, Any], links: Links, *, error: str | None) -> dict[str, Any]:
    return {
        "slot": row["slot"],
        "deployment_id": int(row["id"]) if row.get("id") is not None else None,
        "url": links.slot_url,
        "permalink": links.permalink,
        "dashboard": links.dashboard,
        "repo": row.get("repo"),
        "branch": row.get("branch"),
        "commit": row.get("commit_sha"),
        "error": error,
    }


def _digest(*parts: str) -> str:
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()[:12]
