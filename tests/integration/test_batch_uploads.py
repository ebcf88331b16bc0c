"""POST /api/uploads/{id}/batch: many files in one body, each checked and stored as it arrives."""

from __future__ import annotations

import hashlib
import json
import socket
import time
from collections.abc import Iterator
from dataclasses import replace

import psycopg
import pytest

from drophost.settings import Settings
from tests.harness.auth import AUTH, TOKEN
from tests.harness.stacks import LiveStack, Stack, running_stack
from tests.integration.support import visited

PAGES = {f"p{n}.html": f"<p>page {n}</p>".encode() * (n + 1) for n in range(6)}


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def frame(*blobs: bytes, digests: list[str] | None = None) -> bytes:
    """A batch body: for each blob '<sha256> <size>\\n' and its bytes (named by `digests` if given)."""
    names = digests or [sha(blob) for blob in blobs]
    return b"".join(f"{name} {len(blob)}\n".encode() + blob for name, blob in zip(names, blobs, strict=True))


def stored(settings: Settings) -> set[str]:
    root = settings.data_dir / "store" / "blobs"
    return {p.parent.name + p.name for p in root.rglob("*") if p.is_file()}


def start(stack: Stack, slot: str, files: dict[str, bytes]) -> tuple[str, list[str]]:
    """(upload id, the digests the store lacks)."""
    listed = {path: sha(data) for path, data in files.items()}
    answer = stack.client.post("/api/uploads", json={"slot": slot, "files": listed}, headers=AUTH)
    assert answer.status_code == 201, answer.text
    return answer.json()["upload_id"], answer.json()["missing"]


def test_a_batch_stores_every_file_and_the_upload_deploys(stack: Stack) -> None:
    assert stack.deploy({"p0.html": PAGES["p0.html"]}, "first").status_code == 201
    upload, missing = start(stack, "batch", PAGES)
    assert sha(PAGES["p0.html"]) not in missing
    # Already stored blobs are accepted (and not written again).
    answer = stack.client.post(f"/api/uploads/{upload}/batch", content=frame(*PAGES.values()), headers=AUTH)
    assert answer.status_code == 200, answer.text
    assert answer.json() == {"blobs": 6, "stored": 5, "bytes": sum(map(len, PAGES.values()))}
    assert {sha(data) for data in PAGES.values()} <= stored(stack.settings)
    status = stack.client.get(f"/api/uploads/{upload}", headers=AUTH).json()
    assert status == {"upload_id": upload, "slot": "batch", "files": 6, "missing": []}
    done = stack.client.post(f"/api/uploads/{upload}/finalize", headers=AUTH)
    assert done.status_code == 201, done.text
    for path, data in PAGES.items():
        assert stack.get(f"/d/batch/{visited(path)}").content == data


def test_a_blob_whose_bytes_do_not_match_its_name_fails_the_batch_and_is_not_stored(stack: Stack) -> None:
    upload, _ = start(stack, "bad", PAGES)
    good, bad = PAGES["p1.html"], PAGES["p2.html"]
    body = frame(good, b"something else", digests=[sha(good), sha(bad)])
    answer = stack.client.post(f"/api/uploads/{upload}/batch", content=body, headers=AUTH)
    assert answer.status_code == 422, answer.text
    error = answer.json()
    assert sha(bad) in error["error"] and "do not match" in error["error"] and error["digest"] == sha(bad)
    assert sha(good) in stored(stack.settings)
    assert not {sha(bad), sha(b"something else")} & stored(stack.settings)
    assert list((stack.settings.data_dir / "store" / "tmp").iterdir()) == []


@pytest.mark.parametrize(
    ("body", "status", "fragment"),
    [
        (frame(b"stranger"), 422, "not part of this upload"),
        (b"not a header at all\n", 400, "malformed"),
        (b"x" * 200, 400, "malformed"),
        (f"{sha(b'x')} -1\n".encode(), 400, "malformed"),
    ],
)
def test_a_malformed_batch_or_a_stranger_blob_is_refused(stack: Stack, body: bytes, status: int, fragment: str) -> None:
    upload, _ = start(stack, "odd", PAGES)
    answer = stack.client.post(f"/api/uploads/{upload}/batch", content=body, headers=AUTH)
    assert answer.status_code == status and fragment in answer.json()["error"], answer.text
    assert stored(stack.settings) == set()


def test_a_truncated_batch_keeps_its_complete_blobs_and_the_upload_resumes(stack: Stack) -> None:
    upload_id, _ = start(stack, "resume", PAGES)
    blobs = list(PAGES.values())
    whole = frame(*blobs)
    cut = len(frame(*blobs[:3])) + 70  # inside the fourth blob's bytes
    answer = stack.client.post(f"/api/uploads/{upload_id}/batch", content=whole[:cut], headers=AUTH)
    assert answer.status_code == 400, answer.text
    assert sha(blobs[3]) in answer.json()["error"] and answer.json()["kept"] == 3
    missing = stack.client.get(f"/api/uploads/{upload_id}", headers=AUTH).json()["missing"]
    assert sorted(missing) == sorted(sha(blob) for blob in blobs[3:])
    early = stack.client.post(f"/api/uploads/{upload_id}/finalize", headers=AUTH)
    assert early.status_code == 409
    rest = frame(*[blob for blob in blobs if sha(blob) in missing])
    assert stack.client.post(f"/api/uploads/{upload_id}/batch", content=rest, headers=AUTH).status_code == 200
    done = stack.client.post(f"/api/uploads/{upload_id}/finalize", headers=AUTH)
    assert done.status_code == 201, done.text
    assert stack.get("/d/resume/p5").content == PAGES["p5.html"]


def test_a_connection_broken_mid_batch_keeps_the_blobs_that_arrived_whole(
    live: LiveStack, caplog: pytest.LogCaptureFixture
) -> None:
    upload, _ = start(live, "broken", PAGES)
    blobs = list(PAGES.values())
    whole = frame(*blobs)
    head = (
        f"POST /api/uploads/{upload}/batch HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        f"Authorization: Bearer {TOKEN}\r\nContent-Type: application/octet-stream\r\n"
        f"Content-Length: {len(whole)}\r\n\r\n"
    ).encode()
    with socket.create_connection(("127.0.0.1", live.settings.port), timeout=10) as sock:
        sock.sendall(head + whole[: len(frame(*blobs[:2])) + 10])
        time.sleep(0.3)  # through nginx to the service before the break
    expected = sorted(sha(blob) for blob in blobs[2:])
    deadline = time.monotonic() + 10
    while (missing := live.api("GET", f"/api/uploads/{upload}").json()["missing"]) != expected:
        assert time.monotonic() < deadline, missing
        time.sleep(0.05)
    assert list((live.settings.data_dir / "store" / "tmp").iterdir()) == []
    assert "unexpected error" not in caplog.text  # a broken batch is expected, not a crash


def test_the_old_one_blob_per_request_upload_still_works_next_to_batches(stack: Stack) -> None:
    upload, _ = start(stack, "mixed", {"a.html": b"A", "b.html": b"B"})
    put = stack.client.put(f"/api/uploads/{upload}/blobs/{sha(b'A')}", content=b"A", headers=AUTH)
    assert put.status_code == 201
    batch = stack.client.post(f"/api/uploads/{upload}/batch", content=frame(b"B"), headers=AUTH)
    assert batch.status_code == 200
    assert stack.client.post(f"/api/uploads/{upload}/finalize", headers=AUTH).status_code == 201


CAP = 64 * 1024


@pytest.fixture
def capped(settings: Settings) -> Iterator[Stack]:
    with running_stack(replace(settings, max_upload_bytes=CAP)) as running:
        yield running


def test_a_batch_over_the_routes_body_cap_is_413(capped: Stack) -> None:
    small, big = b"s" * 2048, bytes(range(256)) * (CAP // 256 - 4)
    upload, _ = start(capped, "capped", {"small.html": small, "big.bin": big})
    answer = capped.client.post(f"/api/uploads/{upload}/batch", content=frame(small, big), headers=AUTH)
    assert answer.status_code == 413, answer.text
    assert str(CAP) in answer.json()["error"]
    assert sha(big) not in stored(capped.settings)
    # The cap is per batch: the same files in two batches go through.
    for blob in (small, big):
        answer = capped.client.post(f"/api/uploads/{upload}/batch", content=frame(blob), headers=AUTH)
        assert answer.status_code == 200, answer.text
    assert capped.client.post(f"/api/uploads/{upload}/finalize", headers=AUTH).status_code == 201


def at_once(slot: str, files: dict[str, bytes], sent: list[bytes], **fields: object) -> bytes:
    """A POST /api/uploads/deploy body: the file list's JSON on one line, then `sent` framed."""
    listed = {path: sha(data) for path, data in files.items()}
    return json.dumps({"slot": slot, "files": listed, **fields}).encode() + b"\n" + (frame(*sent) if sent else b"")


def test_one_request_deploys_a_file_list_with_its_new_files(stack: Stack) -> None:
    assert stack.deploy(dict(PAGES), "once").status_code == 201
    changed = {**PAGES, "p1.html": b"<p>changed</p>"}
    answer = stack.client.post(
        "/api/uploads/deploy", content=at_once("once", changed, [changed["p1.html"]]), headers=AUTH
    )
    assert answer.status_code == 201, answer.text
    assert answer.json()["status"] == "live" and answer.json()["upload_id"]
    assert stack.get("/d/once/p1").content == b"<p>changed</p>"
    assert stack.get("/d/once/p4").content == PAGES["p4.html"]
    # Nothing new at all: the file list alone deploys.
    again = stack.client.post("/api/uploads/deploy", content=at_once("once", changed, []), headers=AUTH)
    assert again.status_code == 201, again.text
    # A draft, as finalize's {"activate": false}.
    draft = stack.client.post("/api/uploads/deploy", content=at_once("once", PAGES, [], activate=False), headers=AUTH)
    assert draft.status_code == 201 and draft.json()["status"] == "draft", draft.text
    assert stack.get("/d/once/p1").content == b"<p>changed</p>"


def test_a_wrong_guess_leaves_the_upload_open_for_the_files_the_server_lacks(stack: Stack) -> None:
    files = {"a.html": b"<p>a</p>", "b.html": b"<p>b, never sent before</p>", "c.html": b"<p>c</p>"}
    answer = stack.client.post("/api/uploads/deploy", content=at_once("guess", files, [files["a.html"]]), headers=AUTH)
    assert answer.status_code == 202, answer.text
    upload = answer.json()["upload_id"]
    assert answer.json() == {
        "upload_id": upload,
        "slot": "guess",
        "files": 3,
        "missing": sorted([sha(files["b.html"]), sha(files["c.html"])]),
    }
    assert stack.get("/d/guess/a").status_code == 404
    rest = frame(files["b.html"], files["c.html"])
    assert stack.client.post(f"/api/uploads/{upload}/batch", content=rest, headers=AUTH).status_code == 200
    assert stack.client.post(f"/api/uploads/{upload}/finalize", headers=AUTH).status_code == 201
    assert stack.get("/d/guess/b").content == files["b.html"]


@pytest.mark.parametrize(
    ("body", "status", "fragment"),
    [
        (b'{"slot": "bad", "files": ', 400, "not valid JSON"),
        (b'["not an object"]\n', 400, "JSON object"),
        (b'{"slot": "bad", "files": {}}\n', 422, "non-empty"),
        (b'{"slot": "bad", "files": {"a.html": "' + sha(b"A").encode() + b'"}, "activate": "no"}\n', 422, "activate"),
        (at_once("bad", {"a.html": b"A"}, [b"stranger"]), 422, "not part of this upload"),
        (at_once("bad", {"a.html": b"A"}, [b"A"])[:-1], 400, "ended inside blob"),
        (at_once("bad", {"a.html": b"A"}, []) + frame(b"B", digests=[sha(b"A")]), 422, "do not match"),
    ],
)
def test_bad_input_in_one_request_is_a_4xx_and_deploys_nothing(
    stack: Stack, body: bytes, status: int, fragment: str
) -> None:
    answer = stack.client.post("/api/uploads/deploy", content=body, headers=AUTH)
    assert answer.status_code == status and fragment in answer.json()["error"], answer.text
    assert stack.get("/d/bad/a").status_code == 404
    assert not (stack.settings.releases_dir / "bad").exists()
    assert stored(stack.settings) == set()
    # Nor an open upload waiting for its expiry.
    with psycopg.connect(stack.settings.database_url) as conn:
        assert conn.execute("SELECT count(*) FROM uploads WHERE slot = 'bad'").fetchone() == (0,)
