"""Issue 19's dashboard in Debian's Chromium: at desktop width and at 390 pixels, light and dark, with axe-core.

Each behaviour runs in the four looks; screenshots go to test-artifacts/dashboard-ui-*.png.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx2 as httpx
import pytest
from playwright import sync_api

from tests.harness.auth import AUTH, TOKEN
from tests.harness.stacks import LiveStack
from tests.harness.zips import make_zip
from tests.integration.test_dashboard_browser import ARGS, ARTIFACTS, CHROMIUM, drop, sign_in

# install.sh --dev puts axe-core (pinned) here; nothing is downloaded at test time.
AXE = Path(__file__).resolve().parents[2] / ".venv" / "node" / "node_modules" / "axe-core" / "axe.min.js"
LOOKS = {
    "desktop-light": ({"width": 1280, "height": 900}, "light"),
    "desktop-dark": ({"width": 1280, "height": 900}, "dark"),
    "phone-light": ({"width": 390, "height": 844}, "light"),
    "phone-dark": ({"width": 390, "height": 844}, "dark"),
}
ZONE = "America/New_York"


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    assert CHROMIUM.exists(), "Debian's chromium is missing: run ./install.sh --dev as root"
    with sync_api.sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        yield launched
        launched.close()


@pytest.fixture(params=list(LOOKS))
def look(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def page(browser: Any, look: str, live: LiveStack) -> Iterator[Any]:
    """A page in one look; closed before the stack stops (its polling would report the closed port)."""
    viewport, scheme = LOOKS[look]
    # bypass_csp: axe-core goes in as an inline script, which the dashboard's policy refuses (rightly);
    # test_dashboard_browser.py checks the policy itself.
    context = browser.new_context(
        viewport=viewport, color_scheme=scheme, timezone_id=ZONE, locale="en-US", bypass_csp=True
    )
    context.set_default_timeout(20_000)
    opened = context.new_page()
    problems: list[str] = []
    opened.on("console", lambda message: problems.append(message.text) if message.type == "error" else None)
    opened.on("pageerror", lambda error: problems.append(str(error)))
    yield opened
    context.close()
    # A pattern Chromium cannot compile is only a console error: none may appear on any page.
    assert [p for p in problems if "status of 4" not in p] == []


def shot(page: Any, look: str, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"dashboard-ui-{name}-{look}.png"), full_page=True)


def check_axe(page: Any, what: str) -> None:
    """No serious or critical axe-core violation on the page as it is now."""
    assert AXE.exists(), "axe-core is missing: run ./install.sh --dev"
    page.add_script_tag(path=str(AXE))
    found = page.evaluate(
        """async () => {
          const result = await axe.run(document, {resultTypes: ["violations"]});
          return result.violations.filter((v) => v.impact === "serious" || v.impact === "critical")
            .map((v) => v.id + ": " + v.help + " at " + v.nodes.slice(0, 3).map((n) => n.target.join(" ")).join(", "));
        }"""
    )
    assert found == [], f"{what}: {found}"


def check_layout(page: Any, look: str) -> None:
    """Nothing wider than the window (tables scroll inside their box), and the colours follow the scheme."""
    width = page.evaluate("document.documentElement.scrollWidth")
    wide = page.evaluate(
        """(limit) => Array.from(document.querySelectorAll("main *"))
          .filter((e) => e.getBoundingClientRect().right > limit && !e.closest(".scroll"))
          .slice(0, 5).map((e) => e.tagName + "." + e.className + "#" + e.id)""",
        LOOKS[look][0]["width"],
    )
    assert width <= LOOKS[look][0]["width"], f"{page.url} is {width} pixels wide: {wide}"
    background = page.evaluate("getComputedStyle(document.documentElement).backgroundColor")
    assert (background == "rgb(15, 20, 26)") == look.endswith("dark"), background
    if look.startswith("phone"):
        header = page.evaluate("document.querySelector('header.top').getBoundingClientRect().height")
        assert header < 100, f"the header is {header} pixels high"


def deploy_api(live: LiveStack, slot: str, files: dict[str, str], name: str | None = None) -> httpx.Response:
    return httpx.post(
        f"{live.base_url}/api/deployments",
        files={"file": (name or f"{slot}.zip", make_zip(files), "application/zip")},
        data={"slot": slot},
        headers=AUTH,
        timeout=30,
    )


def test_every_page_passes_axe_and_fits_the_window(page: Any, look: str, live: LiveStack) -> None:
    page.goto(f"{live.base_url}/signin")
    check_axe(page, "sign in")
    check_layout(page, look)
    assert deploy_api(live, "handbook", {"index.html": "one"}).status_code == 201
    assert deploy_api(live, "handbook", {"index.html": "two"}).status_code == 201
    assert deploy_api(live, "handbook", {"index.html": "x", "_redirects": "/a /b 399\n"}).status_code == 422
    assert deploy_api(live, "a-rather-long-slot-name-for-a-phone", {"index.html": "z"}).status_code == 201
    assert live.api("POST", "/api/users", json={"name": "ann", "role": "viewer", "password": "p" * 12}).is_success
    sign_in(page, live)
    for path, name in (
        ("/", "overview"),
        ("/slots/handbook", "slot"),
        ("/slots/handbook#deployment-3", "deployment"),
        ("/deploy", "deploy"),
        ("/analytics", "analytics"),
        ("/tokens", "tokens"),
        ("/audit", "audit"),
        ("/users", "users"),
        ("/deliveries", "deliveries"),
        ("/deployments/3", "deployment page"),
        ("/slots/nothing-here", "error"),
    ):
        page.goto(f"{live.base_url}{path}")
        check_axe(page, name)
        check_layout(page, look)
        shot(page, look, f"page-{name}")
    if look.startswith("phone"):
        page.goto(f"{live.base_url}/")
        # The table is wider than a phone: it scrolls in its box, which says so.
        box = page.locator("section[aria-labelledby=slots-title] .scroll")
        assert box.evaluate("b => b.scrollWidth > b.clientWidth") and "overflows" in str(box.get_attribute("class"))
        assert box.evaluate("b => getComputedStyle(b).overflowX") == "auto"


def test_the_overview_shows_what_is_live_flags_a_failed_deploy_and_shows_local_times(
    page: Any, look: str, live: LiveStack
) -> None:
    assert deploy_api(live, "handbook", {"index.html": "one"}, "handbook-v1.zip").status_code == 201
    assert deploy_api(live, "handbook", {"index.html": "two"}, "handbook-v2.zip").status_code == 201
    failed = deploy_api(live, "handbook", {"index.html": "x", "_redirects": "/a /b 399\n"}, "handbook-v3.zip")
    assert failed.status_code == 422
    sign_in(page, live)
    row = page.locator('tr[data-slot="handbook"]')
    assert "live" in row.locator(".badge").first.inner_text()
    assert "handbook-v2.zip" in row.locator("td.source").inner_text()
    mark = row.locator("a.last-failed")
    assert mark.inner_text() == "last deploy failed"
    shot(page, look, "overview-failed")
    when = row.locator("td.when time")
    assert re.fullmatch(r"just now|\d+ min ago", when.inner_text()), when.inner_text()
    assert re.search(r"\d{1,2}:\d\d:\d\d\s[AP]M\sE[SD]T", str(when.get_attribute("title")))
    assert "America/New York" in page.inner_text("#zone")
    mark.click()
    page.wait_for_url(f"**/slots/handbook#deployment-{failed.json()['deployment_id']}")
    assert "399" in page.inner_text(f"#deployment-{failed.json()['deployment_id']}")

    assert live.api("POST", "/api/slots/handbook/rollback", json={"version": 1}).status_code == 200
    page.goto(f"{live.base_url}/")
    assert "handbook-v1.zip" in row.locator("td.source").inner_text()
    assert row.locator("td").nth(5).inner_text() == "1"
    shot(page, look, "overview-rolled-back")


def test_without_javascript_times_stay_utc(browser: Any, live: LiveStack) -> None:
    assert deploy_api(live, "plain", {"index.html": "one"}).status_code == 201
    context = browser.new_context(java_script_enabled=False, timezone_id=ZONE)
    try:
        page = context.new_page()
        page.goto(f"{live.base_url}/signin")
        page.fill("#token", TOKEN)
        page.click("button[type=submit]")
        page.wait_for_selector("h1:has-text('Slots')")
        assert page.inner_text('tr[data-slot="plain"] td.when').endswith(" UTC")
        assert page.inner_text("#zone") == "Times are in UTC."
    finally:
        context.close()


def test_the_lists_sort_search_and_page_at_57_slots(page: Any, look: str, live: LiveStack) -> None:
    for i in range(57):
        assert deploy_api(live, f"site-{i:02d}", {"index.html": str(i)}).status_code == 201
    sign_in(page, live)
    assert page.locator("tr[data-slot]").count() == 25
    assert page.inner_text("#slot-count") == "1–25 of 57 slots"
    page.click("section[aria-labelledby=slots-title] th a:text-is('Slot')")
    page.wait_for_selector("section[aria-labelledby=slots-title] th[aria-sort=ascending] a:text-is('Slot')")
    assert page.locator("tr[data-slot]").first.get_attribute("data-slot") == "site-00"
    page.click("nav[aria-label='Slot pages'] a:text-is('3')")
    page.wait_for_selector("text=51–57 of 57 slots")
    assert page.locator("tr[data-slot]").count() == 7
    shot(page, look, "overview-page-3")
    page.fill("#filter-slot", "site-1")
    page.click(".filters button[type=submit]")
    page.wait_for_selector("text=1–10 of 10 slots")
    assert "deployments" in page.inner_text("#deployment-count")


def test_the_deploy_page_checks_first_asks_before_replacing_and_works_by_keyboard(
    page: Any, look: str, live: LiveStack
) -> None:
    assert deploy_api(live, "handbook", {"index.html": "one"}, "handbook.zip").status_code == 201
    sign_in(page, live)
    # Listening from the start has Chromium hand every file chooser to the test (it enables that
    # asynchronously: enabled only at the key press, the first chooser could be missed).
    page.on("filechooser", lambda chooser: None)
    page.goto(f"{live.base_url}/deploy")
    uploads: list[str] = []
    page.on("request", lambda r: uploads.append(r.url) if r.method == "POST" else None)

    # The slot pattern compiles in Chromium (a bad one would only log an error and match anything).
    assert page.eval_on_selector("#slot", "e => { e.value = 'Team Doc'; return e.validity.patternMismatch }")
    assert not page.eval_on_selector("#slot", "e => { e.value = 'team-doc'; return e.validity.patternMismatch }")
    page.fill("#slot", "")

    # The keyboard: the drop zone is no Tab stop; the two buttons are, with a visible focus ring.
    page.focus("nav a[href='/deploy']")
    reached = []
    for _ in range(12):
        page.keyboard.press("Tab")
        reached.append(page.evaluate("document.activeElement.id || document.activeElement.tagName"))
    assert "choose-zip" in reached and "choose-folder" in reached and "dropzone" not in reached
    page.focus("#choose-zip")
    page.keyboard.press("Shift+Tab")
    page.keyboard.press("Tab")
    outline = page.eval_on_selector(
        "#choose-zip", "e => getComputedStyle(e).outlineStyle + ' ' + getComputedStyle(e).outlineWidth"
    )
    assert outline.startswith("solid") and not outline.endswith(" 0px"), outline
    with page.expect_file_chooser() as chooser:
        page.keyboard.press("Enter")
    chooser.value.set_files(
        files=[{"name": "handbook.zip", "mimeType": "application/zip", "buffer": make_zip({"index.html": "two"})}]
    )
    page.wait_for_selector("text=It goes to the slot handbook, which is live now.")
    page.focus("#choose-folder")
    with page.expect_file_chooser() as folder_chooser:
        page.keyboard.press(" ")
    assert folder_chooser.value.is_multiple()

    # Bad fields are reported before anything is uploaded.
    page.fill("#slot", "Team Doc")
    page.click("#upload")
    assert "not a valid slot name" in page.inner_text("#result.error")
    page.fill("#slot", "")
    page.fill("#ttl", "2 weeks")
    page.click("#upload")
    assert "not a duration" in page.inner_text("#result.error")
    page.fill("#ttl", "999999999w")
    page.click("#upload")
    page.wait_for_selector("#result.error >> text=ttl must be between")
    assert uploads == []
    shot(page, look, "deploy-checked")

    # A live slot: the page says what is live there and asks; Cancel leaves it alone.
    page.fill("#ttl", "")
    page.evaluate(
        """() => {
          const result = document.getElementById("result");
          window.seen = [];
          new MutationObserver(() => window.seen.push(result.className + "|" + result.textContent))
            .observe(result, {childList: true, subtree: true, attributes: true, characterData: true});
          const button = document.getElementById("upload");
          window.busy = [];
          new MutationObserver(() => window.busy.push(button.getAttribute("aria-busy") + "|" + button.textContent))
            .observe(button, {childList: true, subtree: true, attributes: true});
        }"""
    )
    page.click("#upload")
    question = page.wait_for_selector("#confirm-text")
    assert re.search(
        r"handbook is live: version 1 from handbook\.zip, deployed (just now|\d+ min ago)", question.inner_text()
    )
    shot(page, look, "deploy-asks")
    page.click("#confirm-cancel")
    assert uploads == [] and live.api("GET", "/api/slots/handbook/versions").json()["active"] == 1
    page.click("#upload")
    page.click("#confirm-replace")
    page.wait_for_selector("#live-link")
    assert live.api("GET", "/api/slots/handbook/versions").json()["active"] == 2
    # After the earlier error, "Uploading…" never showed in the red box; the button was busy meanwhile.
    assert not [s for s in page.evaluate("window.seen") if s.startswith("error|") and "Upload" in s]
    assert "true|Deploying…" in page.evaluate("window.busy")
    assert page.is_disabled("#upload")  # the same file again needs choosing again
    shot(page, look, "deploy-replaced")

    # Loose files have no folder name: the page asks for the slot instead of using "site".
    drop(page, {"index.html": b"loose", "about.html": b"about"}, "text/html")
    page.wait_for_selector("text=type the slot they go to")
    page.click("#upload")
    assert "Type the slot" in page.inner_text("#result.error")
    assert len(uploads) == 1
    page.fill("#slot", "loose-files")
    page.click("#upload")
    page.wait_for_selector("#live-link")
    assert live.get("/d/loose-files/about").text == "about"
    assert "site" not in [s["slot"] for s in live.api("GET", "/api/slots").json()["slots"]]


def test_an_upload_shows_its_progress(page: Any, look: str, live: LiveStack) -> None:
    sign_in(page, live)
    page.goto(f"{live.base_url}/deploy")
    # A slow link, so the upload takes a few seconds and reports progress on the way.
    cdp = page.context.new_cdp_session(page)
    cdp.send("Network.enable")
    cdp.send(
        "Network.emulateNetworkConditions",
        {"offline": False, "latency": 20, "downloadThroughput": -1, "uploadThroughput": 256 * 1024},
    )
    big = make_zip({"index.html": "big", "noise.bin": bytes(range(256)) * 4096 + os.urandom(600_000)})
    drop(page, {"big.zip": big}, "application/zip")
    page.wait_for_selector("#upload:not([disabled])")
    page.evaluate(
        """() => {
          const text = document.getElementById("progress-text");
          window.progressSeen = [];
          new MutationObserver(() => window.progressSeen.push(text.textContent))
            .observe(text, {childList: true, subtree: true, characterData: true});
        }"""
    )
    page.click("#upload")
    page.wait_for_selector("#progress:not([hidden])")
    page.wait_for_function("document.getElementById('progress').value > 0")
    shot(page, look, "deploy-progress")
    page.wait_for_selector("#live-link", timeout=60_000)
    seen = page.evaluate("window.progressSeen")
    assert any(re.match(r"Uploading… \d+% of", s) for s in seen), seen
    assert "Uploaded; publishing…" in seen


def test_rollback_and_promote_buttons_show_they_are_busy(page: Any, look: str, live: LiveStack) -> None:
    assert deploy_api(live, "busy", {"index.html": "one"}).status_code == 201
    assert deploy_api(live, "busy", {"index.html": "two"}).status_code == 201
    sign_in(page, live)
    page.goto(f"{live.base_url}/slots/busy")
    page.on("dialog", lambda dialog: dialog.accept())
    # Hold the form back, to see the state the button takes while the request would run.
    page.eval_on_selector("form[action$='/rollback']", "f => f.addEventListener('submit', (e) => e.preventDefault())")
    page.click("button.rollback")
    button = page.locator("button.rollback")
    assert button.get_attribute("aria-busy") == "true" and button.inner_text() == "Rolling back…"
    page.wait_for_function("document.querySelector('button.rollback').disabled")
    shot(page, look, "slot-busy")
    page.goto(f"{live.base_url}/slots/busy")
    page.click("button.rollback")
    page.wait_for_selector("text=Rolled back.")
    assert page.inner_text("#active-version") == "1"


def test_analytics_knows_its_slots_splits_404s_and_draws_visitors(page: Any, look: str, live: LiveStack) -> None:
    names = [f"shop-{i}" for i in range(10)]
    for name in names:
        assert deploy_api(live, name, {"index.html": name}).status_code == 201
        httpx.get(f"{live.sites_base_url}/d/{name}/", timeout=10)
    httpx.get(f"{live.sites_base_url}/d/shop-0/missing", timeout=10)
    sign_in(page, live)
    deadline = time.monotonic() + 20
    while True:
        page.goto(f"{live.base_url}/analytics")
        if int(page.inner_text("#requests-total")) >= 11 or time.monotonic() > deadline:
            break
        time.sleep(0.3)
    lines = page.locator("figure[data-metric=visitors] polyline")
    assert lines.count() == 10
    colours = {lines.nth(i).get_attribute("stroke") for i in range(10)}
    assert len(colours) == 10
    assert "Status" in page.inner_text("#top-paths thead")
    assert "/d/shop-0/missing" in page.inner_text("#top-404s")
    assert "missing" not in page.inner_text("#top-paths")
    shot(page, look, "analytics")
    page.fill("#analytics-slot", "shop-99")
    page.click("form.filters button[type=submit]")
    page.wait_for_selector('text=There is no slot "shop-99".')
    shot(page, look, "analytics-no-such-slot")


def test_visitors_of_an_offline_expired_or_unknown_site_get_a_page_not_json(
    page: Any, look: str, live: LiveStack
) -> None:
    """What a visitor's browser shows (issue 19: expired and offline previews showed raw JSON)."""
    assert deploy_api(live, "gone", {"index.html": "bye"}).status_code == 201
    assert deploy_api(live, "brief", {"index.html": "short"}).status_code == 201
    assert live.api("DELETE", "/api/slots/gone").is_success
    assert live.api("PATCH", "/api/slots/brief", json={"ttl": "1s"}).is_success
    deadline = time.monotonic() + 30
    while {s["slot"]: s["status"] for s in live.api("GET", "/api/slots").json()["slots"]}["brief"] != "expired":
        assert time.monotonic() < deadline, "brief did not expire"
        time.sleep(0.2)
    port = live.settings.sites_listen_port
    for url, status, heading, name in (
        (f"{live.sites_base_url}/d/gone/", 404, "No site is deployed at this address", "offline"),
        (f"http://brief.localhost:{port}/", 410, "This site has expired", "expired"),
        (f"http://never-was.localhost:{port}/", 404, "No site is deployed at this address", "unknown"),
    ):
        answer = page.goto(url)
        assert answer is not None and answer.status == status, url
        assert answer.headers["content-type"].startswith("text/html"), url
        assert page.locator("h1").inner_text() == heading
        check_axe(page, f"visitor page ({name})")
        shot(page, look, f"visitor-{name}")
