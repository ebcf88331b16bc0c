"""The client side of the `drophost` command: deploy, list, versions, rollback, diff, logs, open, a remote plan."""

from __future__ import annotations

import argparse
import json
import sys
import urllib.parse
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import IO, Any

from drophost.client import manage, prompts
from drophost.client.digest import deploy_folder
from drophost.client.hashcache import cache_file, cache_root
from drophost.client.http import (
    DEFAULT_TIMEOUT,
    EXIT_AUTH,
    EXIT_FAILED,
    EXIT_NOT_FOUND,
    EXIT_OK,
    EXIT_USAGE,
    UPLOAD_TIMEOUT,
    ApiClient,
    ClientError,
    validate_server,
)
from drophost.client.output import checked_slot, human_time, table
from drophost.errors import DrophostError, no_such_slot
from drophost.names import is_valid_slot, slot_from_filename
from drophost.text import format_bytes

COMMANDS = (
    "deploy",
    "list",
    "versions",
    "rollback",
    "promote",
    "diff",
    "logs",
    "gc",
    "open",
    "token",
    "audit",
    "lock",
    "unlock",
    *manage.HANDLERS,
)
DEFAULT_SERVER = "http://127.0.0.1:8080"
EXIT_CODES_HELP = (
    "exit codes: 0 done, 1 the server could not do it, 2 bad arguments or input, 3 server unreachable, "
    "4 token missing or wrong, 5 not found, 6 refused by the server (invalid input or conflict)"
)


class _Unused(argparse.ArgumentParser):
    """Stands in for the parser of a command that is not being run (add_commands' `only`)."""

    def __init__(self) -> None:  # no parser is built: that is the point
        pass

    def add_argument(self, *args: Any, **kwargs: Any) -> argparse.Action:
        return argparse.Action([], "unused")


def add_commands(commands: Any, only: str | None = None) -> None:
    """Register the client commands on the `drophost` parser's subparsers; with `only`, that one alone."""
    unused = _Unused()
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--server", help=f"the DropHost URL (env DROPHOST_URL; default {DEFAULT_SERVER})")
    common.add_argument("--token", help="the API token (env DROPHOST_API_TOKEN)")
    common.add_argument("--config", help="config file (default ~/.config/drophost/cli.ini)")
    common.add_argument("--json", action="store_true", help="print JSON for scripts")
    common.add_argument(
        "--timeout",
        type=float,
        metavar="SECONDS",
        help=f"give up on an answer after this long (env DROPHOST_TIMEOUT; default {DEFAULT_TIMEOUT:g};"
        f" uploads wait up to {UPLOAD_TIMEOUT:g})",
    )

    def command(name: str, help_text: str) -> argparse.ArgumentParser:
        if only is not None and name != only:
            return unused
        parser: argparse.ArgumentParser = commands.add_parser(
            name, help=help_text, parents=[common], epilog=EXIT_CODES_HELP
        )
        return parser

    deploy = command("deploy", "deploy a folder (only the files the server lacks are sent) or a ZIP file")
    deploy.add_argument("path")
    deploy.add_argument("--slot", help="the slot (default: from the folder or file name)")
    deploy.add_argument("--ttl", help="take it offline after this long: 3600, 90m, 12h, 7d")
    deploy.add_argument("--progress", choices=("auto", "always", "never"), default="auto")
    deploy.add_argument(
        "--force", action="store_true", help="upload to a slot deploy.yaml deploys from git (shown as drift)"
    )
    deploy.add_argument("--draft", action="store_true", help="publish without going live (drophost promote later)")
    deploy.add_argument(
        "--yes",
        action="store_true",
        help="do not ask on a terminal before replacing another source's live site or creating a slot"
        " whose name is close to an existing one",
    )
    command("list", "every slot, its status, version and URL")
    versions = command("versions", "the config versions of a slot (* marks the live one)")
    versions.add_argument("slot")
    rollback = command("rollback", "make an earlier version live again")
    rollback.add_argument("slot")
    rollback.add_argument("--to", type=int, metavar="N", help="the version (default: the one before)")
    promote = command("promote", "make a deployment of a slot live (a draft, or an earlier one)")
    promote.add_argument("slot")
    promote.add_argument("deployment", type=int, metavar="N", help="the deployment's id")
    diff = command("diff", "what changed between two versions of a slot: files and nginx config")
    diff.add_argument("slot")
    diff.add_argument("a", type=int)
    diff.add_argument("b", type=int)
    logs = command("logs", "a slot's deployments, with their errors, and its switches")
    logs.add_argument("slot", help="a slot, or a deployment's id for its build log")
    logs.add_argument("--follow", action="store_true", help="with an id: stream the log until the deployment ends")
    gc = command("gc", "apply retention and remove files no version needs any more")
    gc.add_argument("--dry-run", action="store_true", help="only show what would be removed")
    token = command("token", "API tokens: create (shown once), list, revoke")
    token.add_argument("action", choices=("create", "list", "revoke"))
    token.add_argument("id", nargs="?", type=int, help="the token to revoke")
    token.add_argument("--name", default="cli", help="what the token is for (default: cli)")
    token.add_argument("--scope", action="append", default=[], help="read, deploy:<slot pattern> or admin (repeatable)")
    token.add_argument("--expires", help="e.g. 90d, 12h (default: never)")
    token.add_argument("--user", help="an admin may make one for another user")
    audit = command("audit", "the audit log: who changed what, from where, with which result")
    audit.add_argument("--slot", help="only this slot (or 'user NAME', 'token ID')")
    audit.add_argument("--actor")
    audit.add_argument("--action")
    audit.add_argument("--limit", type=int, default=50)
    lock = command("lock", "lock a slot: pushes are built but nothing new goes live")
    lock.add_argument("slot")
    lock.add_argument("--reason", default="")
    unlock = command("unlock", "unlock a slot")
    unlock.add_argument("slot")
    manage.add_manage_commands(command)
    opener = command("open", "open a slot's site in the browser")
    opener.add_argument("slot")
    opener.add_argument("--print", action="store_true", dest="print_only", help="only print the URL")


def connect(args: argparse.Namespace, environ: Mapping[str, str]) -> ApiClient:
    """--server/--token, else DROPHOST_URL/DROPHOST_API_TOKEN, else the config file."""
    config_path = Path(args.config) if args.config else default_config_path(environ)
    stored: Mapping[str, str] = {}
    if config_path.is_file():
        import configparser  # only with a config file: every command pays its import otherwise

        parser = configparser.ConfigParser()
        try:
            parser.read(config_path)
        except configparser.Error:
            raise ClientError(f"{config_path} is not a config file like [drophost] server = ...", EXIT_USAGE) from None
        stored = parser["drophost"] if parser.has_section("drophost") else {}
    elif args.config:
        raise ClientError(f"there is no config file {config_path}", EXIT_USAGE)
    server = args.server or environ.get("DROPHOST_URL") or stored.get("server") or DEFAULT_SERVER
    token, source = next(
        (
            (value, where)
            for value, where in (
                (args.token, "--token"),
                (environ.get("DROPHOST_API_TOKEN"), "the environment variable DROPHOST_API_TOKEN"),
                (stored.get("token"), str(config_path)),
            )
            if value
        ),
        ("", ""),
    )
    if not token:
        raise ClientError("no API token: pass --token, set DROPHOST_API_TOKEN or put it in the config file", EXIT_AUTH)
    if any(ord(c) < 0x20 or 0x7F <= ord(c) < 0xA0 for c in token.strip()):
        # http.client's error would print the whole header, the token with it.
        raise ClientError(
            f"the API token from {source} has a control character (a line break?) in it; copy it again", EXIT_USAGE
        )
    given = getattr(args, "timeout", None)
    timeout = _timeout(given if given is not None else environ.get("DROPHOST_TIMEOUT") or stored.get("timeout"))
    client = ApiClient(validate_server(server), token.strip(), timeout=timeout)
    client.token_source = source
    if source != str(config_path) and stored.get("token") and stored["token"].strip() != token.strip():
        client.token_source += f"; {config_path} holds another"
    return client


def _timeout(raw: str | float | None) -> float:
    if raw is None or raw == "":
        return DEFAULT_TIMEOUT
    try:
        seconds = float(raw)
    except ValueError:
        seconds = 0
    if not 0 < seconds <= 86400:
        raise ClientError(f"the timeout {str(raw)[:20]!r} must be a number of seconds above 0", EXIT_USAGE)
    return seconds


def default_config_path(environ: Mapping[str, str]) -> Path:
    base = environ.get("XDG_CONFIG_HOME") or str(Path(environ.get("HOME", "~")).expanduser() / ".config")
    return Path(base) / "drophost" / "cli.ini"


def run(args: argparse.Namespace, environ: Mapping[str, str], out: IO[str], err: IO[str]) -> int:
    client: ApiClient | None = None
    try:
        client = connect(args, environ)
        # Where `deploy DIR` remembers its folders' digests (client/hashcache.py), from this environment.
        args.digest_cache = cache_root(environ)
        handler: Callable[[ApiClient, argparse.Namespace, IO[str], IO[str]], int] = _HANDLERS[args.command]
        return handler(client, args, out, err)
    except ClientError as exc:
        if exc.status == 401 and client is not None:
            # Which token was refused, never the token itself: a stale DROPHOST_API_TOKEN in the shell
            # hides a good one in cli.ini.
            exc.message += f" (the token came from {client.token_source})"
        if getattr(args, "json", False):
            print(json.dumps({"error": exc.message, "status": exc.status}), file=out)
        print(f"drophost: {exc.message}", file=err)
        return exc.exit_code


def wants_remote_plan(args: argparse.Namespace, environ: Mapping[str, str]) -> bool:
    """`drophost plan` asks a server over HTTP when one is named; else the local `drophost up`."""
    return bool(getattr(args, "server", None) or environ.get("DROPHOST_URL"))


def plan_remote(file: str, args: argparse.Namespace, environ: Mapping[str, str], out: IO[str], err: IO[str]) -> int:
    """POST the local deploy.yaml to the server's /api/plan and print its answer, as a local plan does."""
    try:
        raw = Path(file).read_bytes()
    except OSError as exc:
        print(f"drophost: cannot read {file}: {exc.strerror or exc}", file=err)
        return EXIT_USAGE
    try:
        client = connect(args, environ)
        query = urllib.parse.urlencode({"file": Path(file).name})
        answer = client.post_bytes(f"/api/plan?{query}", raw, "application/yaml")
    except ClientError as exc:
        print(f"drophost: {exc.message}", file=err)
        return exc.exit_code
    print(answer["text"], file=out)
    return EXIT_OK


# -- the commands --------------------------------------------------------------------------------
def deploy(client: ApiClient, args: argparse.Namespace, out: IO[str], err: IO[str]) -> int:
    path = Path(args.path)
    show = args.progress == "always" or (args.progress == "auto" and err.isatty() and not args.json)
    bar = ProgressBar(err) if show else None
    if path.is_dir() or path.is_file():
        guard_target(client, args, path, err)
    try:
        if path.is_dir():
            # By digest: the server says which files it lacks and only those are sent.
            try:
                slot = args.slot or slot_from_filename(path.resolve().name or "site")
            except DrophostError as exc:
                raise ClientError(exc.message, EXIT_USAGE) from None
            result = deploy_folder(
                client,
                path,
                slot=slot,
                ttl=args.ttl,
                file_progress=bar.update if bar else None,
                force=args.force,
                activate=not args.draft,
                hash_cache=cache_file(args.digest_cache, path),
            )
        elif path.is_file():
            fields = {name: value for name, value in (("slot", args.slot), ("ttl", args.ttl)) if value}
            if args.force:
                fields["force"] = "true"
            if args.draft:
                fields["activate"] = "false"
            with open(path, "rb") as archive:
                result = client.upload(archive, path.name, fields, bar.update if bar else None)
        else:
            raise ClientError(f"{args.path} is neither a folder nor a file", EXIT_USAGE)
    finally:
        if bar is not None:
            bar.finish()
    if args.json:
        print(json.dumps(result), file=out)
    elif args.draft or result.get("status") == "draft":
        # A deploy to a locked slot is kept as a draft too; its deployment says why.
        if not args.draft and result.get("error"):
            print(f"drophost: {result['error']}", file=err)
        print(
            f"{result['slot']}: draft deployment {result['id']} (version {result['config_version']}, "
            f"{result['files']} files); make it live with: drophost promote {result['slot']} {result['id']}",
            file=out,
        )
        print(f"permalink: {result['permalink']}", file=out)
    else:
        print(
            f"{result['slot']} is live at {result['url']} (version {result['config_version']}, "
            f"deployment {result['id']}, {result['files']} files)",
            file=out,
        )
        print(f"permalink: {result['permalink']}", file=out)
    return EXIT_OK


def guard_target(client: ApiClient, args: argparse.Namespace, path: Path, err: IO[str]) -> None:
    """On a terminal, unless --yes: ask before a guessed slot replaces another source's live site, or a
    named slot is created next to a similar one (deployguard.py)."""
    if args.yes or args.draft or not prompts.on_terminal():
        return
    source_name = (path.resolve().name or "site") if path.is_dir() else path.name
    try:
        slot = args.slot or slot_from_filename(source_name)
    except DrophostError:
        return  # the server names what is wrong with it
    if not is_valid_slot(slot):
        return
    # Here, not at the top: a deploy without a terminal (scripts, CI) never needs it, nor difflib.
    from drophost.client import deployguard

    deployguard.confirm_target(client, slot, named=args.slot is not None, source_name=source_name, err=err)


def list_slots(client: ApiClient, args: argparse.Namespace, out: IO[str], err: IO[str]) -> int:
    slots = client.get("/api/slots")["slots"]
    if args.json:
        print(json.dumps({"slots": slots}), file=out)
        return EXIT_OK
    rows = [
        [s["slot"], s["status"], str(s["active_version"] or "-"), human_time(s["expires_at"]), s["url"]] for s in slots
    ]
    table(out, ["SLOT", "STATUS", "VERSION", "EXPIRES", "URL"], rows)
    return EXIT_OK


def versions(client: ApiClient, args: argparse.Namespace, out: IO[str], err: IO[str]) -> int:
    answer = client.get(f"/api/slots/{checked_slot(args.slot)}/versions")
    if args.json:
        print(json.dumps(answer), file=out)
        return EXIT_OK
    rows = [
        [
            ("* " if v["version"] == answer["active"] else "  ") + str(v["version"]),
            v["status"],
            str(v["deployment_id"]),
            human_time(v["created_at"]),
            v["sha256"][:12],
        ]
        for v in answer["versions"]
    ]
    table(out, ["  VERSION", "STATUS", "DEPLOYMENT", "CREATED", "SHA256"], rows)
    return EXIT_OK


def rollback(client: ApiClient, args: argparse.Namespace, out: IO[str], err: IO[str]) -> int:
    body = {} if args.to is None else {"version": args.to}
    answer = client.request("POST", f"/api/slots/{checked_slot(args.slot)}/rollback", body)
    if args.json:
        print(json.dumps(answer), file=out)
    else:
        print(f"{answer['slot']} now serves version {answer['active']}", file=out)
    return EXIT_OK


def promote(client: ApiClient, args: argparse.Namespace, out: IO[str], err: IO[str]) -> int:
    answer = client.request("POST", f"/api/slots/{checked_slot(args.slot)}/promote", {"deployment_id": args.deployment})
    if args.json:
        print(json.dumps(answer), file=out)
    else:
        print(f"{answer['slot']} now serves deployment {args.deployment} (version {answer['active']})", file=out)
    return EXIT_OK


def diff(client: ApiClient, args: argparse.Namespace, out: IO[str], err: IO[str]) -> int:
    slot = checked_slot(args.slot)
    answer = client.get(f"/api/slots/{slot}/diff", a=args.a, b=args.b)
    if args.json:
        print(json.dumps(answer), file=out)
        return EXIT_OK
    files = answer["files"]
    for mark, names in (("A", files["added"]), ("D", files["removed"]), ("M", files["changed"])):
        for name in names:
            print(f"{mark} {name}", file=out)
    print(f"({files['unchanged']} files unchanged)", file=out)
    for text in files["text_diffs"].values():
        out.write(text)
    out.write(answer["config"])
    return EXIT_OK


def logs(client: ApiClient, args: argparse.Namespace, out: IO[str], err: IO[str]) -> int:
    if args.slot.isdigit():
        try:
            return deployment_log(client, int(args.slot), args, out)
        except ClientError as exc:
            if exc.status != 404:
                raise  # a slot may be named by digits alone: then it is that slot's history
    elif args.follow:
        raise ClientError("--follow needs a deployment's id", EXIT_USAGE)
    slot = checked_slot(args.slot)
    deployments = client.get("/api/deployments", slot=slot)["deployments"]
    events = client.get(f"/api/slots/{slot}/events")["events"]
    if not deployments:
        raise ClientError(no_such_slot(slot), EXIT_NOT_FOUND)
    if args.json:
        print(json.dumps({"slot": slot, "deployments": deployments, "events": events}), file=out)
        return EXIT_OK
    for d in deployments:
        source = d["source_name"] or d["repo"] or d["source"]
        print(f"{human_time(d['created_at'])}  deployment {d['id']}  {d['status']}  {source}", file=out)
        if d["error"]:
            print(f"    error: {d['error']}", file=out)
    for e in events:
        version = f" version {e['version']}" if e["version"] is not None else ""
        print(f"{human_time(e['created_at'])}  {e['action']}{version}", file=out)
    return EXIT_OK


def deployment_log(client: ApiClient, deployment_id: int, args: argparse.Namespace, out: IO[str]) -> int:
    """A deployment's build log; with --follow, as it is written until the deployment ends, then its outcome."""
    deployment = client.get(f"/api/deployments/{deployment_id}")
    suffix = "?follow=1" if args.follow else ""
    for chunk in client.stream(f"/api/deployments/{deployment_id}/log{suffix}"):
        out.write(chunk.decode("utf-8", "replace"))
        out.flush()
    if args.follow:
        deployment = client.get(f"/api/deployments/{deployment_id}")
    return EXIT_FAILED if deployment["status"] == "failed" else EXIT_OK


def collect_garbage(client: ApiClient, args: argparse.Namespace, out: IO[str], err: IO[str]) -> int:
    report = client.request("POST", "/api/gc", {"dry_run": bool(args.dry_run)})
    if args.json:
        print(json.dumps(report), file=out)
        return EXIT_OK
    verb = "would remove" if report["dry_run"] else "removed"
    for item in report["releases"]:
        print(f"{verb} the files of {item['slot']} version {item['version']}", file=out)
    print(f"{verb} {report['blobs']} unreferenced files, {format_bytes(report['bytes'], '')}", file=out)
    return EXIT_OK


def open_site(client: ApiClient, args: argparse.Namespace, out: IO[str], err: IO[str]) -> int:
    slot = checked_slot(args.slot)
    found = {s["slot"]: s for s in client.get("/api/slots")["slots"]}.get(slot)
    if found is None:
        raise ClientError(no_such_slot(slot), EXIT_NOT_FOUND)
    if args.json:
        print(json.dumps({"slot": slot, "url": found["url"], "status": found["status"]}), file=out)
    else:
        print(found["url"], file=out)
    if found["status"] != "live":
        print(f"drophost: {slot} is {found['status']}", file=err)
    if not args.print_only and not args.json:
        import webbrowser  # ~10 ms of imports (subprocess, shutil) that no other command needs

        webbrowser.open(found["url"])
    return EXIT_OK if found["status"] == "live" else EXIT_FAILED


def tokens(client: ApiClient, args: argparse.Namespace, out: IO[str], err: IO[str]) -> int:
    if args.action == "create":
        if not args.scope:
            raise ClientError("give at least one --scope: read, deploy:<slot pattern> or admin", EXIT_USAGE)
        body = {"name": args.name, "scopes": args.scope}
        body.update({k: v for k, v in (("expires", args.expires), ("user", args.user)) if v})
        answer = client.request("POST", "/api/tokens", body)
        if args.json:
            print(json.dumps(answer), file=out)
        else:
            print(answer["token"], file=out)
            print(f"token {answer['id']} of {answer['user']}; it is shown only now", file=err)
        return EXIT_OK
    if args.action == "revoke":
        if args.id is None:
            raise ClientError("name the token to revoke: drophost token revoke ID", EXIT_USAGE)
        answer = client.request("DELETE", f"/api/tokens/{args.id}")
        print(json.dumps(answer) if args.json else f"revoked token {answer['id']}", file=out)
        return EXIT_OK
    listed = client.get("/api/tokens")["tokens"]
    if args.json:
        print(json.dumps({"tokens": listed}), file=out)
        return EXIT_OK
    rows = [
        [
            str(t["id"]),
            t["user"],
            t["name"],
            " ".join(t["scopes"]),
            "revoked" if t["revoked_at"] else (t["expires_at"] or "never")[:19],
            (t["last_used_at"] or "never")[:19],
        ]
        for t in listed
    ]
    table(out, ["ID", "USER", "NAME", "SCOPES", "EXPIRES", "LAST USED"], rows)
    return EXIT_OK


def audit_log(client: ApiClient, args: argparse.Namespace, out: IO[str], err: IO[str]) -> int:
    answer = client.get("/api/audit", target=args.slot, actor=args.actor, action=args.action, limit=args.limit)
    if args.json:
        print(json.dumps(answer), file=out)
        return EXIT_OK
    rows = [
        [e["at"][:19], e["actor"], e["address"] or "-", e["action"], e["target"] or "-", e["result"]]
        for e in answer["entries"]
    ]
    table(out, ["TIME", "ACTOR", "ADDRESS", "ACTION", "TARGET", "RESULT"], rows)
    return EXIT_OK


def lock_slot(client: ApiClient, args: argparse.Namespace, out: IO[str], err: IO[str]) -> int:
    body = {"reason": args.reason} if args.reason else {}
    answer = client.request("POST", f"/api/slots/{checked_slot(args.slot)}/lock", body)
    print(json.dumps(answer) if args.json else f"{answer['slot']} is locked: {answer['reason']}", file=out)
    return EXIT_OK


def unlock_slot(client: ApiClient, args: argparse.Namespace, out: IO[str], err: IO[str]) -> int:
    answer = client.request("POST", f"/api/slots/{checked_slot(args.slot)}/unlock", {})
    print(json.dumps(answer) if args.json else f"{answer['slot']} is unlocked", file=out)
    return EXIT_OK


_HANDLERS: dict[str, Callable[[ApiClient, argparse.Namespace, IO[str], IO[str]], int]] = {
    "deploy": deploy,
    "gc": collect_garbage,
    "list": list_slots,
    "versions": versions,
    "rollback": rollback,
    "promote": promote,
    "diff": diff,
    "logs": logs,
    "open": open_site,
    "token": tokens,
    "audit": audit_log,
    "lock": lock_slot,
    "unlock": unlock_slot,
    **manage.HANDLERS,
}


# -- output ----------------------------------------------------------------------------------------
class ProgressBar:
    """An upload progress bar on stderr: redrawn in place on a terminal, a few lines otherwise.

    One bar for the whole upload: its bytes and, for a folder, its files.
    """

    def __init__(self, stream: IO[str], width: int = 30) -> None:
        self.stream = stream
        self.width = width
        self.shown: tuple[int, int] | None = None
        self.tty = stream.isatty()
        self.drawn = 0

    def update(self, sent: int, total: int, files_sent: int | None = None, files_total: int | None = None) -> None:
        percent = 100 * sent // total if total else 100
        # A terminal shows every percent and file; a log gets a line per quarter.
        step = (percent, files_sent or 0) if self.tty else (percent // 25 * 25, int(files_sent == files_total))
        if step == self.shown:
            return
        self.shown = step
        filled = self.width * percent // 100
        bar = "#" * filled + "." * (self.width - filled)
        text = f"uploading [{bar}] {percent:3d}% {format_bytes(sent, '')}/{format_bytes(total, '')}"
        if files_total is not None:
            text += f", {files_sent}/{files_total} files"
        if self.tty:
            # Padded to the longest line drawn, so a shorter one leaves no tail of the last.
            self.drawn = max(self.drawn, len(text))
            self.stream.write("\r" + text.ljust(self.drawn))
        else:
            self.stream.write(text + "\n")
        self.stream.flush()

    def finish(self) -> None:
        if self.tty and self.shown is not None:
            self.stream.write("\n")
            self.stream.flush()


def main(argv: list[str], environ: Mapping[str, str]) -> int:
    """For tests: parse and run a client command with the given environment."""
    parser = argparse.ArgumentParser(prog="drophost")
    add_commands(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return run(args, environ, sys.stdout, sys.stderr)
