"""The slot page's Delete in a real headless Chromium: it names the slot, asks to type it, then deletes for good."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from playwright import sync_api

from tests.harness.auth import TOKEN
from tests.harness.stacks import LiveStack
from tests.harness.zips import make_zip
from tests.integration.test_dashboard_browser import ARGS, ARTIFACTS, CHROMIUM


@pytest.fixture
def page() -> Iterator[Any]:
    assert CHROMIUM.exists(), "Debian's chromium is missing: run ./install.sh --dev as root"
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        context = browser.new_context(viewport={"width": 1280, "height": 900})
        context.set_default_timeout(20_000)
        yield context.new_page()
        browser.close()


def test_the_slot_page_deletes_a_slot_for_good_once_its_name_is_typed(page: Any, live: LiveStack) -> None:
    for slot in ("handbook", "other"):
        files = {"file": (f"{slot}.zip", make_zip({"index.html": slot}), "application/zip")}
        assert live.api("POST", "/api/deployments", files=files).status_code == 201
    page.goto(f"{live.base_url}/signin?next=/slots/handbook")
    page.fill("#token", TOKEN)
    page.click("button[type=submit]")
    page.wait_for_url("**/slots/handbook")
    asked: list[str] = []

    def answer(dialog: Any) -> None:
        asked.append(dialog.message)
        dialog.accept()

    page.on("dialog", answer)
    # The browser refuses the form until the name is typed.
    page.click("button:has-text('Delete handbook')")
    assert page.evaluate("document.querySelector('#delete-confirm').validity.valueMissing")
    page.fill("#delete-confirm", "handbook")
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "dashboard-delete-slot.png"), full_page=True)
    page.click("button:has-text('Delete handbook')")
    page.wait_for_url(f"{live.base_url}/")
    assert asked == ["Delete handbook for good, with its whole history? This cannot be undone."]
    assert [s["slot"] for s in live.api("GET", "/api/slots").json()["slots"]] == ["other"]
    assert live.get("/d/handbook/").status_code == 404
    assert live.get("/d/other/").text == "other"
