"""Git pieces of the scale benchmark: a smart-HTTP server on 127.0.0.1 and push -> webhook -> served.

Reuses the git server of the gitops tests and the signing of bench/gitops.py.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Sequence
from pathlib import Path

from tests.integration.gitops.conftest import GitHttpServer, Repo

from bench import client
from bench.gitops import SECRET, signed
from bench.site import SiteFile
from bench.stack import DropHostStack

SECRET_ENV = "DROPHOST_BENCH_HOOK"


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

    def push_and_wait(self, stack: DropHostStack, repo: Repo, files: Sequence[SiteFile], *, marker: str) -> float:
        """Commit and push `files` (plus marker.txt), then time webhook -> marker served."""
        for item in files:
            target = repo.work / item.path
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(item.data)
        repo.commit({"marker.txt": marker})
        number = self.repos.index(repo)
        body = json.dumps({"repo": self.server.url(f"site{number}"), "branch": "main"}).encode()
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
        path = f"/d/git-{number}/marker.txt"
        if not client.wait_for(lambda: _body(stack.sites_port, path) == marker.encode(), timeout=300):
            raise RuntimeError(f"git-{number} never served {marker!r}")
        return time.perf_counter() - began

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


__all__ = ["SECRET", "SECRET_ENV", "GitServer"]
