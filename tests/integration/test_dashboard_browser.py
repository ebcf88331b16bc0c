"""The dashboard in a real headless Chromium (Debian's), driven by Playwright; screenshots in test-artifacts/."""

from __future__ import annotations

import base64
import json
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

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    # install.sh --dev installs Debian's chromium; nothing here may download a browser.
    assert CHROMIUM.exists(), "Debian's chromium is missing: run ./install.sh --dev as root"
    with sync_api.sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        yield launched
        launched.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    context.set_default_timeout(20_000)
    yield context.new_page()
    context.close()


def shot(page: Any, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"dashboard-{name}.png"), full_page=True)


def sign_in(page: Any, live: LiveStack) -> None:
    page.goto(f"{live.base_url}/")
    page.wait_for_url("**/signin?next=/")
    page.fill("#token", TOKEN)
    page.click("button[type=submit]")
    page.wait_for_selector("h1:has-text('Slots')")


def write_site(folder: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text(text)


def deploy_folder(page: Any, live: LiveStack, folder: Path) -> str:
    page.bring_to_front()
    page.goto(f"{live.base_url}/deploy")
    page.set_input_files("#folder-input", str(folder))
    page.wait_for_selector("#upload:not([disabled])")
    page.click("#upload")
    # Replacing a live site asks first (issue 19); a new slot goes live at once.
    page.wait_for_selector("#live-link, #confirm-replace:visible")
    if page.is_visible("#confirm-replace"):
        page.click("#confirm-replace")
    link = page.wait_for_selector("#live-link")
    return str(link.get_attribute("href"))


def test_sign_in_deploy_a_folder_diff_roll_back_analytics_sign_out(page: Any, live: LiveStack, tmp_path: Path) -> None:

    problems: list[str] = []  # script errors and Content-Security-Policy violations on our pages
    page.on("console", lambda message: problems.append(message.text) if message.type == "error" else None)
    page.on("pageerror", lambda error: problems.append(str(error)))
    page.goto(f"{live.base_url}/")
    shot(page, "1-signin")
    sign_in(page, live)
    shot(page, "2-empty-overview")

    folder = tmp_path / "team-site"
    write_site(folder, {"index.html": "<h1>version one</h1>", "css/site.css": "h1{color:red}", ".git/HEAD": "x"})
    url = deploy_folder(page, live, folder)
    assert url == f"http://team-site.localhost:{live.settings.sites_listen_port}/"
    url = f"{live.sites_base_url}/d/team-site/"  # the same site, where this machine's resolver reaches it
    assert "team-site is live (version 1)" in page.inner_text("#result")
    shot(page, "3-deployed")
    assert httpx.get(url, timeout=10).text == "<h1>version one</h1>"
    assert httpx.get(url + ".git/HEAD", timeout=10).status_code == 404

    # A second page watches the overview while the next version is deployed: it updates by itself.
    watcher = page.context.new_page()
    watcher.goto(f"{live.base_url}/")
    watcher.wait_for_selector('tr[data-slot="team-site"] td:nth-child(6):text-is("1")')
    write_site(folder, {"index.html": "<h1>version two</h1>", "new.html": "new"})
    deploy_folder(page, live, folder)
    watcher.bring_to_front()  # the person looks at the overview again; it has no reload button pressed
    watcher.wait_for_selector('tr[data-slot="team-site"] td:nth-child(6):text-is("2")')
    shot(watcher, "4-overview-live")
    watcher.close()
    assert httpx.get(url, timeout=10).text == "<h1>version two</h1>"

    page.goto(f"{live.base_url}/slots/team-site")
    page.select_option("#diff-a", "1")
    page.select_option("#diff-b", "2")
    page.click("#diff-form button")
    diff = page.inner_text("#diff")
    assert "added new.html" in diff and "changed index.html" in diff
    assert "-<h1>version one</h1>" in diff and "+<h1>version two</h1>" in diff
    shot(page, "5-slot-diff")

    page.on("dialog", lambda dialog: dialog.accept())
    page.click("button:has-text('Roll back to 1')")
    page.wait_for_selector("text=Rolled back.")
    assert page.inner_text("#active-version") == "1"
    assert httpx.get(url, timeout=10).text == "<h1>version one</h1>"
    shot(page, "6-rolled-back")

    for _ in range(5):
        httpx.get(url, timeout=10)
    httpx.get(url + "css/site.css", timeout=10)
    httpx.get(url + "missing", timeout=10)
    # With the 4 requests above (one a 404 for .git/HEAD), nginx served 11 requests for the slot.
    deadline = time.monotonic() + 20
    while True:
        page.goto(f"{live.base_url}/analytics")
        total = int(page.inner_text("#requests-total"))
        if total >= 11 or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert total == 11
    assert page.inner_text("#status-4xx") == "2"
    assert page.inner_text("#deployments-total") == "2"
    assert page.locator("figure[data-metric=requests] svg rect").count() >= 1
    assert "/d/team-site/index.html" in page.inner_text("#top-paths")
    shot(page, "7-analytics")

    assert problems == []
    page.click("#signout")
    page.wait_for_url("**/signin")
    page.goto(f"{live.base_url}/slots/team-site")
    page.wait_for_url("**/signin?next=/slots/team-site")
    shot(page, "8-signed-out")


DROP = """([name, b64, type]) => {
  const dt = new DataTransfer();
  for (let i = 0; i < name.length; i++) {
    const bytes = Uint8Array.from(atob(b64[i]), (c) => c.charCodeAt(0));
    dt.items.add(new File([bytes], name[i], {type: type[i]}));
  }
  const zone = document.getElementById("dropzone");
  zone.dispatchEvent(new DragEvent("dragover", {dataTransfer: dt, bubbles: true, cancelable: true}));
  zone.dispatchEvent(new DragEvent("drop", {dataTransfer: dt, bubbles: true, cancelable: true}));
}"""


def drop(page: Any, files: dict[str, bytes], content_type: str) -> None:
    names = list(files)
    encoded = [base64.b64encode(files[n]).decode() for n in names]
    page.evaluate(DROP, [names, encoded, [content_type] * len(names)])


def test_dropping_a_zip_or_loose_files_deploys_them_with_a_ttl(page: Any, live: LiveStack) -> None:
    sign_in(page, live)
    page.goto(f"{live.base_url}/deploy")
    drop(page, {"dropped.zip": make_zip({"index.html": "from a dropped zip"})}, "application/zip")
    page.wait_for_selector("#upload:not([disabled])")
    page.fill("#ttl", "2h")
    page.click("#upload")
    url = page.wait_for_selector("#live-link").get_attribute("href")
    assert url == f"http://dropped.localhost:{live.settings.sites_listen_port}/"
    assert live.get("/d/dropped/").text == "from a dropped zip"
    slot = live.api("GET", "/api/slots").json()["slots"][0]
    assert slot["slot"] == "dropped" and slot["expires_at"] is not None

    page.goto(f"{live.base_url}/deploy")
    drop(page, {"index.html": b"loose", "about.html": b"about"}, "text/html")
    page.wait_for_selector("text=2 files, zipped")
    page.fill("#slot", "loose-files")
    page.click("#upload")
    url = page.wait_for_selector("#live-link").get_attribute("href")
    assert url == f"http://loose-files.localhost:{live.settings.sites_listen_port}/"
    assert live.get("/d/loose-files/about").text == "about"

    page.goto(f"{live.base_url}/deploy")
    drop(page, {"broken.zip": b"not a zip"}, "application/zip")
    page.click("#upload")
    page.wait_for_selector("#result.error")
    assert "not a readable ZIP" in page.inner_text("#result")
    shot(page, "10-deploy-error")


TENANT_PAGE = """<!doctype html><title>tenant</title><pre id="out"></pre>
<script>
(async () => {
  const main = new URLSearchParams(location.search).get("main");
  const out = {cookie: document.cookie};
  async function attempt(name, url, options) {
    try { const r = await fetch(url, options); out[name] = r.type === "opaque" ? "opaque" : r.status; }
    catch (e) { out[name] = "blocked"; }
  }
  await attempt("read_api", main + "/api/slots", {credentials: "include"});
  await attempt("read_api_with_header", main + "/api/slots",
                {credentials: "include", headers: {"X-CSRF-Token": "guess"}});
  await attempt("read_dashboard", main + "/", {credentials: "include"});
  await attempt("blind_rollback", main + "/api/slots/victim/rollback",
                {method: "POST", mode: "no-cors", credentials: "include", body: "{}"});
  await attempt("blind_form_rollback", main + "/slots/victim/rollback",
                {method: "POST", mode: "no-cors", credentials: "include", body: new URLSearchParams({version: "1"})});
  await attempt("blind_signout", main + "/signout", {method: "POST", mode: "no-cors", credentials: "include"});
  document.getElementById("out").textContent = JSON.stringify(out);
})();
</script>"""


def test_a_tenant_site_cannot_read_the_session_or_act_as_the_signed_in_user(page: Any, live: LiveStack) -> None:
    for body in ("victim one", "victim two"):
        answer = live.deploy({"index.html": body}, "victim")
        assert answer.status_code == 201
    assert live.deploy({"index.html": TENANT_PAGE}, "tenant").status_code == 201
    sign_in(page, live)
    cookies = page.context.cookies()
    session = [c for c in cookies if c["name"] == "drophost_session"]
    assert session and session[0]["httpOnly"] and session[0]["sameSite"] == "Strict"

    page.goto(f"{live.sites_base_url}/d/tenant/?main={live.base_url}")
    page.wait_for_function("document.getElementById('out').textContent.length > 0")
    seen = json.loads(page.inner_text("#out"))
    shot(page, "9-tenant")
    assert "drophost_session" not in seen["cookie"]
    assert seen["read_api"] == "blocked"
    assert seen["read_api_with_header"] == "blocked"
    assert seen["read_dashboard"] == "blocked"
    # Blind requests may leave, but the server refuses them: nothing changed, still signed in.
    assert live.api("GET", "/api/slots/victim/versions").json()["active"] == 2
    assert httpx.get(f"{live.sites_base_url}/d/victim/", timeout=10).text == "victim two"
    page.goto(f"{live.base_url}/slots/victim")
    assert page.inner_text("#active-version") == "2"
    assert httpx.get(f"{live.base_url}/api/slots", headers=AUTH, timeout=10).status_code == 200


def test_an_admin_adds_and_removes_a_user_on_the_users_page(page: Any, live: LiveStack) -> None:
    sign_in(page, live)
    page.click("nav a:has-text('Users')")
    page.wait_for_selector("h1:has-text('Users')")
    page.fill("#user-name", "dee")
    page.select_option("#user-role", "deployer")
    page.fill("#user-slots", "docs-*")
    page.fill("#user-password", "a long password")
    page.click("form[action='/users'] button[type=submit]")
    page.wait_for_selector("text=Added deployer dee.")
    assert "docs-*" in page.inner_text("tr[data-user='dee']")
    shot(page, "10-users")
    assert [u["name"] for u in live.api("GET", "/api/users").json()["users"]] == ["dee"]
    page.on("dialog", lambda dialog: dialog.accept())
    page.click("tr[data-user='dee'] button:has-text('Remove')")
    page.wait_for_selector("text=Removed dee and their tokens.")
    assert live.api("GET", "/api/users").json()["users"] == []
