"""Builds in another container (Docker Compose): the service hands a build to `drophost builder`.

The service container is read-only with every capability dropped and Docker's default seccomp
profile, where bubblewrap cannot make a user namespace. The builder container can (its own seccomp
profile allows namespaces; still no capability, no Docker socket, an unprivileged user). Both mount
the builds volume at the same path: the service writes the build's copy of the tree and prepares the
caches there, then POSTs the job to the builder on their own internal network; the builder plans the
sandbox itself (only folders under its builds/work and builds/cache are bound), runs it, and answers
each output line as it comes, one JSON object a line, the last one {"error": null or a reason}.
"""

from __future__ import annotations

import http.client
import json
import logging
import threading
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path, PurePosixPath
from typing import Any

from drophost.errors import BuildError
from drophost.pipeline import sandbox
from drophost.settings import Settings

log = logging.getLogger(__name__)

_MAX_REQUEST = 1024 * 1024
# The builder's answer may be silent for a while (a quiet build); the wall timeout is the builder's.
_ANSWER_GRACE = 60.0


def encode_job(job: sandbox.Job, limits: sandbox.Limits, timeout: int) -> bytes:
    """The request body for one build (pure); tools are the builder's own."""
    return json.dumps(
        {
            "command": list(job.command),
            "tree": str(job.tree),
            "workdir": job.workdir,
            "caches": [[str(folder), relative] for folder, relative in job.caches],
            "env": dict(job.env),
            "network": job.network,
            "timeout": timeout,
            "limits": {
                "cpu_seconds": limits.cpu_seconds,
                "memory_bytes": limits.memory_bytes,
                "processes": limits.processes,
                "open_files": limits.open_files,
                "file_bytes": limits.file_bytes,
            },
        }
    ).encode()


@dataclass(frozen=True)
class Request:
    job: sandbox.Job
    limits: sandbox.Limits
    timeout: int


def decode_job(body: bytes, settings: Settings) -> Request:
    """A build request checked against what the builder allows (pure); ValueError says why not.

    Only a folder directly under builds/work (the tree) and folders two levels under builds/cache
    (the slot's caches) are bound, and only the builder's own tools (DROPHOST_BUILD_TOOLS).
    """
    data = json.loads(body)
    builds = settings.builds_dir
    command = data["command"]
    if not command or not all(isinstance(part, str) for part in command):
        raise ValueError("the command must be a list of strings")
    tree = Path(data["tree"])
    if tree.parent != builds / "work" or not tree.name.isdigit():
        raise ValueError("the tree must be a folder of builds/work")
    workdir = _relative(data["workdir"], allow_empty=True)
    caches = []
    for folder, relative in data["caches"]:
        path = Path(folder)
        if path.parent.parent != builds / "cache" or ".." in path.parts:
            raise ValueError("a cache must be a folder of builds/cache")
        caches.append((path, _relative(relative, allow_empty=False)))
    env = data["env"]
    if not all(isinstance(k, str) and isinstance(v, str) for k, v in env.items()):
        raise ValueError("the environment must map names to strings")
    asked = data["limits"]
    # The service's own limits (DROPHOST_BUILD_*): one place to set them; the container's own
    # memory and process limits (compose.yaml) bound every build together besides.
    limits = sandbox.Limits(
        cpu_seconds=int(asked["cpu_seconds"]),
        memory_bytes=int(asked["memory_bytes"]),
        processes=int(asked["processes"]),
        open_files=int(asked["open_files"]),
        file_bytes=int(asked["file_bytes"]),
    )
    job = sandbox.Job(
        command=tuple(command),
        tree=tree,
        workdir=workdir,
        caches=tuple(caches),
        env=tuple(env.items()),
        network=bool(data["network"]),
        tools=tuple(Path(t) for t in settings.build_tools.split(":") if t),
    )
    return Request(job=job, limits=limits, timeout=int(data["timeout"]))


def _relative(value: object, *, allow_empty: bool) -> str:
    if not isinstance(value, str) or (not value and not allow_empty):
        raise ValueError("a folder must be a relative path")
    path = PurePosixPath(value)
    if path.is_absolute() or ".." in path.parts or "\0" in value:
        raise ValueError("a folder must be a relative path inside the tree")
    return value


def run_remote(
    url: str, job: sandbox.Job, limits: sandbox.Limits, timeout: int, on_line: Callable[[str], None]
) -> None:
    """Run a build in the builder at `url`, handing each line to on_line; BuildError when it fails."""
    parts = urllib.parse.urlsplit(url)
    connection = http.client.HTTPConnection(parts.hostname or "", parts.port or 80, timeout=timeout + _ANSWER_GRACE)
    try:
        connection.request(
            "POST", "/run", body=encode_job(job, limits, timeout), headers={"Content-Type": "application/json"}
        )
        response = connection.getresponse()
        if response.status != 200:
            detail = response.read(2000).decode("utf-8", "replace").strip()
            raise BuildError(f"the builder refused the build: {detail}")
        while raw := response.readline():
            message: dict[str, Any] = json.loads(raw)
            if "line" in message:
                on_line(str(message["line"]))
            elif "error" in message:
                if message["error"]:
                    raise BuildError(str(message["error"]))
                return
        raise BuildError("the builder stopped answering before the build ended")
    except (OSError, http.client.HTTPException, ValueError) as exc:
        raise BuildError(f"the builder at {url} cannot be reached ({exc})") from None
    finally:
        connection.close()


class _Handler(BaseHTTPRequestHandler):
    server: BuilderServer

    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        if self.path != "/health":
            self._answer(404, "not found\n")
            return
        error = self.server.sandbox_error()
        self._answer(503 if error else 200, f"{error}\n" if error else "ok\n")

    def do_POST(self) -> None:  # noqa: N802 (http.server's name)
        if self.path != "/run":
            self._answer(404, "not found\n")
            return
        length = int(self.headers.get("Content-Length") or 0)
        if length > _MAX_REQUEST:
            self._answer(413, "the request is too large\n")
            return
        try:
            request = decode_job(self.rfile.read(length), self.server.settings)
        except (ValueError, KeyError, TypeError) as exc:
            self._answer(400, f"{exc}\n")
            return
        self.send_response(200)
        self.send_header("Content-Type", "application/x-ndjson")
        self.end_headers()
        error = self.server.run_job(request, self._send)
        self._send({"error": error})

    def _send(self, message: dict[str, Any]) -> None:
        # A write to a service that went away raises here and the runner kills the build.
        self.wfile.write(json.dumps(message).encode() + b"\n")
        self.wfile.flush()

    def _answer(self, status: int, text: str) -> None:
        body = text.encode()
        self.send_response(status)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (http.server's name)
        if self.path == "/health":
            return  # the healthcheck, every few seconds
        log.info("%s %s", self.address_string(), format % args)


class BuilderServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, settings: Settings, address: tuple[str, int]) -> None:
        super().__init__(address, _Handler)
        self.settings = settings
        self._system = sandbox.host_system()
        self._slots = threading.BoundedSemaphore(max(1, settings.build_concurrency))
        self._probe_lock = threading.Lock()
        self._probed: tuple[str | None] | None = None

    def sandbox_error(self) -> str | None:
        with self._probe_lock:
            if self._probed is None:
                self._probed = (sandbox.probe(self.settings.build_bwrap, run_as=None, system=self._system),)
            return self._probed[0]

    def run_job(self, request: Request, send: Callable[[dict[str, Any]], None]) -> str | None:
        """Run one build in bubblewrap, sending its lines; the reason it failed, or None."""
        if error := self.sandbox_error():
            return f"builds are refused: {error}"
        argv = sandbox.plan_bwrap(self.settings.build_bwrap, request.job, request.limits, self._system)
        try:
            with self._slots:
                sandbox.run(
                    argv,
                    cwd=Path("/"),
                    env={"PATH": sandbox.PATH},
                    timeout=request.timeout,
                    run_as=None,
                    on_line=lambda text: send({"line": text}),
                    sandboxed=True,
                )
        except BuildError as exc:
            return exc.message
        return None


def serve(settings: Settings, host: str, port: int) -> None:
    """Run the builder until interrupted (`drophost builder`)."""
    server = BuilderServer(settings, (host, port))
    log.info("builder listening on %s:%s; sandbox: %s", host, port, server.sandbox_error() or "bubblewrap works")
    try:
        server.serve_forever()
    finally:
        server.server_close()
