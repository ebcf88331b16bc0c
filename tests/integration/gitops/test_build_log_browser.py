"""The deployment page in Chromium shows a build's log as it is written, and the whole log afterwards."""

from __future__ import annotations

import shutil
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright import sync_api

from tests.harness.auth import TOKEN
from tests.harness.git import push, work_repo
from tests.harness.stacks import Served
from tests.integration.gitops.test_builds import site_yaml
from tests.integration.test_dashboard_browser import ARGS, CHROMIUM

pytestmark = pytest.mark.skipif(shutil.which("bwrap") is None, reason="bubblewrap is not installed")

# A line, a pause long enough to look at the page, then another and the output. The lines are
# computed so that the command (the log shows it too) does not hold their text.
SLOW_BUILD = "echo step $((1)); sleep 4; echo step $((1+1)); mkdir -p dist; echo '<h1>slow</h1>' > dist/index.html"


@pytest.fixture
def page() -> Iterator[Any]:
    assert CHROMIUM.exists(), "Debian's chromium is missing: run ./install.sh --dev as root"
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        context = browser.new_context(viewport={"width": 1280, "height": 900})
        context.set_default_timeout(20_000)
        yield context.new_page()
        browser.close()


def test_the_deployment_page_streams_the_build_log_while_it_runs(
    served_stack: Callable[..., Served], page: Any, tmp_path: Path
) -> None:
    served = served_stack(site_yaml(SLOW_BUILD))
    work = work_repo(tmp_path, {"README": "slow"})
    pushed = threading.Thread(target=push, args=(work, served.push_url("handbook"), "main"))
    pushed.start()
    deadline = time.monotonic() + 30
    while not (rows := served.api("GET", "/api/deployments").json()["deployments"]):
        assert time.monotonic() < deadline, "the push made no deployment"
        time.sleep(0.1)
    deployment_id = rows[0]["id"]

    page.goto(f"{served.base_url}/signin?next=/deployments/{deployment_id}")
    page.fill("#token", TOKEN)
    page.click("button[type=submit]")
    page.wait_for_selector("#build-log-text:has-text('step 1')")
    # Seen while the build still runs: the second line is not there yet and the deployment builds.
    assert "step 2" not in page.inner_text("#build-log-text")
    assert served.api("GET", f"/api/deployments/{deployment_id}").json()["status"] == "building"

    # When the build ends the page comes back with the outcome and the whole log: a draft until git
    # has moved the branch and post-receive made it live.
    page.wait_for_selector(".badge.draft, .badge.live", timeout=30_000)
    pushed.join(timeout=30)
    page.reload()
    page.wait_for_selector(".badge.live")
    log = page.inner_text("#build-log-text")
    assert log.index("step 1") < log.index("step 2") < log.index("DropHost: live at")

    page.goto(f"{served.base_url}/slots/handbook")
    page.click(f"a[href='/deployments/{deployment_id}']")
    page.wait_for_selector("#build-log-text:has-text('step 2')")
