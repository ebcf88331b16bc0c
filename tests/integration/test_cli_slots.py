"""The CLI's slot chores against a real stack: offline, ttl, pin/unpin, whoami, and deleting a slot for good."""

from __future__ import annotations

import json
import re
from pathlib import Path

import httpx2 as httpx
import pytest

from drophost.client import commands
from drophost.client.http import EXIT_NOT_FOUND, EXIT_USAGE
from tests.harness.auth import TOKEN
from tests.harness.stacks import LiveStack
from tests.harness.waiting import wait_until

TIME = r"\d{4}-\d\d-\d\d \d\d:\d\d UTC \((just now|\d+ min ago|in \d+ (h|min|days))\)"


def drophost(live: LiveStack, capsys: pytest.CaptureFixture[str], *argv: str, **env: str) -> tuple[int, str, str]:
    environ = {"DROPHOST_URL": live.base_url, "DROPHOST_API_TOKEN": TOKEN, "HOME": "/nonexistent", **env}
    code = commands.main(list(argv), environ)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def deploy(live: LiveStack, capsys: pytest.CaptureFixture[str], tmp_path: Path, slot: str, text: str) -> None:
    folder = tmp_path / slot
    folder.mkdir(exist_ok=True)
    (folder / "index.html").write_text(text)
    code, _, err = drophost(live, capsys, "deploy", str(folder), "--slot", slot)
    assert code == 0, err


def test_offline_ttl_pin_and_whoami(live: LiveStack, capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    deploy(live, capsys, tmp_path, "docs", "one")
    deploy(live, capsys, tmp_path, "docs", "two")

    code, out, _ = drophost(live, capsys, "ttl", "docs", "2h")
    assert code == 0 and re.fullmatch(f"docs goes offline at {TIME}\n", out), out
    assert "(in 1 h)" in out or "(in 2 h)" in out
    code, out, _ = drophost(live, capsys, "list")
    assert re.search(f"docs +live +2 +{TIME}", out), out
    code, out, _ = drophost(live, capsys, "ttl", "docs", "none")
    assert (code, out) == (0, "docs has no time to live: it stays until taken offline\n")
    assert live.api("GET", "/api/slots").json()["slots"][0]["expires_at"] is None

    code, out, _ = drophost(live, capsys, "pin", "docs", "1")
    assert (code, out) == (0, "docs version 1 is pinned: retention keeps its files\n")
    code, out, _ = drophost(live, capsys, "pin", "docs", "1", "--json")
    assert json.loads(out) == {"slot": "docs", "version": 1, "pinned": True}
    code, out, _ = drophost(live, capsys, "unpin", "docs", "1")
    assert (code, out) == (0, "docs version 1 is unpinned\n")
    code, _, err = drophost(live, capsys, "pin", "docs", "7")
    assert code == EXIT_NOT_FOUND and "has no config version 7" in err

    code, out, _ = drophost(live, capsys, "versions", "docs")
    assert re.search(f"\\* 2 +active +2 +{TIME}", out), out
    code, out, _ = drophost(live, capsys, "logs", "docs")
    assert re.search(f"^{TIME}  deployment 2  live  docs$", out, re.M), out
    assert "." not in out.split("deployment")[0]  # no microseconds

    code, out, _ = drophost(live, capsys, "offline", "docs")
    assert (code, out) == (0, "docs is offline; drophost rollback docs serves it again\n")
    assert live.get("/d/docs/").status_code == 404
    events = live.api("GET", "/api/slots/docs/events").json()["events"]
    assert events[0]["action"] == "offline"
    audit = live.api("GET", "/api/audit?target=docs&action=offline").json()["entries"]
    assert [(e["action"], e["result"]) for e in audit] == [("offline", "200")]

    code, out, _ = drophost(live, capsys, "whoami")
    assert out.splitlines() == [
        f"server: {live.base_url}",
        "token:  from the environment variable DROPHOST_API_TOKEN",
        "user:   bootstrap (admin, by bootstrap token)",
        "scopes: admin",
    ]
    user = {"name": "ann", "role": "deployer", "slots": ["docs-*"], "password": "a long password 1"}
    assert live.api("POST", "/api/users", json=user).status_code == 201
    made = live.api("POST", "/api/tokens", json={"name": "ci", "scopes": ["deploy:docs-*"], "user": "ann"}).json()
    code, out, _ = drophost(live, capsys, "whoami", "--json", "--token", made["token"])
    assert json.loads(out) == {
        "server": live.base_url,
        "token_from": "--token",
        "user": "ann",
        "role": "deployer",
        "scopes": ["deploy:docs-*"],
        "token_id": made["id"],
        "via": "token",
    }
    assert made["token"] not in out


def test_a_slot_is_deleted_for_good_with_its_history_and_files(
    live: LiveStack, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    deploy(live, capsys, tmp_path, "old-docs", "one")
    deploy(live, capsys, tmp_path, "old-docs", "two")
    deploy(live, capsys, tmp_path, "keep", "two")  # the same file: its blob stays for this slot
    releases = live.settings.releases_dir / "old-docs"
    assert releases.is_dir()

    # The API asks for the slot's name again.
    refused = live.api("DELETE", "/api/slots/old-docs?purge=true&confirm=old-doc")
    assert refused.status_code == 422 and "confirm=old-docs" in refused.json()["error"]
    assert live.get("/d/old-docs/").text == "two"
    # Without a terminal the CLI does not ask: it needs --yes.
    code, _, err = drophost(live, capsys, "delete", "old-docs")
    assert (code, err) == (
        EXIT_USAGE,
        "drophost: deleting old-docs for good needs --yes when no terminal can confirm it\n",
    )
    code, _, err = drophost(live, capsys, "delete", "old-doc", "--yes")
    assert (code, err) == (EXIT_NOT_FOUND, "drophost: no such slot 'old-doc'\n")

    code, out, err = drophost(live, capsys, "delete", "old-docs", "--yes")
    assert (code, out) == (0, "old-docs is deleted, with its 2 deployments\n"), err
    assert live.get("/d/old-docs/").status_code == 404
    assert live.get("/d/keep/").text == "two"
    assert not releases.exists()
    assert [s["slot"] for s in live.api("GET", "/api/slots").json()["slots"]] == ["keep"]
    assert live.api("GET", "/api/deployments?slot=old-docs").json()["deployments"] == []
    for path in ("/api/slots/old-docs/versions", "/api/slots/old-docs/events"):
        assert live.api("GET", path).status_code == 404
    audit = live.api("GET", "/api/audit?target=old-docs").json()["entries"]
    assert [(e["action"], e["result"]) for e in audit][:2] == [
        ("delete", "200"),
        ("delete", "422 " + refused.json()["error"]),
    ]
    # The files only it used are reclaimed by the store's gc; the shared one stays.
    report = live.api("POST", "/api/gc", json={}).json()
    assert report["blobs"] == 1
    assert live.get("/d/keep/").text == "two"

    # The name can be used again, from version 1.
    deploy(live, capsys, tmp_path, "old-docs", "new")
    assert live.api("GET", "/api/slots/old-docs/versions").json()["active"] == 1


def test_an_expired_slot_is_deleted_too_and_its_410_goes(
    live: LiveStack, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    deploy(live, capsys, tmp_path, "brief", "x")
    assert live.api("PATCH", "/api/slots/brief", json={"ttl": "1s"}).status_code == 200
    assert wait_until(lambda: live.get("/d/brief/").status_code == 410)
    code, _, err = drophost(live, capsys, "delete", "brief", "--yes")
    assert code == 0, err
    assert live.get("/d/brief/").status_code == 404


def test_the_dashboard_deletes_a_slot_only_when_its_name_is_typed(
    live: LiveStack, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    deploy(live, capsys, tmp_path, "gone", "x")
    with httpx.Client(base_url=live.base_url, timeout=30) as browser:
        signin = browser.post("/signin", data={"token": TOKEN, "next": "/"})
        assert signin.status_code == 303, signin.text
        page = browser.get("/slots/gone")
        assert 'action="/slots/gone/delete"' in page.text and "Type <strong>gone</strong> to confirm" in page.text
        csrf = re.search(r'name="csrf" value="([^"]+)"', page.text)
        assert csrf is not None
        wrong = browser.post("/slots/gone/delete", data={"csrf": csrf.group(1), "confirm": "gon"})
        assert live.get("/d/gone/").text == "x"
        assert wrong.status_code == 422 and "to delete it for good" in wrong.text
        done = browser.post("/slots/gone/delete", data={"csrf": csrf.group(1), "confirm": "gone"})
        assert done.status_code == 303 and done.headers["location"] == "/"
    assert live.api("GET", "/api/slots").json()["slots"] == []
    audit = live.api("GET", "/api/audit?target=gone").json()["entries"]
    assert audit[0]["action"] == "dashboard_delete" and audit[0]["result"] == "303"
