"""Every bad upload: a 4xx JSON sentence, nothing recorded, nothing on disk, the old site still served."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.harness.auth import AUTH
from tests.harness.stacks import Stack, running_stack, shared_settings
from tests.integration.support import assert_error, deploy_site, fetch, hashes, on_disk, recorded, served, site, upload
from tests.zipcraft import BAD_ZIPS, LIMITS, BadZip, std_zip

GOOD = site("the good version")


@pytest.fixture(scope="module")
def shared_stack(scratch_root: Path, postgres_server: str) -> Iterator[Stack]:
    # The same small limits as the unit tests, so the same archives trip them. Each test checks
    # that it changed nothing, so one stack serves them all.
    with shared_settings(scratch_root, postgres_server, **LIMITS) as settings, running_stack(settings) as stack:
        deploy_site(stack, GOOD)
        yield stack


@pytest.fixture
def live(shared_stack: Stack) -> Iterator[Stack]:
    stack = shared_stack
    before = (recorded(stack.settings), on_disk(stack.settings))
    assert served(stack, "site", list(GOOD)) == hashes(GOOD)
    yield stack
    # Whatever the test sent, nothing changed and the good version is served byte for byte.
    assert (recorded(stack.settings), on_disk(stack.settings)) == before
    assert served(stack, "site", list(GOOD)) == hashes(GOOD)


@pytest.mark.parametrize("bad", BAD_ZIPS, ids=lambda bad: bad.id)
def test_bad_archive_is_refused_and_changes_nothing(live: Stack, bad: BadZip) -> None:
    message = assert_error(upload(live, bad.build()), 422, live.settings)
    assert bad.says in message.lower()


@pytest.mark.parametrize("bad_id", ["not-a-zip", "bomb-overlap-nested", "corrupt-crc"])
def test_bad_archive_to_a_new_slot_creates_no_slot(live: Stack, bad_id: str) -> None:
    bad = next(b for b in BAD_ZIPS if b.id == bad_id)
    assert_error(upload(live, bad.build(), slot="fresh"), 422, live.settings)
    assert fetch(live, "/d/fresh/").status_code == 404
    assert_error(live.client.get("/api/slots/fresh/versions", headers=AUTH), 404)


@pytest.mark.parametrize(
    ("slot", "filename"),
    [
        ("Site", "site.zip"),
        ("-site", "site.zip"),
        ("site-", "site.zip"),
        ("x" * 64, "site.zip"),
        ("s\u00efte", "site.zip"),
        ("../site", "site.zip"),
        ("site; }", "site.zip"),
        ("si te", "site.zip"),
        (None, "!!!.zip"),
        (None, "\u65e5\u672c.zip"),
    ],
)
def test_invalid_slot_names_are_422(live: Stack, slot: str | None, filename: str) -> None:
    response = upload(live, std_zip({"index.html": "<h1>x</h1>"}), slot=slot, filename=filename)
    assert assert_error(response, 422, live.settings)
    assert response.json().get("field") == "slot"


@pytest.mark.parametrize("ttl", ["soon", "-1", "0", "99999d", "1.5h"])
def test_invalid_ttl_is_422(live: Stack, ttl: str) -> None:
    response = live.client.post(
        "/api/deployments",
        files={"file": ("site.zip", std_zip({"index.html": "x"}), "application/zip")},
        data={"slot": "site", "ttl": ttl},
        headers=AUTH,
    )
    assert_error(response, 422, live.settings)
    assert response.json()["field"] == "ttl"


def test_a_form_without_a_file_is_422(live: Stack) -> None:
    response = live.client.post("/api/deployments", data={"slot": "site"}, files={"other": ("a", b"b")}, headers=AUTH)
    assert "file" in assert_error(response, 422, live.settings)


def test_a_file_field_sent_as_text_is_422(live: Stack) -> None:
    response = live.client.post(
        "/api/deployments", data={"slot": "site", "file": "PK"}, files={"x": ("x", b"")}, headers=AUTH
    )
    assert_error(response, 422, live.settings)


def test_a_raw_zip_body_is_415(live: Stack) -> None:
    response = live.client.post(
        "/api/deployments", content=std_zip({"index.html": "x"}), headers={**AUTH, "content-type": "application/zip"}
    )
    assert "multipart/form-data" in assert_error(response, 415, live.settings)


# Starlette leaves the spooled file of an unfinished part unclosed (closed at garbage collection).
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_a_truncated_multipart_body_is_refused(live: Stack) -> None:
    response = live.client.post(
        "/api/deployments",
        content=b'--xyz\r\nContent-Disposition: form-data; name="file"; filename="a.zip"\r\n\r\nPK',
        headers={**AUTH, "content-type": "multipart/form-data; boundary=xyz"},
    )
    assert 400 <= response.status_code < 500
    assert_error(response, response.status_code, live.settings)


def test_two_files_are_refused(live: Stack) -> None:
    zip_bytes = std_zip({"index.html": "x"})
    response = live.client.post(
        "/api/deployments",
        files=[("file", ("a.zip", zip_bytes, "application/zip")), ("file", ("b.zip", zip_bytes, "application/zip"))],
        data={"slot": "site"},
        headers=AUTH,
    )
    assert 400 <= response.status_code < 500
    assert_error(response, response.status_code, live.settings)
