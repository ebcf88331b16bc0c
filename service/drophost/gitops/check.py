"""`drophost check` and `drophost plan`: deploy.yaml from the command line."""

from __future__ import annotations

import json
import sys
import urllib.error
import urllib.request
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from drophost.errors import DrophostError, ManifestError
from drophost.gitops.declared import config_lines
from drophost.gitops.manifest import MAX_BYTES, load_file, read_file, secret_problems
from drophost.gitops.plan import source_of
from drophost.pipeline.feedback import host_of
from drophost.settings import Settings


def check(file: str, environ: Mapping[str, str], *, strict: bool = False) -> int:
    """Validate a deploy.yaml: 0 when it can be applied, 1 with every problem printed otherwise.

    A webhook_secret_env or token_env variable unset in this shell is a warning: the file is checked
    where it is written (a config repository's CI), and the variables live where the service runs.
    `strict` makes them errors, for a check run with the service's own environment."""
    try:
        manifest = load_file(Path(file))
    except DrophostError as exc:
        print(exc.message, file=sys.stderr)
        return 1
    for site in manifest.sites:
        kind = "previews" if site.is_preview else "pull requests" if site.is_pull_request else "slot"
        print(f"{manifest.file}:{site.line} {kind} {site.slot}: {source_of(site)}")
        if site.status is not None:
            print(f"{manifest.file}:{site.line} {kind} {site.slot}: commit statuses to {site.status.provider}")
    for index, notifier in enumerate(manifest.notifications):
        # The host only: a webhook URL's path is often its secret.
        where = f"{notifier.format} to {host_of(notifier.url)}"
        print(f"{manifest.file} notifications[{index}]: {where} on {', '.join(notifier.events)}")
    problems = secret_problems(manifest, environ)
    for problem in problems:
        print(problem if strict else f"warning: {problem} here (the service needs it)", file=sys.stderr)
    if problems and strict:
        return 1
    warned = f", {len(problems)} warning(s)" if problems else ""
    print(f"{manifest.file}: OK, {len(manifest.sites)} site(s){warned}")
    return 0


def show_plan(file: str, settings: Settings) -> int:
    """Ask the running service what applying `file` would change, and print it."""
    try:
        raw = read_file(Path(file))
    except ManifestError as exc:
        print(exc.message, file=sys.stderr)
        return 1
    if len(raw) > MAX_BYTES:  # the service would refuse the body before reading it
        print(f"{Path(file).name}: is larger than {MAX_BYTES} bytes", file=sys.stderr)
        return 1
    token = settings.api_token or _stored_token(settings.api_token_file)
    request = urllib.request.Request(
        f"http://{settings.local_api_address}/api/plan?file={Path(file).name}",
        data=raw,
        method="POST",
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/yaml"},
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            answer = json.loads(response.read())
    except urllib.error.HTTPError as exc:
        body = _error_body(exc)
        print(body.get("error", f"the service answered {exc.code}"), file=sys.stderr)
        config = body.get("config")
        if isinstance(config, dict):
            for line in config_lines(config):
                print(line, file=sys.stderr)
        return 1
    except (OSError, ValueError) as exc:
        print(f"drophost: the service on port {settings.port} could not be reached ({exc})", file=sys.stderr)
        return 1
    print(answer["text"])
    return 0


def _error_body(exc: urllib.error.HTTPError) -> dict[str, Any]:
    """The JSON error of an answer, or {} when it is something else (a proxy's HTML page)."""
    try:
        body = json.loads(exc.read() or b"{}")
    except (OSError, ValueError):
        return {}
    return body if isinstance(body, dict) else {}


def _stored_token(path: Path) -> str:
    try:
        return path.read_text().strip()
    except OSError:
        return ""
