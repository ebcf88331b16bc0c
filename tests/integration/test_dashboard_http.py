from __future__ import annotations

import re

from starlette.testclient import TestClient

from drophost.web import sessions
from tests.harness.auth import AUTH, TOKEN
from tests.harness.stacks import Stack

ORIGIN = "http://testserver"


def sign_in(client: TestClient) -> str:
    answer = client.post("/signin", data={"token": TOKEN, "next": "/"}, follow_redirects=False)
    assert answer.status_code == 303, answer.text
    page = client.get("/")
    found = re.search(r'name="csrf" value="([^"]+)"', page.text)
    assert found is not None
    return found.group(1)


def test_pages_need_a_session_and_the_cookie_is_httponly_and_strict(stack: Stack) -> None:
    moved = stack.client.get("/slots/demo", follow_redirects=False)
    assert moved.status_code == 303 and moved.headers["location"] == "/signin?next=/slots/demo"
    wrong = stack.client.post("/signin", data={"token": "nope"})
    assert wrong.status_code == 401 and "not the API token" in wrong.text
    answer = stack.client.post("/signin", data={"token": TOKEN, "next": "//evil.example/"}, follow_redirects=False)
    assert answer.headers["location"] == "/"
    cookie = answer.headers["set-cookie"]
    assert cookie.startswith(f"{sessions.COOKIE}=")
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Path=/" in cookie
    page = stack.client.get("/")
    assert page.status_code == 200 and "Slots &amp; deployments" in page.text
    assert "frame-ancestors 'none'" in page.headers["content-security-policy"]
    assert TOKEN not in page.text


def test_every_page_renders_with_data(stack: Stack) -> None:
    stack.deploy({"index.html": "one"}, "demo")
    stack.deploy({"index.html": "two", "new.txt": "n"}, "demo")
    stack.deploy({"index.html": "x"}, "other", ttl="1d")
    bad = stack.client.post(
        "/api/deployments", files={"file": ("b.zip", b"junk")}, data={"slot": "broken"}, headers=AUTH
    )
    assert bad.status_code == 422
    sign_in(stack.client)
    overview = stack.client.get("/")
    assert 'data-slot="demo"' in overview.text and 'data-slot="other"' in overview.text
    assert stack.client.get("/?status=live&slot=oth").text.count("data-slot=") == 1
    assert "data-slot" in stack.client.get("/ui/overview").text
    assert 'id="dropzone"' in stack.client.get("/deploy").text
    slot = stack.client.get("/slots/demo?a=1&b=2")
    assert slot.status_code == 200
    assert "added new.txt" in slot.text and "changed index.html" in slot.text
    assert '<tr data-version="2" class="active">' in slot.text
    assert stack.client.get("/slots/nothing").status_code == 404
    assert "badge live" in stack.client.get("/ui/slots/demo").text
    analytics = stack.client.get("/analytics")
    assert analytics.status_code == 200 and 'id="deployments-total">3<' in analytics.text
    assert stack.client.get("/analytics?from=someday").status_code == 422
    assert stack.client.get("/static/dashboard.js").headers["content-type"].startswith("text/javascript")
    assert stack.client.get("/static/../app.py").status_code == 404


def test_forms_need_the_csrf_token(stack: Stack) -> None:
    stack.deploy({"index.html": "one"}, "demo")
    stack.deploy({"index.html": "two"}, "demo")
    csrf = sign_in(stack.client)
    refused = stack.client.post("/slots/demo/rollback", data={"version": "1"})
    assert refused.status_code == 403
    forged = stack.client.post("/slots/demo/rollback", data={"version": "1", "csrf": "x" * 43})
    assert forged.status_code == 403
    other_site = stack.client.post(
        "/slots/demo/rollback", data={"version": "1", "csrf": csrf}, headers={"Origin": "http://127.0.0.1:9"}
    )
    assert other_site.status_code == 403
    assert stack.get("/d/demo/").text == "two"
    done = stack.client.post("/slots/demo/rollback", data={"version": "1", "csrf": csrf}, follow_redirects=False)
    assert done.status_code == 303 and done.headers["location"] == "/slots/demo?done=rolled-back"
    assert stack.get("/d/demo/").text == "one"
    ttl = stack.client.post("/slots/demo/ttl", data={"ttl": "soon", "csrf": csrf})
    assert ttl.status_code == 422 and "not a duration" in ttl.text
    assert stack.client.post("/slots/demo/ttl", data={"ttl": "2h", "csrf": csrf}).status_code == 200
    out = stack.client.post("/signout", data={"csrf": csrf}, follow_redirects=False)
    assert out.status_code == 303 and f"{sessions.COOKIE}=" in out.headers["set-cookie"]
    assert stack.client.get("/", follow_redirects=False).status_code == 303


def test_the_api_accepts_a_session_only_with_its_csrf_header(stack: Stack) -> None:
    csrf = sign_in(stack.client)
    assert stack.client.get("/api/slots").status_code == 401
    assert stack.client.get("/api/slots", headers={"X-CSRF-Token": "wrong"}).status_code == 401
    assert stack.client.get("/api/slots", headers={"X-CSRF-Token": csrf}).status_code == 200
    cross = stack.client.get("/api/slots", headers={"X-CSRF-Token": csrf, "Origin": "http://127.0.0.1:1"})
    assert cross.status_code == 401
    same = stack.client.get("/api/slots", headers={"X-CSRF-Token": csrf, "Origin": ORIGIN})
    assert same.status_code == 200


def test_a_session_cookie_is_signed_and_expires() -> None:
    key = sessions.signing_key(TOKEN)
    value = sessions.encode(key, sessions.Session(csrf="c", expires=2_000))
    assert sessions.decode(key, value, now=1_000) == sessions.Session(csrf="c", expires=2_000)
    assert sessions.decode(key, value, now=3_000) is None
    assert sessions.decode(sessions.signing_key("other"), value, now=1_000) is None
    payload, _, signature = value.partition(".")
    assert sessions.decode(key, payload + "x." + signature, now=1_000) is None
    assert sessions.decode(key, "garbage", now=1_000) is None


def test_an_admin_adds_and_removes_users_and_others_get_403(stack: Stack) -> None:
    csrf = sign_in(stack.client)
    assert '<a href="/users"' in stack.client.get("/").text
    assert stack.client.post("/users", data={"name": "ann", "role": "viewer", "password": "p" * 12}).status_code == 403
    added = stack.client.post(
        "/users", data={"csrf": csrf, "name": "dee", "role": "deployer", "slots": "docs-*, blog", "password": "p" * 12}
    )
    assert added.status_code == 200 and "Added deployer dee." in added.text
    assert 'data-user="dee"' in added.text and "docs-* blog" in added.text
    listed = stack.client.get("/api/users", headers=AUTH).json()["users"]
    assert [(u["name"], u["role"], u["slots"]) for u in listed] == [("dee", "deployer", ["docs-*", "blog"])]
    bad = stack.client.post(
        "/users", data={"csrf": csrf, "name": "vic", "role": "viewer", "slots": "x", "password": "p"}
    )
    assert bad.status_code == 422 and "only a deployer has slot patterns" in bad.text
    twice = stack.client.post("/users", data={"csrf": csrf, "name": "dee", "role": "viewer", "password": "p" * 12})
    assert twice.status_code == 409
    stack.client.post("/users", data={"csrf": csrf, "name": "vic", "role": "viewer", "password": "p" * 12})

    viewer = TestClient(stack.client.app, base_url=ORIGIN)
    signed = viewer.post("/signin", data={"name": "vic", "password": "p" * 12, "next": "/"}, follow_redirects=False)
    assert signed.status_code == 303
    home = viewer.get("/")
    assert '<a href="/users"' not in home.text
    assert viewer.get("/users").status_code == 403
    viewer_csrf = re.search(r'name="csrf" value="([^"]+)"', home.text)
    assert viewer_csrf is not None
    assert viewer.post("/users/dee/remove", data={"csrf": viewer_csrf.group(1)}).status_code == 403

    removed = stack.client.post("/users/dee/remove", data={"csrf": csrf})
    assert removed.status_code == 200 and "Removed dee" in removed.text and 'data-user="dee"' not in removed.text
    assert stack.client.post("/users/dee/remove", data={"csrf": csrf}).status_code == 404
    actions = [e["action"] for e in stack.client.get("/api/audit", headers=AUTH).json()["entries"]]
    assert {"dashboard_create_user", "dashboard_remove_user"} <= set(actions)
