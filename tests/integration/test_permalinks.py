"""Every deployment at its own host name, <id>--<slot>.localhost: its files, live or not, while kept."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace

import pytest

from drophost.settings import Settings
from tests.harness.auth import AUTH
from tests.harness.stacks import Stack, running_stack
from tests.integration.test_host_names import by_host


@pytest.fixture
def retaining_stack(settings: Settings) -> Iterator[Stack]:
    with running_stack(replace(settings, keep_versions=2)) as running:
        yield running


def test_an_old_deployment_serves_its_own_files_while_a_newer_one_is_live(retaining_stack: Stack) -> None:
    stack = retaining_stack
    port = stack.settings.sites_listen_port
    old = stack.deploy({"index.html": "old", "only-old.txt": "x", "404.html": "old 404"}, "site").json()
    assert old["permalink"] == f"http://{old['id']}--site.localhost:{port}/"
    new = stack.deploy({"index.html": "new", "_headers": "/*\n  X-Rule: yes\n"}, "site").json()
    assert by_host(stack, "site.localhost").text == "new"
    page = by_host(stack, f"{old['id']}--site.localhost")
    assert (page.text, page.headers["x-robots-tag"]) == ("old", "noindex")
    assert by_host(stack, f"{old['id']}--site.localhost", "/only-old.txt").text == "x"
    missing = by_host(stack, f"{old['id']}--site.localhost", "/nothing")
    assert (missing.status_code, missing.text) == (404, "old 404")
    assert by_host(stack, f"{old['id']}--site.localhost", "/.env").status_code == 404
    newest = by_host(stack, f"{new['id']}--site.localhost")
    # Files with the default headers only: the rules of a version are not applied on its permalink.
    assert newest.text == "new" and "x-rule" not in newest.headers
    assert newest.headers["cache-control"] == "public, max-age=0, must-revalidate"
    listed = stack.client.get("/api/deployments", headers=AUTH).json()["deployments"]
    assert all(d["permalink"] == f"http://{d['id']}--site.localhost:{port}/" for d in listed)

    # Retention keeps two versions: the oldest release goes, and its permalink with it.
    for n in range(2):
        stack.deploy({"index.html": f"later {n}"}, "site")
    gone = by_host(stack, f"{old['id']}--site.localhost", headers={"Accept": "text/html"})
    assert gone.status_code == 404 and "<html" in gone.text.lower()
    assert by_host(stack, f"{old['id']}--site.localhost").json() == {"error": "no site is deployed at this address"}
    assert by_host(stack, "999--site.localhost").status_code == 404


def test_a_draft_is_served_at_its_permalink_before_it_is_promoted(stack: Stack) -> None:
    stack.deploy({"index.html": "live"}, "site")
    draft = stack.deploy({"index.html": "draft"}, "site", activate="false").json()
    assert by_host(stack, f"{draft['id']}--site.localhost").text == "draft"
    assert by_host(stack, "site.localhost").text == "live"


def test_a_protected_slot_serves_no_permalinks(stack: Stack) -> None:
    site = '{"access": {"allow": ["10.9.9.9/32"]}}'
    answer = stack.deploy({"index.html": "secret"}, "guarded", site=site)
    assert answer.status_code == 201, answer.text
    assert by_host(stack, "guarded.localhost").status_code == 403
    assert by_host(stack, f"{answer.json()['id']}--guarded.localhost").status_code == 404


def test_a_permalink_answers_a_folder_without_index_with_the_releases_404(stack: Stack) -> None:
    answer = stack.deploy({"index.html": "home", "404.html": "own 404", "assets/a.css": "a{}"}, "folders")
    assert answer.status_code == 201, answer.text
    host = f"{answer.json()['id']}--folders.localhost"
    for path in ("/assets/", "/nothing"):
        missing = by_host(stack, host, path)
        assert (missing.status_code, missing.text, missing.headers["x-robots-tag"]) == (404, "own 404", "noindex")
    bare = stack.deploy({"index.html": "home"}, "bare").json()
    assert by_host(stack, f"{bare['id']}--bare.localhost", "/nothing").status_code == 404
