"""Helpers for the integration tests: sites to deploy, what was served, what is recorded."""

from __future__ import annotations

import atexit
import functools
import hashlib
import os
import re
from pathlib import Path
from typing import Any

import httpx2 as httpx
import psycopg

from drophost.settings import Settings
from tests.harness.auth import AUTH
from tests.harness.stacks import Stack
from tests.zipcraft import std_zip

# Absolute server paths a client must never see in an error.
_SERVER_PATH = re.compile(r"/(?:tmp|work|usr|var|home|root|srv|opt|etc|proc)/|site-packages|Traceback")


@functools.cache
def nginx_client() -> httpx.Client:
    """One client for requests to nginx: creating one per request (httpx.get) costs ~50 ms of TLS setup.

    No keep-alive, so that a reload closing an idle connection cannot fail a request.
    """
    client = httpx.Client(timeout=10, trust_env=False, limits=httpx.Limits(max_keepalive_connections=0))
    atexit.register(client.close)
    return client


def fetch(stack: Stack, path: str) -> httpx.Response:
    """Sites (/d/...) from the sites origin, everything else from the main port, as Stack.get."""
    base = stack.sites_base_url if path.startswith("/d/") else stack.base_url
    return nginx_client().get(base + path)


def site(label: str, *, extra: dict[str, bytes] | None = None) -> dict[str, bytes]:
    """A small site with text and binary files whose every byte depends on `label`."""
    seed = hashlib.sha256(label.encode()).digest()
    binary = b"".join(hashlib.sha256(seed + bytes([i])).digest() for i in range(256))  # 8 KiB
    files = {
        "index.html": f"<!doctype html><h1>{label}</h1>".encode(),
        "css/site.css": f"/* {label} */ body {{ color: #{seed.hex()[:6]}; }}".encode(),
        "img/logo.png": b"\x89PNG\r\n\x1a\n" + binary,
        "data/blob.bin": bytes(range(256)) + binary[::-1],
    }
    files.update(extra or {})
    return files


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def upload(stack: Stack, data: bytes, *, slot: str | None = "site", filename: str = "site.zip") -> httpx.Response:
    form = {"slot": slot} if slot is not None else {}
    return stack.client.post(
        "/api/deployments", files={"file": (filename, data, "application/zip")}, data=form, headers=AUTH
    )


def deploy_site(stack: Stack, files: dict[str, bytes], slot: str = "site") -> dict[str, Any]:
    response = upload(stack, std_zip(dict(files)), slot=slot)
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


def visited(path: str) -> str:
    """The URL path a visitor reads a published file at: a page at its clean URL (about.html at
    about, blog/index.html at blog/), since nginx redirects its .html URL there."""
    if path == "index.html" or path.endswith("/index.html"):
        return path.removesuffix("index.html")
    return path.removesuffix(".html")


def served(stack: Stack, slot: str, paths: list[str]) -> dict[str, str | int]:
    """sha256 of each path as nginx serves it now (the status code when it is not 200)."""
    found: dict[str, str | int] = {}
    for path in paths:
        response = fetch(stack, f"/d/{slot}/{visited(path)}")
        found[path] = sha256(response.content) if response.status_code == 200 else response.status_code
    return found


def hashes(files: dict[str, bytes]) -> dict[str, str | int]:
    return {path: sha256(data) for path, data in files.items()}


def recorded(settings: Settings) -> dict[str, Any]:
    """Everything PostgreSQL records, as comparable rows."""
    with psycopg.connect(settings.database_url) as conn:
        return {
            "deployments": conn.execute("SELECT id, slot, state, error FROM deployments ORDER BY id").fetchall(),
            "config_versions": conn.execute(
                "SELECT slot, version, status, sha256 FROM config_versions ORDER BY slot, version"
            ).fetchall(),
            "slots": conn.execute("SELECT slot, active_version, status FROM slots ORDER BY slot").fetchall(),
            "activations": conn.execute("SELECT slot, version, action FROM activations ORDER BY id").fetchall(),
        }


def on_disk(settings: Settings) -> dict[str, Any]:
    """Every path under releases/ (incl. .incoming), the sites map and the links nginx serves from."""
    releases = settings.releases_dir
    live = settings.data_dir / "live"
    return {
        "releases": sorted(str(p.relative_to(releases)) for p in releases.rglob("*")) if releases.exists() else [],
        "sites": sites_map(settings),
        "links": {name: os.readlink(live / name) for name in os.listdir(live)} if live.exists() else {},
    }


def sites_map(settings: Settings) -> str:
    """The live entries nginx serves from: one per live slot."""
    return (settings.nginx_dir / "sites.map").read_text()


def assert_error(response: httpx.Response, status: int, settings: Settings | None = None) -> str:
    """A JSON error {"error": "<sentence>", ...} with this status and no server path; returns the sentence."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json"), response.headers
    body = response.json()
    assert isinstance(body, dict) and isinstance(body.get("error"), str), body
    message: str = body["error"]
    assert message and message.isprintable() and len(message) < 400, message
    assert not _SERVER_PATH.search(response.text), response.text
    if settings is not None:
        assert str(settings.data_dir) not in response.text
    return message


def live_version(stack: Stack, slot: str) -> str | None:
    """The version nginx serves for the slot: the one whose release the slot's link leads to,
    provided nginx answers for the slot at all (its sites map has it)."""
    if fetch(stack, f"/d/{slot}/").headers.get("x-drophost-slot") != slot:
        return None
    target = os.readlink(stack.settings.data_dir / "live" / slot)  # ../releases/<slot>/<deployment id>
    deployment = int(target.rsplit("/", 1)[1])
    versions = stack.client.get(f"/api/slots/{slot}/versions", headers=AUTH).json()["versions"]
    return next(str(v["version"]) for v in versions if v["deployment_id"] == deployment)


def tree(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))
