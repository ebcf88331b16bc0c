"""The dashboard's overview, lists, analytics and Deploy check over HTTP (no browser): what the server answers."""

from __future__ import annotations

import re

import pytest

from drophost.web import pagedata
from tests.harness.auth import AUTH
from tests.harness.stacks import Stack
from tests.integration.test_dashboard_http import sign_in


def row_of(html: str, slot: str) -> str:
    found = re.search(rf'<tr data-slot="{slot}">(.*?)</tr>', html, re.S)
    assert found is not None, f"no row for {slot}"
    return found.group(1)


def test_the_overview_describes_the_live_version_and_flags_a_failed_latest_deploy(stack: Stack) -> None:
    stack.deploy({"index.html": "one"}, "handbook")
    stack.deploy({"index.html": "two"}, "handbook")
    # A deploy that fails after it was recorded (its site rules do not compile).
    bad = stack.deploy({"index.html": "three", "_redirects": "/a /b 399\n"}, "handbook")
    assert bad.status_code == 422, bad.text
    sign_in(stack.client)
    row = row_of(stack.client.get("/").text, "handbook")
    assert "badge live" in row and "last deploy failed" in row
    link = re.search(r'class="last-failed" href="/slots/handbook#deployment-(\d+)"', row)
    assert link is not None and int(link.group(1)) == bad.json()["deployment_id"]
    slot_page = stack.client.get("/slots/handbook").text
    assert f'id="deployment-{link.group(1)}"' in slot_page

    assert stack.client.post("/api/slots/handbook/rollback", json={"version": 1}, headers=AUTH).status_code == 200
    row = row_of(stack.client.get("/").text, "handbook")
    assert re.search(r"<td>1</td>", row), row  # the active version
    # A time is UTC on the server, in the reader's zone once the page's script has run.
    utc = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?\+00:00"
    assert re.search(rf'<time datetime="{utc}" title="[^"]+ UTC" data-relative>', row)


def test_the_overview_sorts_counts_searches_and_pages_its_slots(stack: Stack) -> None:
    for i in range(57):
        assert stack.deploy({"index.html": str(i)}, f"site-{i:02d}").status_code == 201
    sign_in(stack.client)
    first = stack.client.get("/").text
    assert first.count("data-slot=") == 25
    assert "1–25 of 57 slots" in first
    assert 'aria-label="Slot pages"' in first and 'rel="next"' in first
    last = stack.client.get("/?page=3").text
    assert last.count("data-slot=") == 7 and "51–57 of 57 slots" in last
    by_name = stack.client.get("/?sort=slot&order=asc").text
    assert by_name.index('data-slot="site-00"') < by_name.index('data-slot="site-01"')
    assert 'aria-sort="ascending"' in by_name
    backwards = stack.client.get("/?sort=slot&order=desc").text
    assert 'data-slot="site-56"' in backwards and 'data-slot="site-00"' not in backwards
    found = stack.client.get("/?slot=site-1").text
    assert found.count("data-slot=") == 10
    # The poller keeps the same page, order and search.
    assert 'data-poll="/ui/overview?sort=slot&amp;order=desc"' in backwards
    assert stack.client.get("/ui/overview?sort=slot&order=desc&page=3").text.count("data-slot=") == 7
    deployments = stack.client.get("/?dpage=2").text
    assert "51–57 of 57 deployments" in deployments


def test_tokens_users_and_audit_have_counts_and_search(stack: Stack) -> None:
    sign_in(stack.client)
    stack.client.get("/")
    csrf = re.search(r'name="csrf" value="([^"]+)"', stack.client.get("/users").text)
    assert csrf is not None
    for name in ("ann", "bob"):
        data = {"name": name, "role": "viewer", "password": "p" * 12, "csrf": csrf.group(1)}
        assert stack.client.post("/users", data=data).status_code == 200
    users = stack.client.get("/users?q=bo").text
    assert 'data-user="bob"' in users and 'data-user="ann"' not in users
    assert "1–1 of 1 users matching “bo” (2 in all)" in users
    assert 'id="token-count"' in stack.client.get("/tokens").text
    audit = stack.client.get("/audit?q=dashboard_create_user").text
    assert "of 2 entries" in audit


def test_analytics_says_no_such_slot_and_splits_404s(stack: Stack) -> None:
    stack.deploy({"index.html": "hello"}, "docs")
    sign_in(stack.client)
    missing = stack.client.get("/analytics?slot=doc")
    assert missing.status_code == 404 and "There is no slot &#34;doc&#34;." in missing.text
    page = stack.client.get("/analytics?slot=docs")
    assert page.status_code == 200
    assert 'id="top-404s"' in page.text or "No path answered 404" in page.text
    assert "Visitors per day" in page.text


def test_the_deploy_check_names_the_slot_checks_the_ttl_and_says_what_is_live(stack: Stack) -> None:
    assert stack.client.get("/ui/deploy-target?name=a.zip").status_code == 401
    stack.deploy({"index.html": "one"}, "acme-handbook")
    sign_in(stack.client)
    live = stack.client.get("/ui/deploy-target", params={"name": "ACME Handbook.zip"}).json()
    assert live["slot"] == "acme-handbook" and live["live"]["version"] == 1
    assert live["live"]["source"] == "acme-handbook.zip"
    new = stack.client.get("/ui/deploy-target", params={"name": "x.zip", "slot": "team-doc", "ttl": "2h"}).json()
    assert new == {"slot": "team-doc", "live": None}
    bad_slot = stack.client.get("/ui/deploy-target", params={"name": "x.zip", "slot": "Team Doc"})
    assert bad_slot.status_code == 422 and bad_slot.json()["field"] == "slot"
    bad_ttl = stack.client.get("/ui/deploy-target", params={"name": "x.zip", "ttl": "2 weeks"})
    assert bad_ttl.status_code == 422 and "not a duration" in bad_ttl.json()["error"]


def test_the_deployments_table_says_when_it_is_cut(stack: Stack, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pagedata, "RECENT", 3)  # the overview reads the newest 500; 3 here
    for i in range(4):
        stack.deploy({"index.html": str(i)}, "often")
    sign_in(stack.client)
    page = stack.client.get("/").text
    assert page.count("data-deployment=") == 3
    assert "Only the newest 3 of 4 deployments are listed here" in page
    assert "Only the newest" in stack.client.get("/slots/often").text
    assert "1–3 of 3 switches" in stack.client.get("/slots/often?eq=deploy").text  # the newest 3, too
    assert "No switches match “rollback”." in stack.client.get("/slots/often?eq=rollback").text
