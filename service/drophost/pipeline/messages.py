"""Outgoing requests rendered (pure): each forge's commit-status call and each notification format's body.

The documents each shape follows (the tests cite them again next to the checks):
- GitHub: POST {api}/repos/{owner}/{repo}/statuses/{sha}, state pending/success/failure/error,
  target_url, description, context; `Authorization: Bearer` (docs.github.com/rest/commits/statuses).
- GitLab: POST {api}/projects/:id/statuses/:sha, id the URL-encoded path, state
  pending/running/success/failed/canceled, target_url, description, name; `PRIVATE-TOKEN`
  (docs.gitlab.com/api/commits/#set-the-pipeline-status-of-a-commit).
- Gitea/Forgejo: POST {api}/repos/{owner}/{repo}/statuses/{sha}, GitHub's fields and states;
  `Authorization: token ...` (the Gitea API's repoCreateStatus).
- Bitbucket Cloud: POST {api}/2.0/repositories/{workspace}/{repo}/commit/{sha}/statuses/build, key,
  state INPROGRESS/SUCCESSFUL/FAILED, url (required), name, description; Bearer
  (developer.atlassian.com/cloud/bitbucket/rest/api-group-commit-statuses/).
- slack: an incoming webhook's `text` (Slack escapes &, < and >); Mattermost and Rocket.Chat take it too.
- matrix: matrix-hookshot's generic webhook: `text`, `html`, `username`
  (matrix-org.github.io/matrix-hookshot/latest/setup/webhooks).
- teams: an Adaptive Card in a `message` attachment, which Teams incoming webhooks and Workflows
  accept (learn.microsoft.com/microsoftteams/platform/webhooks-and-connectors/how-to/add-incoming-webhook).
"""

from __future__ import annotations

import html
import json
from typing import Any
from urllib.parse import quote

STATES = {
    "github": {"pending": "pending", "success": "success", "failure": "failure"},
    "gitea": {"pending": "pending", "success": "success", "failure": "failure"},
    # DropHost posts "pending" once the commit is fetched and being deployed: GitLab's "running".
    "gitlab": {"pending": "running", "success": "success", "failure": "failed"},
    "bitbucket": {"pending": "INPROGRESS", "success": "SUCCESSFUL", "failure": "FAILED"},
}
# GitHub refuses a description longer than 140 characters; the others take at least that.
MAX_DESCRIPTION = 140
_TITLES = {
    "live": "is live",
    "failed": "deploy failed",
    "rollback": "was rolled back",
    "promote": "was promoted",
    "offline": "was taken offline",
    "expired": "expired",
    "expiring": "expires within the hour",
}


def to_json(body: dict[str, Any]) -> str:
    return json.dumps(body, ensure_ascii=False, separators=(",", ":"), sort_keys=True)


def status_request(
    provider: str,
    api_url: str,
    project: str,
    sha: str,
    state: str,
    *,
    target_url: str,
    description: str,
    context: str,
) -> tuple[str, dict[str, Any]]:
    """The URL and JSON body of one commit status call."""
    api = api_url.rstrip("/")
    word = STATES[provider][state]
    description = description[:MAX_DESCRIPTION]
    if provider == "gitlab":
        url = f"{api}/projects/{quote(project, safe='')}/statuses/{sha}"
        return url, {"state": word, "target_url": target_url, "description": description, "name": context}
    if provider == "bitbucket":
        workspace, repo = project.split("/", 1)
        url = f"{api}/2.0/repositories/{quote(workspace, safe='')}/{quote(repo, safe='')}/commit/{sha}/statuses/build"
        # Bitbucket keeps one status per key and commit: the same key overwrites the pending one.
        key = context.replace("/", "-")
        return url, {"key": key, "state": word, "url": target_url, "name": context, "description": description}
    owner, repo = project.split("/", 1)
    url = f"{api}/repos/{quote(owner, safe='')}/{quote(repo, safe='')}/statuses/{sha}"
    return url, {"state": word, "target_url": target_url, "description": description, "context": context}


def auth_headers(provider: str, token: str) -> dict[str, str]:
    """Each forge's documented token header (added at delivery; the token is never stored)."""
    if provider == "gitlab":
        return {"PRIVATE-TOKEN": token}
    if provider == "gitea":
        return {"Authorization": f"token {token}"}
    headers = {"Authorization": f"Bearer {token}"}
    if provider == "github":
        headers.update({"Accept": "application/vnd.github+json", "X-GitHub-Api-Version": "2022-11-28"})
    return headers


def summary(facts: dict[str, Any]) -> str:
    """One line for people: "DropHost: docs is live at https://... (deployment 12, commit 1a2b3c4d5e6f)"."""
    event = facts["event"]
    text = f"DropHost: {facts['slot']} {_TITLES[event]}"
    if event in ("live", "rollback", "promote"):
        text += f" at {facts['url']}"
    details = []
    if facts.get("deployment_id") is not None:
        details.append(f"deployment {facts['deployment_id']}")
    if facts.get("version") is not None:
        details.append(f"version {facts['version']}")
    if facts.get("commit"):
        details.append(f"commit {str(facts['commit'])[:12]}")
    if facts.get("expires_at") and event == "expiring":
        details.append(f"at {facts['expires_at']}")
    if details:
        text += f" ({', '.join(details)})"
    if facts.get("error"):
        text += f": {facts['error']}"
    return text


def link_of(facts: dict[str, Any]) -> str | None:
    if facts["event"] in ("live", "rollback", "promote"):
        return str(facts.get("permalink") or facts["url"])
    return facts.get("dashboard") or (facts["url"] if facts["event"] == "expiring" else None)


def notification_body(fmt: str, facts: dict[str, Any]) -> dict[str, Any]:
    """The body of one notification in its format; `facts` holds event, slot, url, ids and error."""
    text = summary(facts)
    link = link_of(facts)
    if fmt == "json":
        fields = ("id", "event", "slot", "url", "permalink", "deployment_id", "version", "repo", "branch", "commit")
        body = {name: facts.get(name) for name in fields}
        body.update(error=facts.get("error"), expires_at=facts.get("expires_at"), text=text)
        return body
    if fmt == "slack":
        escaped = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
        return {"text": escaped}
    if fmt == "matrix":
        rendered = html.escape(text)
        if link:
            rendered += f' <a href="{html.escape(link, quote=True)}">open</a>'
        return {"text": text, "html": rendered, "username": "DropHost"}
    if fmt == "teams":
        card: dict[str, Any] = {
            "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
            "type": "AdaptiveCard",
            "version": "1.2",
            "body": [{"type": "TextBlock", "text": text, "wrap": True}],
        }
        if link:
            card["actions"] = [{"type": "Action.OpenUrl", "title": "Open", "url": link}]
        attachment = {"contentType": "application/vnd.microsoft.card.adaptive", "contentUrl": None, "content": card}
        return {"type": "message", "attachments": [attachment]}
    raise ValueError(f"unknown notification format {fmt!r}")
