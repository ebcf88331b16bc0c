"""A redeploy keeps the slot's time to live (the same moment); --ttl sets a new one, --ttl none removes it."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import pytest

from drophost.client import commands
from tests.harness.auth import TOKEN
from tests.harness.stacks import LiveStack


def drophost(live: LiveStack, capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    environ = {"DROPHOST_URL": live.base_url, "DROPHOST_API_TOKEN": TOKEN, "HOME": "/nonexistent"}
    code = commands.main(list(argv), environ)
    captured = capsys.readouterr()
    assert code == 0, captured.err
    return captured.out


def expiry(live: LiveStack, slot: str) -> str | None:
    found = {s["slot"]: s for s in live.api("GET", "/api/slots").json()["slots"]}[slot]
    assert found["status"] == "live"
    value: str | None = found["expires_at"]
    return value


def test_zip_and_folder_redeploys_keep_change_or_remove_the_ttl(
    live: LiveStack, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    folder = tmp_path / "preview"
    folder.mkdir()
    archive = tmp_path / "preview.zip"
    for n, kind in enumerate(("folder", "zip")):
        slot = f"preview-{kind}"

        def deploy(*extra: str, n: int = n, kind: str = kind, slot: str = slot) -> None:
            (folder / "index.html").write_text(f"{kind} {n} {extra}")
            if kind == "zip":
                buffer = io.BytesIO()
                with zipfile.ZipFile(buffer, "w") as z:
                    z.write(folder / "index.html", "index.html")
                archive.write_bytes(buffer.getvalue())
            drophost(live, capsys, "deploy", str(folder if kind == "folder" else archive), "--slot", slot, *extra)

        deploy("--ttl", "1d")
        first = expiry(live, slot)
        assert first is not None
        deploy()  # no --ttl: the same moment, not a day from now, and not removed
        assert expiry(live, slot) == first
        deploy("--ttl", "2d")
        changed = expiry(live, slot)
        assert changed is not None and changed > first
        deploy("--ttl", "none")
        assert expiry(live, slot) is None
        deploy()
        assert expiry(live, slot) is None
        assert live.get(f"/d/{slot}/").text.startswith(kind)
