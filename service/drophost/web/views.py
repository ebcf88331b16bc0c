"""How stored rows are shown to API clients (pure)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from drophost.settings import Settings

_DEPLOYMENT_FIELDS = (
    "id",
    "slot",
    "status",
    "source",
    "source_name",
    "trigger",
    "repo",
    "branch",
    "commit_sha",
    "pusher",
    "files",
    "bytes",
    "ttl_seconds",
    "config_version",
    "error",
    "created_at",
    "finished_at",
)


def slot_url(settings: Settings, slot: str) -> str:
    """The slot at the root of its own host name; a slot named before `--` was refused keeps its path."""
    if "--" in slot:
        return slot_path_url(settings, slot)
    return f"{settings.host_url(slot)}/"


def slot_path_url(settings: Settings, slot: str) -> str:
    return f"{settings.site_base_url}/d/{slot}/"


def deployment(settings: Settings, row: dict[str, Any]) -> dict[str, Any]:
    shown = {name: _plain(row.get(name)) for name in _DEPLOYMENT_FIELDS}
    shown["url"] = slot_url(settings, row["slot"])
    shown["path_url"] = slot_path_url(settings, row["slot"])
    shown["permalink"] = permalink(settings, row["slot"], row["id"])
    return shown


def permalink(settings: Settings, slot: str, deployment_id: int) -> str:
    """The deployment's own host name: its files for as long as retention keeps its release."""
    return f"{settings.host_url(f'{int(deployment_id)}--{slot}')}/"


def slot(settings: Settings, row: dict[str, Any]) -> dict[str, Any]:
    return {
        "slot": row["slot"],
        "status": row["status"],
        "active_version": row["active_version"],
        "deployment_id": row["deployment_id"],
        "url": slot_url(settings, row["slot"]),
        "path_url": slot_path_url(settings, row["slot"]),
        "expires_at": _plain(row["expires_at"]),
        "updated_at": _plain(row["updated_at"]),
    }


def version(row: dict[str, Any], *, with_config: bool = False) -> dict[str, Any]:
    shown = {
        "version": row["version"],
        "sha256": row["sha256"],
        "status": row["status"],
        "deployment_id": row["deployment_id"],
        "created_at": _plain(row["created_at"]),
    }
    if with_config:
        shown["config"] = row["config"]
    return shown


def event(row: dict[str, Any]) -> dict[str, Any]:
    return {"version": row["version"], "action": row["action"], "created_at": _plain(row["created_at"])}


def iso(value: str | datetime) -> str:
    """A moment as an ISO 8601 UTC time for <time datetime=...> (the browser shows it in its own zone);
    the same text as the API's times."""
    return _utc(value).isoformat()


def utc_label(value: str | datetime) -> str:
    """A moment as people read it where no script runs: to the minute, and saying it is UTC."""
    return _utc(value).strftime("%Y-%m-%d %H:%M UTC")


def _utc(value: str | datetime) -> datetime:
    moment = datetime.fromisoformat(value) if isinstance(value, str) else value
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _plain(value: Any) -> Any:
    return value.isoformat() if isinstance(value, datetime) else value
