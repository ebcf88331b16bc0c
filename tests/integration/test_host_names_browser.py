"""A site built for the root of a domain, in Chromium at http://<slot>.localhost:<port>/ (its own origin)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright import sync_api

from tests.harness.stacks import LiveStack, Stack
from tests.integration.test_dashboard_browser import ARGS, ARTIFACTS, CHROMIUM, sign_in, write_site

STYLED = {
    "index.html": (
        '<!doctype html><html><head><link rel="stylesheet" href="/css/site.css"></head>'
        '<body><h1>Styled</h1><pre id="out"></pre><script src="/js/app.js"></script></body></html>'
    ),
    "css/site.css": "body { background: rgb(0, 128, 0); } h1 { color: rgb(255, 255, 255); }",
    "js/app.js": (
        "document.cookie = 'mine=styled; path=/';\n"
        "document.getElementById('out').textContent = JSON.stringify({cookie: document.cookie});\n"
    ),
}
VICTIM = {
    "index.html": "<!doctype html><p>victim</p><script>document.cookie = 'secret=victim; path=/';</script>",
}


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    assert CHROMIUM.exists(), "Debian's chromium is missing: run ./install.sh --dev as root"
    with sync_api.sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        yield launched
        launched.close()


def test_a_site_linking_from_the_root_renders_styled_and_cannot_read_another_slots_cookie(
    stack: Stack, browser: Any
) -> None:
    assert stack.deploy(STYLED, "styled").status_code == 201  # type: ignore[arg-type]
    assert stack.deploy(VICTIM, "victim").status_code == 201  # type: ignore[arg-type]
    port = stack.settings.sites_listen_port
    context = browser.new_context(viewport={"width": 800, "height": 400})
    context.set_default_timeout(20_000)
    try:
        page = context.new_page()
        page.goto(f"http://victim.localhost:{port}/")
        assert any(c["name"] == "secret" and c["domain"] == "victim.localhost" for c in context.cookies())

        page.goto(f"http://styled.localhost:{port}/")
        page.wait_for_function("document.getElementById('out').textContent.length > 0")
        background = page.evaluate("getComputedStyle(document.body).backgroundColor")
        heading = page.evaluate("getComputedStyle(document.querySelector('h1')).color")
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "hosts-styled-site.png"), full_page=True)
        assert (background, heading) == ("rgb(0, 128, 0)", "rgb(255, 255, 255)")
        seen = json.loads(page.inner_text("#out"))
        assert seen["cookie"] == "mine=styled"  # its own cookie, never victim's
    finally:
        context.close()


def test_the_dashboard_publishes_a_draft_shows_permalinks_and_promotes_it(
    live: LiveStack, browser: Any, tmp_path: Path
) -> None:
    first = live.deploy({"index.html": "one"}, "shown").json()
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    context.set_default_timeout(20_000)
    try:
        page = context.new_page()
        sign_in(page, live)
        folder = tmp_path / "shown"
        write_site(folder, {"index.html": "two"})
        page.goto(f"{live.base_url}/deploy")
        page.set_input_files("#folder-input", str(folder))
        page.wait_for_selector("#upload:not([disabled])")
        page.fill("#slot", "shown")
        page.check("#draft")
        page.click("#upload")
        assert "draft deployment 2" in page.wait_for_selector("#draft-result").inner_text()
        assert live.get("/d/shown/").text == "one"

        # A failed deploy is the newest; the overview still describes what is live.
        assert live.deploy({"index.html": "x", "_redirects": "/a\n"}, "shown").status_code == 422
        page.goto(f"{live.base_url}/")
        row = page.locator("tr[data-slot=shown]")
        assert row.locator("time").get_attribute("datetime") == first["created_at"]

        page.goto(f"{live.base_url}/slots/shown")
        port = live.settings.sites_listen_port
        states = page.locator("table.versions td.state").all_inner_texts()
        assert states == ["draft", "live"]
        links = page.locator("table.versions a.permalink").all_inner_texts()
        assert links == [f"http://2--shown.localhost:{port}/", f"http://1--shown.localhost:{port}/"]
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "hosts-slot-with-draft.png"), full_page=True)
        draft_page = context.new_page()
        draft_page.goto(f"http://2--shown.localhost:{port}/")
        assert draft_page.inner_text("body") == "two"
        draft_page.close()

        page.on("dialog", lambda dialog: dialog.accept())
        page.click("button:has-text('Promote 2')")
        page.wait_for_selector("text=Promoted: it is live.")
        assert live.get("/d/shown/").text == "two"
        assert page.locator("table.versions td.state").all_inner_texts() == ["live", "superseded"]
    finally:
        context.close()
