"""Content-addressed deploys, digest uploads, retention and garbage collection, end to end."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import psycopg
import pytest
from psycopg.rows import dict_row

from drophost.client.digest import deploy_folder
from drophost.client.http import ApiClient, ClientError
from drophost.pipeline.artifacts import ArtifactStore
from drophost.settings import Settings
from drophost.store import versions as store_versions
from drophost.web.app import create_app
from tests.harness.auth import AUTH, TOKEN
from tests.harness.processes import start_nginx, stop_process
from tests.harness.stacks import LiveStack, Stack
from tests.harness.zips import make_zip

SITE = {f"page{i}.html": f"<p>page {i}</p>" * 20 for i in range(40)}


def _blobs(settings: Settings) -> set[str]:
    root = settings.data_dir / "store" / "blobs"
    return {p.parent.name + p.name for p in root.rglob("*") if p.is_file()}


def _sha(data: bytes | str) -> str:
    return hashlib.sha256(data.encode() if isinstance(data, str) else data).hexdigest()


def test_a_deploy_with_one_changed_file_writes_one_new_file(stack: Stack) -> None:
    assert stack.deploy(SITE, "inc").status_code == 201
    before = _blobs(stack.settings)
    changed = dict(SITE, **{"page7.html": "<p>changed</p>"})
    second = stack.deploy(changed, "inc")
    assert second.status_code == 201, second.text
    assert _blobs(stack.settings) - before == {_sha("<p>changed</p>")}
    releases = stack.settings.releases_dir / "inc"
    old, new = sorted(releases.iterdir(), key=lambda p: int(p.name))
    assert (old / "page1.html").stat().st_ino == (new / "page1.html").stat().st_ino
    assert (old / "page7.html").stat().st_ino != (new / "page7.html").stat().st_ino
    assert stack.get("/d/inc/page7").text == "<p>changed</p>"


def test_digest_upload_sends_only_missing_files_and_deploys(stack: Stack) -> None:
    stack.deploy({"a.html": "A", "b.html": "B"}, "dig")
    files = {"a.html": _sha("A"), "b.html": _sha("B"), "c/new.html": _sha("NEW"), ".env": _sha("secret")}
    started = stack.client.post("/api/uploads", json={"slot": "dig", "files": files}, headers=AUTH)
    assert started.status_code == 201, started.text
    body = started.json()
    # The dotfile is never published, so its bytes are not asked for.
    assert body["missing"] == [_sha("NEW")] and body["files"] == 3
    upload = body["upload_id"]
    early = stack.client.post(f"/api/uploads/{upload}/finalize", headers=AUTH)
    assert early.status_code == 409 and early.json()["missing"] == [_sha("NEW")]
    put = stack.client.put(f"/api/uploads/{upload}/blobs/{_sha('NEW')}", content=b"NEW", headers=AUTH)
    assert put.status_code == 201, put.text
    done = stack.client.post(f"/api/uploads/{upload}/finalize", headers=AUTH)
    assert done.status_code == 201, done.text
    assert done.json()["source"] == "upload" and done.json()["config_version"] == 2
    assert stack.get("/d/dig/c/new").text == "NEW"
    assert stack.get("/d/dig/a").text == "A"
    assert stack.get("/d/dig/.env").status_code == 404
    again = stack.client.post(f"/api/uploads/{upload}/finalize", headers=AUTH)
    assert again.status_code == 409


@pytest.mark.parametrize(
    ("files", "fragment"),
    [
        ({"../escape.html": _sha("x")}, ".."),
        ({"/abs.html": _sha("x")}, "absolute"),
        ({"a.html": "not-a-digest"}, "sha256"),
        ({"A.html": _sha("x"), "a.html": _sha("y")}, "collides"),
        ({}, "non-empty"),
        ({".git/config": _sha("x")}, "no files"),
    ],
)
def test_bad_digest_manifests_are_refused_and_change_nothing(
    stack: Stack, files: dict[str, str], fragment: str
) -> None:
    answer = stack.client.post("/api/uploads", json={"slot": "bad", "files": files}, headers=AUTH)
    assert answer.status_code == 422, answer.text
    assert fragment in answer.json()["error"]
    assert stack.client.get("/api/slots", headers=AUTH).json()["slots"] == []


def test_a_blob_with_the_wrong_bytes_or_not_in_the_manifest_is_refused(stack: Stack) -> None:
    started = stack.client.post("/api/uploads", json={"slot": "w", "files": {"a": _sha("A")}}, headers=AUTH).json()
    wrong = stack.client.put(f"/api/uploads/{started['upload_id']}/blobs/{_sha('A')}", content=b"B", headers=AUTH)
    assert wrong.status_code == 422 and "do not match" in wrong.json()["error"]
    assert not _blobs(stack.settings) & {_sha("B"), _sha("A")}
    stranger = stack.client.put(f"/api/uploads/{started['upload_id']}/blobs/{_sha('B')}", content=b"B", headers=AUTH)
    assert stranger.status_code == 422
    unknown = stack.client.post("/api/uploads/5f0c3c2e-0000-4000-8000-000000000000/finalize", headers=AUTH)
    assert unknown.status_code == 404
    junk = stack.client.post("/api/uploads/not-a-uuid/finalize", headers=AUTH)
    assert junk.status_code == 404


@pytest.fixture
def retaining_stack(settings: Settings) -> Iterator[Stack]:
    from starlette.testclient import TestClient

    chosen = replace(settings, keep_versions=2)
    nginx, process = start_nginx(chosen)
    try:
        with TestClient(create_app(chosen), raise_server_exceptions=False) as client:
            yield Stack(settings=chosen, nginx=nginx, process=process, client=client)
    finally:
        stop_process(process)


def test_retention_keeps_the_last_versions_pinned_ones_and_gc_frees_their_files(retaining_stack: Stack) -> None:
    stack = retaining_stack
    stack.deploy({"index.html": "v1", "big.bin": os.urandom(4096)}, "keep")
    pinned = stack.client.post("/api/slots/keep/versions/1/pin", json={}, headers=AUTH)
    assert pinned.status_code == 200 and pinned.json()["pinned"] is True
    for n in (2, 3, 4):
        assert stack.deploy({"index.html": f"v{n}", "big.bin": os.urandom(4096)}, "keep").status_code == 201
    versions = {
        v["version"]: v["status"] for v in stack.client.get("/api/slots/keep/versions", headers=AUTH).json()["versions"]
    }
    assert versions == {4: "active", 3: "inactive", 2: "pruned", 1: "inactive"}
    refused = stack.client.post("/api/slots/keep/rollback", json={"version": 2}, headers=AUTH)
    assert refused.status_code == 409 and "retention" in refused.json()["error"]
    # Pinning a pruned version cannot bring its files back: 409, not a 200 that keeps nothing.
    late_pin = stack.client.post("/api/slots/keep/versions/2/pin", json={}, headers=AUTH)
    assert late_pin.status_code == 409 and "no longer on disk" in late_pin.json()["error"]
    # A pin that lands after retention read the versions wins: marking skips a pinned version.
    with psycopg.connect(stack.settings.database_url, autocommit=True, row_factory=dict_row) as conn:
        assert store_versions.mark_pruned(conn, "keep", [1]) == set()
    dry = stack.client.post("/api/gc", json={"dry_run": True}, headers=AUTH).json()
    assert dry["dry_run"] is True and dry["blobs"] >= 2
    blobs_before = _blobs(stack.settings)
    assert blobs_before  # nothing removed by the dry run
    real = stack.client.post("/api/gc", json={}, headers=AUTH).json()
    assert real["blobs"] == dry["blobs"]
    assert len(_blobs(stack.settings)) == len(blobs_before) - real["blobs"]
    assert stack.client.post("/api/slots/keep/rollback", json={"version": 1}, headers=AUTH).status_code == 200
    assert stack.get("/d/keep/").text == "v1"
    assert stack.client.post("/api/gc", json={"dry_run": "yes"}, headers=AUTH).status_code == 422


def test_retention_removes_files_after_the_answer_and_what_a_crash_left_is_found_again(
    retaining_stack: Stack,
) -> None:
    stack = retaining_stack
    removals = stack.client.app.state.deployer.removals  # type: ignore[attr-defined]
    ids = [stack.deploy({"index.html": f"v{n}", "big.bin": os.urandom(4096)}, "tidy").json()["id"] for n in range(3)]
    folder = stack.settings.releases_dir / "tidy"
    # Pruned and out of every address at once; its files go after the answer.
    assert not (folder / str(ids[0])).exists()
    assert stack.client.post("/api/slots/tidy/rollback", json={"version": 1}, headers=AUTH).status_code == 409
    removals.wait(30)
    assert sorted(p.name for p in folder.iterdir()) == sorted(str(i) for i in ids[1:])

    # A removal a crash stopped (set aside, or not even that), and its only link to a blob: the
    # next gc finds both, counts their blobs in a dry run, and removes them.
    assert stack.client.post("/api/gc", json={}, headers=AUTH).json()["blobs"] == 2  # the pruned version's
    blobs_before = _blobs(stack.settings)
    for name in (f"{ids[0]}.removing", str(ids[0])):
        (folder / name).mkdir()
        (folder / name / "index.html").write_text("stale")
    lone = stack.settings.data_dir / "store" / "blobs" / "ab" / ("cd" * 31)
    lone.parent.mkdir(parents=True, exist_ok=True)
    lone.write_text("only in a leftover")
    os.link(lone, folder / f"{ids[0]}.removing" / "lone.txt")
    dry = stack.client.post("/api/gc", json={"dry_run": True}, headers=AUTH).json()
    assert dry["blobs"] == 1 and (folder / str(ids[0])).is_dir()
    real = stack.client.post("/api/gc", json={}, headers=AUTH).json()
    assert real["blobs"] == 1 and _blobs(stack.settings) == blobs_before
    assert sorted(p.name for p in folder.iterdir()) == sorted(str(i) for i in ids[1:])

    # So does the slot's next retention.
    (folder / f"{ids[0]}.removing").mkdir()
    newest = stack.deploy({"index.html": "v3"}, "tidy").json()["id"]
    removals.wait(30)
    assert sorted(p.name for p in folder.iterdir()) == sorted(str(i) for i in (ids[2], newest))
    assert stack.get("/d/tidy/").text == "v3"


def test_the_folder_client_uploads_only_what_changed(live: LiveStack, tmp_path: Path) -> None:
    folder = tmp_path / "site"
    (folder / "css").mkdir(parents=True)
    for i in range(30):
        (folder / f"p{i}.html").write_text(f"page {i}")
    (folder / "css" / "a.css").write_text("body{}")
    (folder / ".secret").write_text("no")
    seen: list[tuple[int, int]] = []
    client = ApiClient(live.base_url, TOKEN)
    first = deploy_folder(client, folder, slot="cli", progress=lambda a, b: seen.append((a, b)))
    assert first["status"] == "live" and first["uploaded_files"] == 31
    assert seen[-1][0] == seen[-1][1]
    (folder / "p3.html").write_text("changed")
    second = deploy_folder(client, folder, slot="cli")
    assert second["uploaded_files"] == 1 and second["config_version"] == 2
    assert live.get("/d/cli/p3").text == "changed"
    assert live.get("/d/cli/.secret").status_code == 404
    with pytest.raises(ClientError) as failure:
        deploy_folder(ApiClient(live.base_url, "wrong-token"), folder, slot="cli")
    assert failure.value.status == 401


def test_zip_uploads_still_work_next_to_digest_uploads(stack: Stack) -> None:
    answer = stack.client.post(
        "/api/deployments", files={"file": ("z.zip", make_zip({"index.html": "zip"}), "application/zip")}, headers=AUTH
    )
    assert answer.status_code == 201 and stack.get("/d/z/").text == "zip"


def test_zip_and_digest_deploys_link_their_files_once_and_never_walk_the_tree_again(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    def walked(self: ArtifactStore, root: Path) -> int:
        raise AssertionError(f"the tree {root} was walked again to absorb it")

    monkeypatch.setattr(ArtifactStore, "absorb_tree", walked)
    zipped = stack.deploy({"index.html": "zip", "css/site.css": "body{}"}, "linked-zip")
    assert zipped.status_code == 201, zipped.text
    files = {"index.html": _sha("digest"), "js/app.js": _sha("app()")}
    started = stack.client.post("/api/uploads", json={"slot": "linked-digest", "files": files}, headers=AUTH)
    assert started.status_code == 201, started.text
    upload = started.json()["upload_id"]
    for body in ("digest", "app()"):
        put = stack.client.put(f"/api/uploads/{upload}/blobs/{_sha(body)}", content=body.encode(), headers=AUTH)
        assert put.status_code == 201, put.text
    done = stack.client.post(f"/api/uploads/{upload}/finalize", headers=AUTH)
    assert done.status_code == 201, done.text
    store = stack.settings.data_dir / "store" / "blobs"
    for deployed, names in ((zipped.json(), ["index.html", "css/site.css"]), (done.json(), list(files))):
        release = stack.settings.releases_dir / deployed["slot"] / str(deployed["id"])
        for name in names:
            shared = (release / name).stat()
            digest = _sha((release / name).read_bytes())
            assert shared.st_nlink >= 2 and (store / digest[:2] / digest[2:]).stat().st_ino == shared.st_ino
    assert stack.get("/d/linked-zip/css/site.css").text == "body{}"
    assert stack.get("/d/linked-digest/js/app.js").text == "app()"
