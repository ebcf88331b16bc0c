"""Git pieces of the scale benchmark: a smart-HTTP server on 127.0.0.1 and push -> webhook -> served.

Reuses the git server of the gitops tests; bench/gitops.py uses the same pieces.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import shutil
import time
from collections.abc import Sequence
from pathlib import Path

from tests.harness.git import GitHttpServer, Repo

from bench import client
from bench.site import SiteFile
from bench.stack import DropHostStack

SECRET = "bench-secret"
SECRET_ENV = "DROPHOST_BENCH_HOOK"


def signed(body: bytes) -> dict[str, str]:
    """The generic webhook's signature header for `body`."""
    return {"X-Signature": "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()}


class GitServer:
    """`count` repositories, each declared in a deploy.yaml as slot git-<n> (branch main)."""

    def __init__(self, work: Path, count: int) -> None:
        self.root = work / "git-server"
        self.root.mkdir()
        self.server = GitHttpServer(self.root)
        self.repos = [Repo(self.root, f"site{number}") for number in range(count)]
        self.config = work / "deploy.yaml"
        sites = "".join(
            f"  - slot: git-{number}\n    repo: {self.server.url(f'site{number}')}\n    branch: main\n"
            f"    webhook_secret_env: {SECRET_ENV}\n"
            for number in range(count)
        )
        self.config.write_text(f"sites:\n{sites}")

    def url(self, repo: Repo) -> str:
        return self.server.url(f"site{self.repos.index(repo)}")

    def slot(self, repo: Repo) -> str:
        return f"git-{self.repos.index(repo)}"

    def webhook_body(self, repo: Repo) -> bytes:
        return json.dumps({"repo": self.url(repo), "branch": "main"}).encode()

    def push(self, repo: Repo, files: Sequence[SiteFile], *, marker: str) -> None:
        """Commit and push `files` (plus marker.txt) to the main branch."""
        for item in files:
            target = repo.work / item.path
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(item.data)
        repo.commit({"marker.txt": marker})

    def deliver_and_wait(self, stack: DropHostStack, repo: Repo, *, marker: str) -> float:
        """Time a signed webhook until nginx serves `marker` as the repository's marker.txt."""
        body = self.webhook_body(repo)
        began = time.perf_counter()
        answer = client.request(
            stack.port,
            "POST",
            "/api/webhooks/generic",
            body=body,
            headers={"Content-Type": "application/json", **signed(body)},
        )
        if answer.status != 202:
            raise RuntimeError(f"the webhook answered {answer.status}: {answer.body[:300]!r}")
        self.wait_served(stack, repo, marker)
        return time.perf_counter() - began

    def wait_served(self, stack: DropHostStack, repo: Repo, marker: str) -> None:
        path = f"/d/{self.slot(repo)}/marker.txt"
        if not client.wait_for(lambda: _body(stack.sites_port, path) == marker.encode(), timeout=300):
            raise RuntimeError(f"{self.slot(repo)} never served {marker!r}")

    def push_and_wait(self, stack: DropHostStack, repo: Repo, files: Sequence[SiteFile], *, marker: str) -> float:
        """Commit and push `files` (plus marker.txt), then time webhook -> marker served."""
        self.push(repo, files, marker=marker)
        return self.deliver_and_wait(stack, repo, marker=marker)

    def __enter__(self) -> GitServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.close()
        shutil.rmtree(self.root, ignore_errors=True)


def _body(port: int, path: str) -> bytes | None:
    try:
        return client.request(port, "GET", path, timeout=5).body
    except OSError:
        return None


__all__ = ["SECRET", "SECRET_ENV", "GitServer", "signed"]
