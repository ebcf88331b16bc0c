"""A site built for the root of a domain, in Chromium at http://<slot>.localhost:<port>/ (its own origin)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from playwright import sync_api

from tests.harness.stacks import Stack
from tests.integration.test_dashboard_browser import ARGS, ARTIFACTS, CHROMIUM

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
