"""The upload size cap: 413 JSON from the service and from nginx, nothing changes."""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import replace

import pytest

from drophost.settings import Settings
from tests.harness.auth import AUTH
from tests.harness.stacks import Stack
from tests.integration.support import assert_error, deploy_site, hashes, nginx_client, on_disk, recorded, served, site
from tests.zipcraft import Entry, craft_zip

CAP = 64 * 1024
GOOD = site("under the cap")


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return replace(settings, max_upload_bytes=CAP)


@pytest.fixture
def live(stack: Stack) -> Iterator[Stack]:
    deploy_site(stack, GOOD)
    before = (recorded(stack.settings), on_disk(stack.settings))
    yield stack
    assert (recorded(stack.settings), on_disk(stack.settings)) == before
    assert served(stack, "site", list(GOOD)) == hashes(GOOD)


def big_zip() -> bytes:
    data = craft_zip(Entry("index.html", b"<h1>big</h1>"), Entry("noise.bin", os.urandom(CAP)))
    assert len(data) > CAP
    return data


def multipart(zip_bytes: bytes) -> tuple[bytes, str]:
    boundary = "drophostboundary"
    body = (
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="slot"\r\n\r\nsite\r\n'
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="site.zip"\r\n'
            "Content-Type: application/zip\r\n\r\n"
        ).encode()
        + zip_bytes
        + f"\r\n--{boundary}--\r\n".encode()
    )
    return body, f"multipart/form-data; boundary={boundary}"


def test_an_upload_over_the_cap_is_413_json(live: Stack) -> None:
    response = live.client.post(
        "/api/deployments",
        files={"file": ("site.zip", big_zip(), "application/zip")},
        data={"slot": "site"},
        headers=AUTH,
    )
    assert "larger than" in assert_error(response, 413, live.settings)


def test_a_streamed_upload_over_the_cap_is_413_json(live: Stack) -> None:
    # No Content-Length: the cap is counted while the body arrives.
    body, content_type = multipart(big_zip())
    chunks = [body[i : i + 8192] for i in range(0, len(body), 8192)]
    response = live.client.post(
        "/api/deployments", content=iter(chunks), headers={**AUTH, "content-type": content_type}
    )
    assert "larger than" in assert_error(response, 413, live.settings)


def test_nginx_answers_413_json_beyond_its_own_limit(live: Stack) -> None:
    body, content_type = multipart(big_zip() + bytes(1024 * 1024))
    response = nginx_client().post(
        live.base_url + "/api/deployments", content=body, headers={**AUTH, "content-type": content_type}
    )
    assert_error(response, 413, live.settings)


def test_an_upload_under_the_cap_is_deployed(stack: Stack) -> None:
    small = craft_zip(Entry("index.html", b"<h1>small</h1>"), Entry("noise.bin", os.urandom(CAP // 2)))
    response = stack.client.post(
        "/api/deployments", files={"file": ("site.zip", small, "application/zip")}, data={"slot": "site"}, headers=AUTH
    )
    assert response.status_code == 201, response.text
