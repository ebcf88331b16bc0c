"""A release's rule files and a protected slot's password file: the few effects of site rules.

`_redirects` and `_headers` are read from the top of a published tree before it is sealed, and
removed from it, so they are never served. The htpasswd lines of `access: {basic_auth_env: NAME}`
come from the service's environment (NAME, or the file NAME_FILE names) and are written under
nginx/auth/, outside every release, named by their content: a deploy with the same passwords
compiles the same config and keeps the fast path (the link moves, nginx is not reloaded).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from drophost.names import validate_slot
from drophost.pipeline import sitecompile, siterules
from drophost.pipeline.context import Context
from drophost.pipeline.siterules import Access, HeaderRule, Redirect, RuleError, RuleLimits, SiteOptions

RULE_FILES = ("_redirects", "_headers")
_MAX_RULE_FILE_BYTES = 4 * 1024 * 1024


def take_rule_files(tree: Path) -> dict[str, str]:
    """The texts of the tree's top-level `_redirects` and `_headers`, removed from the tree."""
    return {name: text for name in RULE_FILES if (text := _take(tree / name))}


def parse_rule_files(
    texts: Mapping[str, str], limits: RuleLimits
) -> tuple[tuple[Redirect, ...], tuple[HeaderRule, ...]]:
    """The rules of the files' texts (422 naming the file and the line)."""
    redirects = siterules.parse_redirects(texts["_redirects"], limits=limits) if texts.get("_redirects") else ()
    headers = siterules.parse_headers(texts["_headers"], limits=limits) if texts.get("_headers") else ()
    return redirects, headers


def compile_site(ctx: Context, slot: str, options: SiteOptions, files: Mapping[str, str]) -> tuple[str, dict[str, Any]]:
    """The slot's own part of the nginx config, and what it was compiled from (stored with the
    version, so its rules can be compiled again over the same release). A protected slot's
    password file is written first."""
    limits = RuleLimits.from_settings(ctx.settings)
    redirects, headers = parse_rule_files(files, limits)
    rules = siterules.combine(options, redirects, headers, limits=limits)
    auth_file = ""
    if rules.access is not None:
        mark_protected(ctx.settings.nginx_dir / "protected", slot)
    if rules.access is not None and rules.access.basic_auth_env:
        lines = password_lines(rules.access, ctx.environ)
        auth_file = write_password_file(ctx.nginx.auth_dir, slot, lines, group=ctx.nginx.worker_group)
    source = {"site": siterules.options_json(options), "files": dict(files)}
    return sitecompile.render_part(slot, rules, auth_file=auth_file), source


def mark_protected(folder: Path, slot: str) -> None:
    """A slot that ever had access rules serves no deployment permalinks (nginx.conf.j2 checks
    for this file): they would serve its files without the password or address check. Never
    removed, so no older protected release becomes reachable either."""
    folder.mkdir(mode=0o755, exist_ok=True)
    (folder / validate_slot(slot)).touch(mode=0o644)


def _take(path: Path) -> str:
    if not path.is_file() or path.is_symlink():
        return ""
    if path.stat().st_size > _MAX_RULE_FILE_BYTES:
        raise RuleError(f"larger than {_MAX_RULE_FILE_BYTES} bytes", file=path.name)
    data = path.read_bytes()
    path.unlink()
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise RuleError("not UTF-8 text", file=path.name) from None


def password_lines(access: Access, environ: Mapping[str, str]) -> str:
    """The htpasswd lines named by basic_auth_env (the variable, or the file NAME_FILE names)."""
    name = access.basic_auth_env
    text = environ.get(name, "")
    if not text and environ.get(f"{name}_FILE"):
        try:
            text = Path(environ[f"{name}_FILE"]).read_text()
        except (OSError, UnicodeDecodeError):
            raise RuleError(f"the file {name}_FILE names cannot be read", file="access") from None
    lines = [line.strip() for line in text.replace(",", "\n").splitlines() if line.strip()]
    if not lines:
        raise RuleError(f"basic_auth_env: {name} (or {name}_FILE) is not set in DropHost's environment", file="access")
    for line in lines:
        user, colon, digest = line.partition(":")
        if not colon or not user or not digest or any(ord(c) < 0x21 or ord(c) > 0x7E for c in line):
            raise RuleError(f"{name} must hold htpasswd lines (user:hash)", file="access")
        if not digest.startswith(("$apr1$", "$2y$", "$2b$", "$5$", "$6$", "{SHA}", "{SSHA}")):
            raise RuleError(f"{name}: a password must be hashed (htpasswd -B or -m), not plain text", file="access")
    return "".join(f"{line}\n" for line in lines)


def write_password_file(auth_dir: Path, slot: str, lines: str, *, group: int | None = None) -> str:
    """Write the slot's htpasswd (once per content); return its path relative to nginx's config folder."""
    name = f"{slot}-{hashlib.sha256(lines.encode()).hexdigest()[:16]}.htpasswd"
    path = auth_dir / name
    if not path.exists() or path.read_text() != lines:
        tmp = auth_dir / f".{name}.{os.getpid()}.tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o640)
        with os.fdopen(fd, "w") as handle:
            handle.write(lines)
        if group is not None:
            os.chown(tmp, -1, group)
        os.replace(tmp, path)
    return f"auth/{name}"
