"""Before a deploy, on a terminal: a guessed slot that would replace another source's live site, and a
named slot that does not exist next to one that does (a typo) are asked about. Without a terminal,
scripts keep what they did before: nothing is asked."""

from __future__ import annotations

import difflib
from typing import IO, Any

from drophost.client import prompts
from drophost.client.http import EXIT_FAILED, ApiClient, ClientError
from drophost.client.output import human_time


def confirm_target(client: ApiClient, slot: str, *, named: bool, source_name: str, err: IO[str]) -> None:
    """Raise ClientError when the person at the terminal says no."""
    slots: dict[str, dict[str, Any]] = {s["slot"]: s for s in client.get("/api/slots")["slots"]}
    current = slots.get(slot)
    question = (_typo_question(slot, list(slots)) if named and current is None else None) or _replace_question(
        client, slot, current, named=named, source_name=source_name
    )
    if question is not None and not prompts.confirm(question, err):
        raise ClientError("nothing was deployed; --yes deploys without asking", EXIT_FAILED)


def _typo_question(slot: str, known: list[str]) -> str | None:
    close = difflib.get_close_matches(slot, known, n=1, cutoff=0.8)
    if not close:
        return None
    return f"no slot '{slot}'; did you mean '{close[0]}'? Create a new site '{slot}'?"


def _replace_question(
    client: ApiClient, slot: str, current: dict[str, Any] | None, *, named: bool, source_name: str
) -> str | None:
    """Only for a slot guessed from a name: naming it with --slot says what is meant."""
    if named or current is None or current["status"] != "live" or current["deployment_id"] is None:
        return None
    serving = client.get(f"/api/deployments/{int(current['deployment_id'])}")
    source = serving.get("source_name") or serving.get("repo") or serving.get("source")
    if source == source_name:
        return None  # the same folder or file again: a new version of it
    return (
        f"{slot} is live (deployment {serving['id']}, from {source}, {human_time(serving.get('created_at'))})."
        " Replace it?"
    )
