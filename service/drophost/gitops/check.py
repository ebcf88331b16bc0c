"""`drophost check` and `drophost plan`: deploy.yaml from the command line."""

from __future__ import annotations

import json
import sys
import urllib.error
import urllib.request
from collections.abc import Mapping
from pathlib import Path

from drophost.errors import DrophostError
from drophost.gitops.manifest import load_file, secret_problems
from drophost.gitops.plan import source_of
from drophost.settings import Settings


def check(file: str, environ: Mapping[str, str]) -> int:
    """Validate a deploy.yaml: 0 when it can be applied, 1 with every problem printed otherwise."""
    try:
        manifest = load_file(Path(file))
    except DrophostError as exc:
        print(exc.message, file=sys.stderr)
        return 1
    for site in manifest.sites:
        kind = "previews" if site.is_preview else "slot"
        print(f"{manifest.file}:{site.line} {kind} {site.slot}: {source_of(site)}")
    problems = secret_problems(manifest, environ)
    for problem in problems:
        print(problem, file=sys.stderr)
    if problems:
        return 1
    print(f"{manifest.file}: OK, {len(manifest.sites)} site(s)")
    return 0


def show_plan(file: str, settings: Settings) -> int:
    """Ask the running service what applying `file` would change, and print it."""
    try:
        raw = Path(file).read_bytes()
    except OSError as exc:
        print(f"{Path(file).name}: cannot be read ({exc.strerror})", file=sys.stderr)
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
        body = json.loads(exc.read() or b"{}")
        print(body.get("error", f"the service answered {exc.code}"), file=sys.stderr)
        return 1
    except (OSError, ValueError) as exc:
        print(f"drophost: the service on port {settings.port} could not be reached ({exc})", file=sys.stderr)
        return 1
    print(answer["text"])
    return 0


def _stored_token(path: Path) -> str:
    try:
        return path.read_text().strip()
    except OSError:
        return ""
