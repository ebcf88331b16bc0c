"""The CLI's slot chores: offline, ttl, pin/unpin, delete (for good), and whoami."""

from __future__ import annotations

import argparse
import json
import urllib.parse
from collections.abc import Callable
from typing import IO, Any

from drophost.client import prompts
from drophost.client.http import EXIT_FAILED, EXIT_OK, EXIT_USAGE, ApiClient, ClientError
from drophost.client.output import checked_slot, human_time, plural

Handler = Callable[[ApiClient, argparse.Namespace, IO[str], IO[str]], int]


def add_manage_commands(command: Callable[[str, str], argparse.ArgumentParser]) -> None:
    offline = command("offline", "take a slot offline (its history stays; rollback serves it again)")
    offline.add_argument("slot")
    ttl = command("ttl", "set when a live slot goes offline, from now; 'none' removes its time to live")
    ttl.add_argument("slot")
    ttl.add_argument("duration", help="3600, 90m, 12h, 7d, or none")
    for name, text in (
        ("pin", "pin a version: retention always keeps its files"),
        ("unpin", "unpin a version: retention may remove its files again"),
    ):
        pinning = command(name, text)
        pinning.add_argument("slot")
        pinning.add_argument("version", type=int)
    delete = command("delete", "delete a slot for good: offline, then its versions, deployments and files")
    delete.add_argument("slot")
    delete.add_argument("--yes", action="store_true", help="do not ask (needed without a terminal)")
    command("whoami", "the server, the token this command uses (where it came from) and who the server says you are")


def take_offline(client: ApiClient, args: argparse.Namespace, out: IO[str], err: IO[str]) -> int:
    answer = client.request("DELETE", f"/api/slots/{checked_slot(args.slot)}")
    if args.json:
        print(json.dumps(answer), file=out)
    else:
        print(f"{answer['slot']} is {answer['status']}; drophost rollback {answer['slot']} serves it again", file=out)
    return EXIT_OK


def set_ttl(client: ApiClient, args: argparse.Namespace, out: IO[str], err: IO[str]) -> int:
    duration = None if args.duration.lower() in ("none", "never") else args.duration
    answer = client.request("PATCH", f"/api/slots/{checked_slot(args.slot)}", {"ttl": duration})
    if args.json:
        print(json.dumps(answer), file=out)
    elif answer["expires_at"]:
        print(f"{answer['slot']} goes offline at {human_time(answer['expires_at'])}", file=out)
    else:
        print(f"{answer['slot']} has no time to live: it stays until taken offline", file=out)
    return EXIT_OK


def pin(client: ApiClient, args: argparse.Namespace, out: IO[str], err: IO[str]) -> int:
    pinned = args.command == "pin"
    path = f"/api/slots/{checked_slot(args.slot)}/versions/{args.version}/pin"
    answer = client.request("POST", path, {"pinned": pinned})
    if args.json:
        print(json.dumps(answer), file=out)
    else:
        state = "pinned: retention keeps its files" if pinned else "unpinned"
        print(f"{answer['slot']} version {answer['version']} is {state}", file=out)
    return EXIT_OK


def delete(client: ApiClient, args: argparse.Namespace, out: IO[str], err: IO[str]) -> int:
    slot = checked_slot(args.slot)
    # A typo ends here, before anyone is asked to type it again.
    versions = client.get(f"/api/slots/{slot}/versions")
    if not args.yes:
        if not prompts.on_terminal():
            raise ClientError(f"deleting {slot} for good needs --yes when no terminal can confirm it", EXIT_USAGE)
        count = len(versions["versions"])
        print(
            f"This deletes {slot} for good: it goes offline and its {plural(count, 'version')}, its deployments"
            " and their files are removed. The audit log keeps the deletion.",
            file=err,
        )
        if prompts.ask(f"Type the slot's name ({slot}) to delete it: ", err) != slot:
            print(f"drophost: {slot} was not deleted", file=err)
            return EXIT_FAILED
    query = urllib.parse.urlencode({"purge": "true", "confirm": slot})
    answer = client.request("DELETE", f"/api/slots/{slot}?{query}")
    if args.json:
        print(json.dumps(answer), file=out)
    else:
        print(f"{slot} is deleted, with its {plural(answer['deployments'], 'deployment')}", file=out)
    return EXIT_OK


def whoami(client: ApiClient, args: argparse.Namespace, out: IO[str], err: IO[str]) -> int:
    answer: dict[str, Any] = client.get("/api/whoami")
    shown = {"server": client.server, "token_from": client.token_source, **answer}
    if args.json:
        print(json.dumps(shown), file=out)
        return EXIT_OK
    token = f"token {answer['token_id']}" if answer["token_id"] is not None else answer["via"]
    print(f"server: {client.server}", file=out)
    print(f"token:  from {client.token_source}", file=out)
    print(f"user:   {answer['user']} ({answer['role']}, by {token})", file=out)
    print(f"scopes: {' '.join(answer['scopes']) or '-'}", file=out)
    return EXIT_OK


HANDLERS: dict[str, Handler] = {
    "offline": take_offline,
    "ttl": set_ttl,
    "pin": pin,
    "unpin": pin,
    "delete": delete,
    "whoami": whoami,
}
