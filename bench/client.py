"""A small HTTP client for the benchmarks: every request is a fresh connection to 127.0.0.1.

A fresh connection per request matters when polling after a reload: a kept-alive connection
would stay on an old nginx worker and could keep seeing the previous version.
"""

from __future__ import annotations

import http.client
import json
import os
import secrets
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

HOST = "127.0.0.1"
_CHUNK = 1 << 20


@dataclass(frozen=True)
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


def request(
    port: int,
    method: str,
    path: str,
    *,
    token: str = "",
    body: bytes | Iterator[bytes] | None = None,
    headers: dict[str, str] | None = None,
    timeout: float = 120,
) -> Answer:
    conn = http.client.HTTPConnection(HOST, port, timeout=timeout)
    try:
        sent = dict(headers or {})
        if token:
            sent["Authorization"] = f"Bearer {token}"
        conn.request(method, path, body=body, headers=sent)
        response = conn.getresponse()
        data = response.read()
        return Answer(response.status, {k.lower(): v for k, v in response.getheaders()}, data)
    finally:
        conn.close()


def post_json(port: int, path: str, payload: dict[str, Any], *, token: str) -> Answer:
    body = json.dumps(payload).encode()
    return request(port, "POST", path, token=token, body=body, headers={"Content-Type": "application/json"})


def upload_zip(port: int, zip_path: Path, *, token: str, slot: str, timeout: float = 300) -> Answer:
    """POST /api/deployments with the ZIP streamed from disk as multipart/form-data."""
    boundary = "bench" + secrets.token_hex(12)
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="slot"\r\n\r\n{slot}\r\n'
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{zip_path.name}"\r\n'
        "Content-Type: application/zip\r\n\r\n"
    ).encode()
    tail = f"\r\n--{boundary}--\r\n".encode()
    length = len(head) + os.path.getsize(zip_path) + len(tail)

    def parts() -> Iterator[bytes]:
        yield head
        with open(zip_path, "rb") as handle:
            while chunk := handle.read(_CHUNK):
                yield chunk
        yield tail

    return request(
        port,
        "POST",
        "/api/deployments",
        token=token,
        body=parts(),
        headers={"Content-Type": f"multipart/form-data; boundary={boundary}", "Content-Length": str(length)},
        timeout=timeout,
    )


def header_of(port: int, path: str, name: str) -> str | None:
    """One response header of a GET through nginx, or None when it is missing or unreachable."""
    try:
        return request(port, "GET", path, timeout=5).headers.get(name.lower())
    except OSError:
        return None


def wait_for(check: Callable[[], bool], *, timeout: float, interval: float = 0.002) -> bool:
    """Poll `check` until it is true or `timeout` seconds have passed."""
    deadline = time.monotonic() + timeout
    while True:
        if check():
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(interval)
