"""Real git: repositories to commit and push to, and git's smart HTTP server on 127.0.0.1."""

from __future__ import annotations

import os
import subprocess
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

GIT_ENV = {
    "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
    "HOME": "/nonexistent",
    "GIT_CONFIG_NOSYSTEM": "1",
    "GIT_CONFIG_GLOBAL": "/dev/null",
    "GIT_AUTHOR_NAME": "Test",
    "GIT_AUTHOR_EMAIL": "test@example.lan",
    "GIT_COMMITTER_NAME": "Test",
    "GIT_COMMITTER_EMAIL": "test@example.lan",
    "GIT_TERMINAL_PROMPT": "0",
}


def git(*args: str, cwd: Path | None = None, env: dict[str, str] | None = None) -> str:
    result = subprocess.run(
        ["git", *args], cwd=cwd, env={**GIT_ENV, **(env or {})}, capture_output=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr.decode()
    return result.stdout.decode().strip()


class Repo:
    """A working repository whose commits are pushed to a bare repository the server exports."""

    def __init__(self, root: Path, name: str) -> None:
        self.bare = root / f"{name}.git"
        self.work = root / f"{name}-work"
        git("init", "--quiet", "--bare", str(self.bare))
        git("init", "--quiet", str(self.work))
        git("remote", "add", "origin", str(self.bare), cwd=self.work)

    def commit(self, files: dict[str, str], *, branch: str = "main", symlinks: dict[str, str] | None = None) -> str:
        existing = git("branch", "--list", branch, cwd=self.work)
        git("checkout", "--quiet", *([branch] if existing else ["-b", branch]), cwd=self.work)
        for name, text in files.items():
            path = self.work / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
        for name, target in (symlinks or {}).items():
            (self.work / name).parent.mkdir(parents=True, exist_ok=True)
            os.symlink(target, self.work / name)
        git("add", "-A", cwd=self.work)
        git("commit", "--quiet", "--allow-empty", "-m", f"commit on {branch}", cwd=self.work)
        git("push", "--quiet", "--force", "origin", f"{branch}:{branch}", cwd=self.work)
        return git("rev-parse", "HEAD", cwd=self.work)

    def delete_branch(self, branch: str) -> None:
        git("push", "--quiet", "origin", f":{branch}", cwd=self.work)

    def push_ref(self, branch: str, ref: str) -> None:
        """Push a branch's head to another ref, as a forge keeps refs/pull/N/head."""
        git("push", "--quiet", "--force", "origin", f"refs/heads/{branch}:{ref}", cwd=self.work)

    def tag(self, name: str, files: dict[str, str], *, annotated: bool = True) -> str:
        """Commit `files` on main, tag that commit (annotated: a tag object) and push only the tag."""
        git("checkout", "--quiet", "main", cwd=self.work)
        for file, text in files.items():
            (self.work / file).write_text(text)
        git("add", "-A", cwd=self.work)
        git("commit", "--quiet", "--allow-empty", "-m", f"release {name}", cwd=self.work)
        git("tag", *(["-a", "-m", name] if annotated else []), name, cwd=self.work)
        git("push", "--quiet", "--force", "origin", f"refs/tags/{name}:refs/tags/{name}", cwd=self.work)
        return git("rev-parse", "HEAD", cwd=self.work)


class GitHttpServer:
    """`git http-backend` behind a tiny CGI wrapper: a real smart HTTP server on 127.0.0.1."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.requests = 0
        # Repositories that need an Authorization header (name -> the header's exact value): as a
        # private repository on a forge answers, 401 with a Basic challenge without it.
        self.private: dict[str, str] = {}
        self.authorizations: list[str] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                self.cgi()

            def do_POST(self) -> None:
                self.cgi()

            def cgi(self) -> None:
                server.requests += 1
                given = self.headers.get("authorization", "")
                if given:
                    server.authorizations.append(given)
                name = self.path.lstrip("/").split("/", 1)[0].removesuffix(".git")
                if name in server.private and given != server.private[name]:
                    self.send_response(401)
                    self.send_header("WWW-Authenticate", 'Basic realm="git"')
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                if self.path.startswith("/moved/"):
                    self.send_response(301)
                    self.send_header("Location", self.path[len("/moved") :])
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                path, _, query = self.path.partition("?")
                length = int(self.headers.get("content-length") or 0)
                body = self.rfile.read(length) if length else b""
                env = {
                    **GIT_ENV,
                    "GIT_PROJECT_ROOT": str(root),
                    "GIT_HTTP_EXPORT_ALL": "1",
                    "PATH_INFO": path,
                    "QUERY_STRING": query,
                    "REQUEST_METHOD": self.command,
                    "CONTENT_TYPE": self.headers.get("content-type", ""),
                    "CONTENT_LENGTH": str(length),
                    "REMOTE_ADDR": "127.0.0.1",
                }
                if self.headers.get("content-encoding"):
                    env["HTTP_CONTENT_ENCODING"] = self.headers["content-encoding"]
                if self.headers.get("git-protocol"):
                    env["GIT_PROTOCOL"] = self.headers["git-protocol"]
                out = subprocess.run(
                    ["git", "http-backend"], input=body, env=env, capture_output=True, timeout=60, check=False
                ).stdout
                head, _, payload = out.partition(b"\r\n\r\n")
                status = 200
                headers = []
                for line in head.decode("latin-1").splitlines():
                    key, _, value = line.partition(":")
                    if key.lower() == "status":
                        status = int(value.split()[0])
                    elif key:
                        headers.append((key, value.strip()))
                self.send_response(status)
                for key, value in headers:
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.port}/{name}.git"

    def repo(self, name: str) -> Repo:
        return Repo(self.root, name)

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


# deploy.yaml declaring one site from a repository hosted by DropHost itself (pushed to it).
HANDBOOK = "sites:\n  - slot: handbook\n    repo: hosted:handbook\n    branch: main\n"


def work_repo(tmp_path: Path, files: dict[str, str]) -> Path:
    """A repository on branch main with one commit of `files`, to push to the hosted `handbook`."""
    work = tmp_path / "handbook"
    git("init", "--quiet", "-b", "main", str(work))
    for name, text in files.items():
        (work / name).parent.mkdir(parents=True, exist_ok=True)
        (work / name).write_text(text)
    git("add", "-A", cwd=work)
    git("commit", "--quiet", "-m", "write", cwd=work)
    return work


def push(work: Path, url: str, *refspecs: str) -> tuple[int, str]:
    """git push's exit status and everything it printed: some tests expect the push to be refused."""
    result = subprocess.run(
        ["git", "push", url, *refspecs], cwd=work, env=GIT_ENV, capture_output=True, timeout=120, check=False
    )
    return result.returncode, result.stderr.decode() + result.stdout.decode()
