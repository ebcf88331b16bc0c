"""What the overview and a slot's page show: store rows shaped for the templates, in sortable pages."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request

from drophost.errors import NotFoundError
from drophost.names import validate_slot
from drophost.store import audit, deployments, slots, versions
from drophost.web import lists, views
from drophost.web.api import compare_versions
from drophost.web.common import pool_of, settings_of
from drophost.web.gitops import gitops_of

# How a version's stored status reads on the slot page.
_VERSION_STATES = {
    "active": "live",
    "inactive": "superseded",
    "draft": "draft",
    "failed": "failed",
    "pruned": "removed",
}
# The overview reads this many of the newest deployments (and says so when there are more).
RECENT = 500
SLOTS_PER_PAGE = 25
DEPLOYMENTS_PER_PAGE = 50
_SLOT_COLUMNS = (
    lists.Column("slot", lambda r: r["slot"]),
    lists.Column("status", lambda r: r["status"]),
    lists.Column("source", lambda r: source_text(r["shown"])),
    lists.Column("when", lambda r: r["shown"]["created_at"]),
    lists.Column("version", lambda r: r["active_version"]),
    lists.Column("expires", lambda r: r["expires_at"]),
)
_DEPLOYMENT_COLUMNS = (
    lists.Column("id", lambda d: d["id"]),
    lists.Column("slot", lambda d: d["slot"]),
    lists.Column("status", lambda d: d["status"]),
    lists.Column("source", lambda d: source_text(d)),
    lists.Column("version", lambda d: d["config_version"]),
    lists.Column("files", lambda d: d["files"]),
)
_VERSION_COLUMNS = (
    lists.Column("version", lambda v: v["version"]),
    lists.Column("state", lambda v: v["state"]),
    lists.Column("deployment", lambda v: v["deployment_id"]),
    lists.Column("created", lambda v: v["created_at"]),
)
STATUSES = ("live", "draft", "failed", "expired", "offline", "superseded", "building")


def overview(request: Request) -> dict[str, Any]:
    settings = settings_of(request)
    query = dict(request.query_params)
    slot_filter = query.get("slot", "").strip()
    status_filter = query.get("status", "")
    if status_filter not in STATUSES:
        status_filter = ""
    drift = gitops_of(request).drift()
    with pool_of(request).connection() as conn:
        live = {row["slot"]: views.slot(settings, row) for row in slots.list_slots(conn)}
        locks = audit.slot_locks(conn)
        recent = [views.deployment(settings, row) for row in deployments.list_deployments(conn, limit=RECENT)]
        stored = deployments.count_deployments(conn) if len(recent) == RECENT else len(recent)
        # Source and When describe what a live slot serves, not its newest deployment (which may
        # have failed, be a draft, or have been rolled back from).
        by_id = {d["id"]: d for d in recent}
        serving: dict[str, dict[str, Any]] = {}
        for name, slot_row in live.items():
            if slot_row["deployment_id"] is None:
                continue
            found = by_id.get(slot_row["deployment_id"])
            if found is None:
                row = deployments.get_deployment(conn, slot_row["deployment_id"])
                found = views.deployment(settings, row) if row is not None else None
            if found is not None:
                serving[name] = found
    summary: dict[str, dict[str, Any]] = {}
    for d in recent:  # newest first: the first seen is the latest deployment of its slot
        entry = summary.setdefault(d["slot"], {"slot": d["slot"], "latest": d, "count": 0})
        entry["count"] += 1
    for name, found in serving.items():  # a slot whose deployments are all older than the recent ones
        summary.setdefault(name, {"slot": name, "latest": found, "count": 1})
    rows = []
    for name, entry in summary.items():
        slot = live.get(name)
        entry["status"] = slot["status"] if slot else "failed"
        entry["active_version"] = slot["active_version"] if slot else None
        entry["expires_at"] = slot["expires_at"] if slot else None
        entry["url"] = views.slot_url(settings, name)
        entry["lock"] = locks.get(name)
        entry["drift"] = drift.get(name)
        entry["shown"] = serving.get(name, entry["latest"]) if entry["status"] == "live" else entry["latest"]
        latest = entry["latest"]
        failed = latest["status"] == "failed" and entry["status"] != "failed"
        entry["failed_latest"] = latest if failed else None
        rows.append(entry)
    if slot_filter:
        rows = [r for r in rows if slot_filter in r["slot"]]
        recent = [d for d in recent if slot_filter in d["slot"]]
    if status_filter:
        rows = [r for r in rows if r["status"] == status_filter]
        recent = [d for d in recent if d["status"] == status_filter]
    slot_list = lists.list_page(
        rows,
        query,
        columns=_SLOT_COLUMNS,
        searched=lambda r: " ".join((r["slot"], r["status"], source_text(r["shown"]))),
        default_sort="when",
        default_descending=True,
        per_page=SLOTS_PER_PAGE,
        path="/",
    )
    deployment_list = lists.list_page(
        recent,
        query,
        columns=_DEPLOYMENT_COLUMNS,
        searched=lambda d: " ".join((d["slot"], d["status"], source_text(d), d["error"] or "")),
        default_sort="id",
        default_descending=True,
        per_page=DEPLOYMENTS_PER_PAGE,
        prefix="d",
        path="/",
    )
    return {
        "config": gitops_of(request).config_status(),
        "slots": slot_list.rows,
        "slot_list": slot_list,
        "deployments": deployment_list.rows,
        "deployment_list": deployment_list,
        "recent_cap": RECENT if stored > RECENT else None,
        "stored_deployments": stored,
        "slot_filter": slot_filter,
        "status_filter": status_filter,
        "statuses": STATUSES,
        "query": str(request.query_params),
    }


def source_text(d: dict[str, Any]) -> str:
    parts = [d.get("source_name") or "", d.get("repo") or "", d.get("branch") or "", d.get("commit_sha") or ""]
    return " ".join(p for p in parts + [d.get("pusher") or ""] if p)


def live_there(request: Request, slot: str) -> dict[str, Any] | None:
    settings = settings_of(request)
    with pool_of(request).connection() as conn:
        current = slots.get_slot(conn, slot)
        if current is None or current["status"] != "live" or current["deployment_id"] is None:
            return None
        row = deployments.get_deployment(conn, current["deployment_id"])
    if row is None:
        return None
    shown = views.deployment(settings, row)
    return {
        "version": current["active_version"],
        "deployment": shown["id"],
        "source": source_text(shown) or shown["source"],
        "created_at": views.iso(shown["created_at"]),
        "url": views.slot_url(settings, slot),
    }


def slot(request: Request, with_diff: bool = True) -> dict[str, Any]:
    slot = validate_slot(request.path_params["slot"])
    settings = settings_of(request)
    pool = pool_of(request)
    with pool.connection() as conn:
        current = slots.get_slot(conn, slot)
        shown_versions = [views.version(row) for row in versions.list_versions(conn, slot)]
        for shown_version in shown_versions:
            shown_version["permalink"] = views.permalink(settings, slot, shown_version["deployment_id"])
            shown_version["state"] = _VERSION_STATES.get(shown_version["status"], shown_version["status"])
        shown_deployments = [
            views.deployment(settings, row) for row in deployments.list_deployments(conn, slot=slot, limit=RECENT)
        ]
        stored = deployments.count_deployments(conn, slot=slot) if len(shown_deployments) == RECENT else 0
        events = [views.event(row) for row in slots.list_activations(conn, slot, RECENT)]
        lock = audit.slot_lock(conn, slot)
    if current is None and not shown_deployments:
        raise NotFoundError(f'there is no slot "{slot}"')
    shown = views.slot(settings, current) if current else None
    active = shown["active_version"] if shown and shown["status"] == "live" else None
    diff = None
    numbers = [v["version"] for v in shown_versions]
    a, b = _version_param(request, "a"), _version_param(request, "b")
    if with_diff and a in numbers and b in numbers and a is not None and b is not None:
        diff = compare_versions(pool, settings, slot, a, b)
    query = dict(request.query_params)
    version_list = lists.list_page(
        shown_versions,
        query,
        columns=_VERSION_COLUMNS,
        searched=lambda v: f"{v['version']} {v['state']} {v['deployment_id']} {v['sha256']}",
        default_sort="version",
        default_descending=True,
        per_page=DEPLOYMENTS_PER_PAGE,
        prefix="v",
        path=f"/slots/{slot}",
    )
    deployment_list = lists.list_page(
        shown_deployments,
        query,
        columns=_DEPLOYMENT_COLUMNS,
        searched=lambda d: " ".join((str(d["id"]), d["status"], source_text(d), d["error"] or "")),
        default_sort="id",
        default_descending=True,
        per_page=DEPLOYMENTS_PER_PAGE,
        prefix="d",
        path=f"/slots/{slot}",
    )
    event_list = lists.list_page(
        events,
        query,
        columns=(lists.Column("when", lambda e: e["created_at"]), lists.Column("action", lambda e: e["action"])),
        searched=lambda e: f"{e['action']} {e['version'] or ''}",
        default_sort="when",
        default_descending=True,
        per_page=DEPLOYMENTS_PER_PAGE,
        prefix="e",
        path=f"/slots/{slot}",
    )
    return {
        "slot": slot,
        "version_list": version_list,
        "deployment_list": deployment_list,
        "event_list": event_list,
        "recent_cap": RECENT if stored > RECENT else None,
        "stored_deployments": stored,
        "current": shown,
        "status": shown["status"] if shown else "failed",
        "active": active,
        "url": views.slot_url(settings, slot),
        "versions": shown_versions,
        "deployments": shown_deployments,
        "events": events,
        "diff": diff,
        "lock": lock,
        "drift": gitops_of(request).drift().get(slot),
        "a": a if a in numbers else (numbers[1] if len(numbers) > 1 else None),
        "b": b if b in numbers else (numbers[0] if numbers else None),
        "error": "",
    }


def _version_param(request: Request, name: str) -> int | None:
    raw = request.query_params.get(name, "")
    return int(raw) if raw.isascii() and raw.isdigit() and 0 < int(raw) < 2**31 else None
