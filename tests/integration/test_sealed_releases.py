"""Releases are checked and sealed before they go live: the one check that keeps links off the sites
origin (nginx does not check every request unless DROPHOST_NGINX_SYMLINK_CHECK is on)."""

from __future__ import annotations

import hashlib
import os
import stat
from pathlib import Path

import pytest

from drophost.errors import UnsafeReleaseError
from drophost.pipeline import releases
from drophost.pipeline.deployer import Deployer
from drophost.settings import Settings
from tests.harness.auth import AUTH
from tests.harness.stacks import Stack, running_stack
from tests.integration.support import deploy_site, fetch, hashes, on_disk, recorded, served, site


def deployer_of(stack: Stack) -> Deployer:
    found: Deployer = stack.client.app.state.deployer  # type: ignore[attr-defined]
    return found


def release_of(stack: Stack, slot: str, deployment_id: int) -> Path:
    return stack.settings.releases_dir / slot / str(deployment_id)


def unseal(release: Path) -> None:
    """What a release made before sealing existed looks like (or one somebody opened again)."""
    for folder, _, names in os.walk(release):
        os.chmod(folder, 0o755)
        for name in names:
            os.chmod(os.path.join(folder, name), 0o644)


def modes(release: Path) -> set[int]:
    return {stat.S_IMODE(path.lstat().st_mode) for path in [release, *release.rglob("*")]}


def test_every_deploy_goes_live_sealed(stack: Stack) -> None:
    one = site("one", extra={"docs/deep/page.html": b"deep"})
    deployed = deploy_site(stack, one)
    release = release_of(stack, "site", deployed["id"])
    assert releases.is_sealed(release)
    assert modes(release) == {0o555, 0o444}
    assert served(stack, "site", list(one)) == hashes(one)
    # The digest protocol ends in the same place.
    body = b"<h1>digest</h1>"
    manifest = {"index.html": hashlib.sha256(body).hexdigest()}
    started = stack.client.post("/api/uploads", json={"slot": "digest", "files": manifest}, headers=AUTH)
    assert started.status_code == 201, started.text
    for digest in started.json()["missing"]:
        put = stack.client.put(
            f"/api/uploads/{started.json()['upload_id']}/blobs/{digest}",
            content=body,
            headers={**AUTH, "Content-Type": "application/octet-stream"},
        )
        assert put.status_code in (200, 201), put.text
    final = stack.client.post(f"/api/uploads/{started.json()['upload_id']}/finalize", json={}, headers=AUTH)
    assert final.status_code == 201, final.text
    assert releases.is_sealed(release_of(stack, "digest", final.json()["id"]))
    assert fetch(stack, "/d/digest/").content == body


@pytest.mark.parametrize("plant", ["link", "dotfile", "fifo"])
def test_a_tree_with_anything_but_files_is_refused_before_the_switch(stack: Stack, plant: str) -> None:
    one = site("one")
    deploy_site(stack, one)
    before = {"served": served(stack, "site", list(one)), "disk": on_disk(stack.settings)}
    # A writer that let something through: DropHost's own never do, so the tree is made by hand.
    incoming = releases.incoming_dir(stack.settings.releases_dir)
    (incoming / "docs").mkdir(parents=True)
    (incoming / "index.html").write_text("two")
    if plant == "link":
        (incoming / "docs" / "passwd.html").symlink_to("/etc/passwd")
    elif plant == "dotfile":
        (incoming / "docs" / ".env").write_text("SECRET=1")
    else:
        os.mkfifo(incoming / "docs" / "pipe")
    with pytest.raises(UnsafeReleaseError) as caught:
        deployer_of(stack).publish_tree(
            incoming, slot="site", files=2, size=3, ttl_seconds=None, source="zip", trigger="upload"
        )
    assert caught.value.status_code == 422
    assert str(stack.settings.data_dir) not in caught.value.message
    # Nothing changed: the previous version is served, nothing half-made is left on disk.
    assert {"served": served(stack, "site", list(one)), "disk": on_disk(stack.settings)} == before
    failed = recorded(stack.settings)["deployments"][-1]
    assert failed[2] == "failed" and ("only plain files" in failed[3] or "dotfile" in failed[3])


def test_rolling_back_to_an_unsealed_release_checks_and_seals_it_first(stack: Stack) -> None:
    one, two, three = site("one"), site("two"), site("three")
    first = deploy_site(stack, one)
    deploy_site(stack, two)
    release = release_of(stack, "site", first["id"])
    unseal(release)
    back = stack.client.post("/api/slots/site/rollback", json={"version": 1}, headers=AUTH)
    assert back.status_code == 200, back.text
    assert served(stack, "site", list(one)) == hashes(one)
    assert releases.is_sealed(release) and modes(release) == {0o555, 0o444}

    deploy_site(stack, three)
    unseal(release)
    (release / "leak.html").symlink_to("/etc/passwd")
    refused = stack.client.post("/api/slots/site/rollback", json={"version": 1}, headers=AUTH)
    assert refused.status_code == 409, refused.text
    assert "cannot be made live" in refused.json()["error"]
    assert str(stack.settings.data_dir) not in refused.text
    assert served(stack, "site", list(three)) == hashes(three)
    assert fetch(stack, "/d/site/leak").status_code == 404
    slots = stack.client.get("/api/slots", headers=AUTH).json()["slots"]
    assert [(s["slot"], s["active_version"]) for s in slots] == [("site", 3)]


def test_at_start_an_unsealed_live_release_is_sealed_or_not_served(settings: Settings) -> None:
    clean, tampered = site("clean"), site("tampered")
    with running_stack(settings) as stack:
        kept = deploy_site(stack, clean, slot="clean")
        bad = deploy_site(stack, tampered, slot="bad")
    kept_release = release_of(stack, "clean", kept["id"])
    bad_release = release_of(stack, "bad", bad["id"])
    unseal(kept_release)
    unseal(bad_release)
    (bad_release / "css" / "leak.css").symlink_to("/etc/passwd")
    with running_stack(settings) as stack:
        assert served(stack, "clean", list(clean)) == hashes(clean)
        assert releases.is_sealed(kept_release)
        assert set(served(stack, "bad", [*tampered, "css/leak.css"]).values()) == {404}
        assert not (settings.data_dir / "live" / "bad").is_symlink()
        # The records are kept: the slot can be deployed again, and the files are left for a look.
        assert bad_release.is_dir()
        again = deploy_site(stack, tampered, slot="bad")
        assert served(stack, "bad", list(tampered)) == hashes(tampered)
        assert again["config_version"] == 2
