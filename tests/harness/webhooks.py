"""Signed webhook deliveries: the secret the GitOps stacks are started with and deploy.yaml naming it."""

from __future__ import annotations

import hashlib
import hmac

from tests.harness.git import GitHttpServer

SECRET = "webhook-secret-for-tests"
ENV = {"HOOK_SECRET": SECRET}


def hex_hmac(body: bytes, secret: str = SECRET) -> str:
    return hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def site_yaml(server: GitHttpServer, name: str, branch: str, slot: str = "site", secret: bool = True) -> str:
    text = f"sites:\n  - slot: {slot}\n    repo: {server.url(name)}\n    branch: {branch}\n"
    return text + ("    webhook_secret_env: HOOK_SECRET\n" if secret else "")


def only_queued(answer: dict[str, object]) -> int:
    """The one deployment a delivery queued."""
    queued = answer["queued"]
    assert isinstance(queued, list) and len(queued) == 1, answer
    return int(queued[0])
