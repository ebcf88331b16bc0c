"""A client that goes away half-way through an upload: one info line in the log, no traceback, nothing changed."""

from __future__ import annotations

import logging
import socket
import time

import pytest

from tests.harness.auth import TOKEN
from tests.harness.stacks import LiveStack
from tests.harness.waiting import wait_until
from tests.integration.support import deploy_site, hashes, on_disk, recorded, served, site
from tests.zipcraft import std_zip

GOOD = site("served before and after")


def half_an_upload(stack: LiveStack, method: str, path: str, content_type: str, body: bytes, declared: int) -> None:
    """Send the headers and the first part of the body to nginx, then close the connection."""
    with socket.create_connection(("127.0.0.1", stack.settings.port), timeout=10) as sock:
        head = (
            f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {TOKEN}\r\n"
            f"Content-Type: {content_type}\r\nContent-Length: {declared}\r\n\r\n"
        )
        sock.sendall(head.encode() + body)
        time.sleep(0.5)  # long enough for nginx to pass the start of the body on to the service


@pytest.mark.parametrize("route", ["zip", "blob"])
def test_a_client_that_disconnects_mid_upload_is_one_info_line(
    live: LiveStack, caplog: pytest.LogCaptureFixture, route: str
) -> None:
    deploy_site(live, GOOD)
    before = (recorded(live.settings), on_disk(live.settings))
    caplog.set_level(logging.INFO)
    if route == "zip":
        zip_bytes = std_zip({"index.html": "x" * 200_000})
        part = (
            b'--b\r\nContent-Disposition: form-data; name="slot"\r\n\r\nsite\r\n'
            b'--b\r\nContent-Disposition: form-data; name="file"; filename="site.zip"\r\n'
            b"Content-Type: application/zip\r\n\r\n" + zip_bytes[: len(zip_bytes) // 2]
        )
        half_an_upload(live, "POST", "/api/deployments", "multipart/form-data; boundary=b", part, len(part) * 2)
    else:
        digest = "ab" * 32
        started = live.api("POST", "/api/uploads", json={"slot": "site", "files": {"index.html": digest}})
        assert started.status_code == 201, started.text
        upload_id = started.json()["upload_id"]
        half_an_upload(
            live, "PUT", f"/api/uploads/{upload_id}/blobs/{digest}", "application/octet-stream", b"x" * 1000, 2000
        )

    assert wait_until(lambda: any("client disconnected" in r.getMessage() for r in caplog.records), limit=5), [
        r.getMessage() for r in caplog.records
    ]
    lines = [r for r in caplog.records if r.name.startswith(("drophost", "uvicorn"))]
    assert [r.levelno for r in lines if "client disconnected" in r.getMessage()] == [logging.INFO]
    assert not [r for r in lines if r.exc_info or r.levelno >= logging.WARNING], [r.getMessage() for r in lines]
    assert "Traceback" not in caplog.text
    # The service answers the next request and nothing was recorded or published.
    assert (recorded(live.settings), on_disk(live.settings)) == before
    assert served(live, "site", list(GOOD)) == hashes(GOOD)
    assert live.api("GET", "/api/slots").status_code == 200
