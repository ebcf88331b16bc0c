"""Rollback to every earlier version serves exactly the files that version served."""

from __future__ import annotations

import os

from tests.harness.auth import AUTH
from tests.harness.stacks import Stack
from tests.integration.support import deploy_site, hashes, live_version, recorded, served, site, tree

# Four versions whose file sets differ: a file appears, changes, disappears.
VERSIONS = {
    1: site("v1"),
    2: site("v2", extra={"news.html": b"<p>news</p>", "fonts/x.woff2": os.urandom(20_000)}),
    3: {**site("v3", extra={"fonts/x.woff2": os.urandom(20_000)}), "img/logo.png": site("v1")["img/logo.png"]},
    4: site("v4", extra={"big.bin": os.urandom(300_000)}),
}
ALL_PATHS = sorted({path for files in VERSIONS.values() for path in files})


def expected(version: int) -> dict[str, str | int]:
    files = VERSIONS[version]
    return {path: hashes(files)[path] if path in files else 404 for path in ALL_PATHS}


def test_rollback_to_every_earlier_version_serves_byte_identical_files(stack: Stack) -> None:
    for number, files in VERSIONS.items():
        assert deploy_site(stack, files)["config_version"] == number
    assert served(stack, "site", ALL_PATHS) == expected(4)
    releases = {p: tree(p) for p in sorted((stack.settings.releases_dir / "site").iterdir())}
    rows = recorded(stack.settings)

    for target in (3, 1, 2, 4, 1, 3):
        response = stack.client.post("/api/slots/site/rollback", json={"version": target}, headers=AUTH)
        assert response.json() == {"slot": "site", "active": target}
        assert live_version(stack, "site") == str(target)
        assert served(stack, "site", ALL_PATHS) == expected(target), f"version {target}"

    # Nothing was rebuilt: the same release trees, no new deployment or config version.
    assert {p: tree(p) for p in sorted((stack.settings.releases_dir / "site").iterdir())} == releases
    after = recorded(stack.settings)
    assert after["deployments"] == rows["deployments"]
    assert [(s, v, h) for s, v, _, h in after["config_versions"]] == [
        (s, v, h) for s, v, _, h in rows["config_versions"]
    ]
    assert [a[2] for a in after["activations"]] == ["deploy"] * 4 + ["rollback"] * 6
