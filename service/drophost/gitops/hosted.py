"""Repositories DropHost hosts itself (`repo: hosted:NAME`): bare repos, their hook, git http-backend."""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from importlib import resources
from io import BufferedReader
from pathlib import Path
from typing import IO

from drophost import runner
from drophost.errors import DrophostError, ValidationError
from drophost.gitops.mirror import GitSource
from drophost.gitops.repourls import RepoUrl
from drophost.settings import Settings

# What the smart HTTP protocol asks for; anything else under /git/NAME.git/ is refused.
SMART_PATHS = {("GET", "info/refs"), ("POST", "git-upload-pack"), ("POST", "git-receive-pack")}
SERVICES = {"git-upload-pack", "git-receive-pack"}
# pre-receive refuses a push past the tree caps, then deploys it as drafts, before any ref moves:
# a failed deploy refuses the push. post-receive, run only for the refs git moved, makes those
# drafts live (landing.py) and takes the previews of deleted branches offline.
HOOKS = ("pre-receive", "post-receive")
# Where receive-pack keeps a push's objects until pre-receive accepts it (git's tmp_objdir).
QUARANTINE_PREFIX = "tmp_objdir-incoming-"
# A shebang line longer than this may be cut by the kernel (its limit was 127 bytes before Linux 5.1).
_SHEBANG_BYTES = 120
_CHUNK = 64 * 1024


def hook_text(packaged: str, interpreter: str) -> str:
    """A hook as installed (pure): run by the service's own Python, isolated (-I) and without
    site-packages (-S; the hooks need the standard library only), rather than by the first
    `python3` on PATH: a version DropHost runs on, and started in tens of milliseconds, where a
    version manager's shim (pyenv's) takes ~0.2 s per hook, twice per push. An interpreter path a
    shebang cannot hold keeps the packaged `#!/usr/bin/env python3`."""
    first, newline, rest = packaged.partition("\n")
    shebang = f"#!{interpreter} -IS"
    if not first.startswith("#!") or not interpreter.startswith("/") or len(shebang.encode()) > _SHEBANG_BYTES:
        return packaged
    if any(char.isspace() for char in interpreter):
        return packaged
    return f"{shebang}{newline}{rest}"


@dataclass(frozen=True)
class CgiResponse:
    status: int
    headers: dict[str, str]
    body: Iterator[bytes]


class HostedRepos:
    def __init__(self, settings: Settings, source: GitSource) -> None:
        self.settings = settings
        self.source = source

    def path(self, name: str) -> Path:
        return self.source.hosted_path(name)

    def ensure(self, name: str) -> Path:
        """Create the bare repository if needed and (re)install DropHost's hooks and limits."""
        path = self.path(name)
        self.source.ensure_bare(path)
        hooks = path / "hooks"
        hooks.mkdir(exist_ok=True)
        for hook in HOOKS:
            packaged = resources.files("drophost.hooks").joinpath(hook).read_text()
            # Written aside and renamed: a push running now reads the old hook or the new, never half of one.
            staged = hooks / f".{hook}.new"
            staged.write_text(hook_text(packaged, sys.executable))
            os.chmod(staged, 0o755)
            os.replace(staged, hooks / hook)
        for key, value in (
            ("http.receivepack", "true"),
            ("receive.maxInputSize", str(self.settings.max_upload_bytes)),
            ("receive.fsckObjects", "true"),
            ("core.hooksPath", str(hooks)),
        ):
            runner.run(
                [self.settings.git_binary, f"--git-dir={path}", "config", "--", key, value],
                env=self.source.env(),
                timeout=30,
            )
        return path

    def quarantine(self, name: str, raw: object) -> Path:
        """The quarantine folder a pre-receive hook names: only one inside this repository's objects."""
        objects = (self.path(name) / "objects").resolve()
        if isinstance(raw, str) and raw.startswith("/") and "\0" not in raw:
            folder = Path(raw).resolve()
            if folder.parent == objects and folder.name.startswith(QUARANTINE_PREFIX) and folder.is_dir():
                return folder
        raise ValidationError("the hook must name the quarantine folder of this repository's push")

    def has_branch(self, repo: RepoUrl, branch: str) -> bool:
        try:
            return self.source.remote_head(repo, branch) is not None
        except DrophostError:
            return False

    def cgi_environment(
        self,
        *,
        name: str,
        rest: str,
        method: str,
        query: str,
        headers: Mapping[str, str],
        user: str,
        hook_env: Mapping[str, str],
    ) -> dict[str, str]:
        env = self.source.env()
        env.update(
            {
                "GIT_PROJECT_ROOT": str(self.source.hosted),
                "GIT_HTTP_EXPORT_ALL": "1",
                "GIT_HTTP_MAX_REQUEST_BUFFER": str(self.settings.max_upload_bytes),
                "PATH_INFO": f"/{name}.git/{rest}",
                "REQUEST_METHOD": method,
                "QUERY_STRING": query,
                "CONTENT_TYPE": headers.get("content-type", ""),
                "REMOTE_USER": user,
                "REMOTE_ADDR": "127.0.0.1",
                "SERVER_PROTOCOL": "HTTP/1.1",
                "GATEWAY_INTERFACE": "CGI/1.1",
                "DROPHOST_REPOSITORY": name,
                # the tree caps pre-receive applies (the same a ZIP and a fetched commit get)
                "DROPHOST_MAX_ENTRIES": str(self.settings.max_entries),
                "DROPHOST_MAX_PATH_DEPTH": str(self.settings.max_path_depth),
                "DROPHOST_MAX_UNPACKED_BYTES": str(self.settings.max_unpacked_bytes),
                "DROPHOST_GIT_TIMEOUT": str(self.settings.git_timeout),
                "DROPHOST_GIT_BINARY": self.settings.git_binary,
                **hook_env,
            }
        )
        if headers.get("content-encoding"):
            env["HTTP_CONTENT_ENCODING"] = headers["content-encoding"]
        if headers.get("git-protocol"):
            env["GIT_PROTOCOL"] = headers["git-protocol"]
        return env

    def run_backend(self, env: Mapping[str, str], body: IO[bytes], timeout: float) -> CgiResponse:
        """Run `git http-backend` as CGI; its output streams back, killed after `timeout` seconds."""
        process = runner.spawn([self.settings.git_binary, "http-backend"], env=env, stdin=body)
        timer = threading.Timer(timeout, process.kill)
        timer.daemon = True
        timer.start()
        assert process.stdout is not None
        stdout: BufferedReader = process.stdout  # type: ignore[assignment]
        raw = b""
        while b"\r\n\r\n" not in raw and b"\n\n" not in raw:
            chunk = stdout.read1(_CHUNK)
            if not chunk:
                break
            raw += chunk
        separator = b"\r\n\r\n" if b"\r\n\r\n" in raw else b"\n\n"
        head, _, rest = raw.partition(separator)
        status = 200
        headers: dict[str, str] = {}
        for line in head.decode("latin-1").splitlines():
            key, _, value = line.partition(":")
            if key.lower() == "status":
                status = int(value.strip().split(" ", 1)[0] or 500)
            elif key:
                headers[key.strip()] = value.strip()

        def stream() -> Iterator[bytes]:
            try:
                if rest:
                    yield rest
                while chunk := stdout.read1(_CHUNK):
                    yield chunk
            finally:
                stdout.close()
                process.wait()
                timer.cancel()
                body.close()

        if not head:
            status = 502
        return CgiResponse(status=status, headers=headers, body=stream())
