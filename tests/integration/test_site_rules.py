"""Site rules (_redirects, _headers) compiled into the slot's own nginx location, served by real nginx."""

from __future__ import annotations

import base64
import hashlib
import json
import time
from collections.abc import Callable
from typing import Any

import httpx2 as httpx
import pytest
from starlette.testclient import TestClient

from drophost.pipeline import nginxprocess, sitecompile
from drophost.web.app import create_app
from tests.harness.auth import AUTH
from tests.harness.stacks import Stack

PAGES = {
    "index.html": "<p>home</p>",
    "about.html": "<p>about</p>",
    "404.html": "<p>not here</p>",
    "store-closed.html": "<p>closed</p>",
    "blog/index.html": "<p>blog</p>",
    "blog/my-post.html": "<p>post</p>",
    "app/index.html": "<p>app shell</p>",
    "app/real.txt": "real",
    "static/a.css": "a{}",
    "img/x.jpg": "jpg",
}


def deploy(stack: Stack, slot: str, files: dict[str, str], status: int = 201) -> dict[str, object]:
    answer = stack.deploy(dict(files), slot)  # type: ignore[arg-type]
    assert answer.status_code == status, answer.text
    return answer.json()  # type: ignore[no-any-return]


def fetch(stack: Stack, path: str, **kwargs: object) -> httpx.Response:
    return stack.get(path, follow_redirects=False, **kwargs)


def test_netlifys_documented_redirects_are_served(stack: Stack) -> None:
    # The examples of https://docs.netlify.com/routing/redirects/ (and .../redirect-options/:
    # splats, placeholders, the custom 404 and shadowing).
    rules = """
# Redirects with the default 301
/home              /
/blog/my-post.php  /blog/my-post
/news              /blog
/cuties            https://www.petsofnetlify.com
# temporary
/my-redirect  /about  302
# a custom 404 for this path
/ecommerce    /store-closed.html  404
# a rewrite
/pass-through /about.html    200
/news/*  /blog/:splat
/events/:month/:year  /blog/:year/:month  307
/gone  /404.html  410
/archive/:year/:month/:date  /blog-:year-:month-:date.html
"""
    deploy(stack, "nl", {**PAGES, "_redirects": rules})
    expect = {
        "/d/nl/home": (301, "/d/nl/"),
        "/d/nl/blog/my-post.php": (301, "/d/nl/blog/my-post"),
        "/d/nl/news": (301, "/d/nl/blog"),
        "/d/nl/cuties": (301, "https://www.petsofnetlify.com"),
        "/d/nl/my-redirect?x=1": (302, "/d/nl/about?x=1"),
        "/d/nl/news/2024/a": (301, "/d/nl/blog/2024/a"),
        "/d/nl/events/05/2024": (307, "/d/nl/blog/2024/05"),
        "/d/nl/archive/2024/05/17": (301, "/d/nl/blog-2024-05-17.html"),
    }
    for path, (status, location) in expect.items():
        answer = fetch(stack, path)
        assert (answer.status_code, answer.headers.get("location")) == (status, location), path
        assert answer.headers["x-drophost-slot"] == "nl"
    closed = fetch(stack, "/d/nl/ecommerce")
    assert (closed.status_code, closed.text) == (404, "<p>closed</p>")
    rewritten = fetch(stack, "/d/nl/pass-through")
    assert (rewritten.status_code, rewritten.text) == (200, "<p>about</p>")
    gone = fetch(stack, "/d/nl/gone")
    assert (gone.status_code, gone.text) == (410, "<p>not here</p>")
    missing = fetch(stack, "/d/nl/nothing")
    assert (missing.status_code, missing.text) == (404, "<p>not here</p>")
    # Read at deploy time, never served.
    assert fetch(stack, "/d/nl/_redirects").status_code == 404


def test_a_file_shadows_a_rule_unless_it_is_forced(stack: Stack) -> None:
    rules = "/about  /blog/  301\n/app/*  /app/index.html  200\n/blog/my-post.html  /  302!\n"
    deploy(stack, "shadow", {**PAGES, "_redirects": rules})
    assert fetch(stack, "/d/shadow/about").text == "<p>about</p>"  # about.html exists
    assert fetch(stack, "/d/shadow/app/real.txt").text == "real"
    nested = fetch(stack, "/d/shadow/app/some/client/route")
    assert (nested.status_code, nested.text) == (200, "<p>app shell</p>")
    forced = fetch(stack, "/d/shadow/blog/my-post.html")
    assert (forced.status_code, forced.headers["location"]) == (302, "/d/shadow/")


def test_spa_fallback_serves_index_for_a_nested_route(stack: Stack) -> None:
    deploy(stack, "spa", {**PAGES, "_redirects": "/*  /index.html  200\n"})
    for path in ("/d/spa/", "/d/spa/settings/profile/42", "/d/spa/x.png"):
        answer = fetch(stack, path)
        assert (answer.status_code, answer.text) == (200, "<p>home</p>"), path
    assert fetch(stack, "/d/spa/img/x.jpg").text == "jpg"


def test_clean_urls_both_ways(stack: Stack) -> None:
    deploy(stack, "clean", {**PAGES, "_redirects": "/old  /about\n"})
    assert fetch(stack, "/d/clean/about").text == "<p>about</p>"
    assert fetch(stack, "/d/clean/blog/my-post").text == "<p>post</p>"
    to_clean = fetch(stack, "/d/clean/about.html?a=b")
    assert (to_clean.status_code, to_clean.headers["location"]) == (301, "/d/clean/about?a=b")
    index = fetch(stack, "/d/clean/blog/index.html")
    assert (index.status_code, index.headers["location"]) == (301, "/d/clean/blog/")
    assert fetch(stack, "/d/clean/blog/").text == "<p>blog</p>"
    assert fetch(stack, "/d/clean/blog").status_code == 301  # a folder, as today
    assert fetch(stack, "/d/clean/.env").status_code == 404


def test_folders_and_misses_after_a_one_pass_clean_url(stack: Stack) -> None:
    # try_files $uri $uri.html finds no folder: nginx answers those from the family's @static.
    deploy(stack, "folders", {**PAGES, "_headers": "/*\n  X-Rule: yes\n", "docs.html": "<p>docs page</p>"})
    bare = fetch(stack, "/d/folders/static/")  # a folder without index.html
    assert (bare.status_code, bare.text, bare.headers["x-rule"]) == (404, "<p>not here</p>", "yes")
    moved = fetch(stack, "/d/folders/blog?a=1")
    assert (moved.status_code, moved.headers["location"]) == (301, "/d/folders/blog/?a=1")
    assert moved.headers["x-rule"] == "yes"
    home = fetch(stack, "/d/folders/")
    assert (home.status_code, home.text, home.headers["x-rule"]) == (200, "<p>home</p>", "yes")
    assert fetch(stack, "/d/folders/docs").text == "<p>docs page</p>"
    assert fetch(stack, "/d/folders/nothing/here").status_code == 404


def test_a_slot_without_rules_serves_clean_urls_both_ways(stack: Stack) -> None:
    deploy(stack, "bare", PAGES)
    about = fetch(stack, "/d/bare/about")
    assert (about.status_code, about.text, about.headers["x-drophost-slot"]) == (200, "<p>about</p>", "bare")
    assert fetch(stack, "/d/bare/blog/my-post").text == "<p>post</p>"
    # The .html URLs move to the clean ones, as in a slot with rules (test_clean_urls_both_ways).
    for path, location in (
        ("/d/bare/about.html?a=b", "/d/bare/about?a=b"),
        ("/d/bare/blog/my-post.html", "/d/bare/blog/my-post"),
        ("/d/bare/index.html", "/d/bare/"),
        ("/d/bare/blog/index.html?x=1", "/d/bare/blog/?x=1"),
        ("/d/bare/404.html", "/d/bare/404"),
    ):
        moved = fetch(stack, path)
        assert (moved.status_code, moved.headers["location"]) == (301, location), path
        assert moved.headers["x-drophost-slot"] == "bare", path
    assert fetch(stack, "/d/bare/").text == "<p>home</p>"  # index.html, served at its folder
    assert fetch(stack, "/d/bare/blog/").text == "<p>blog</p>"
    assert fetch(stack, "/d/bare/static/a.css").text == "a{}"  # only .html moves
    missing = stack.get("/d/bare/nowhere.html", follow_redirects=True)
    assert (missing.status_code, missing.text) == (404, "<p>not here</p>")
    assert fetch(stack, "/d/never-deployed/about.html").status_code == 404  # not a redirect
    assert fetch(stack, "/d/bare/blog").status_code == 301  # a folder, as today
    missing = fetch(stack, "/d/bare/nothing")
    assert (missing.status_code, missing.text, missing.headers["x-drophost-slot"]) == (404, "<p>not here</p>", "bare")
    assert fetch(stack, "/d/bare/static/").status_code == 404  # a folder without index.html
    assert fetch(stack, "/d/bare/.env").status_code == 404
    deploy(stack, "bare404", {"index.html": "home"})
    assert fetch(stack, "/d/bare404/nothing").status_code == 404  # nginx's own page


def test_clean_urls_false_turns_both_halves_off_for_a_slot_without_other_rules(stack: Stack) -> None:
    answer = stack.deploy(dict(PAGES), "kept", site=json.dumps({"clean_urls": False}))  # type: ignore[arg-type]
    assert answer.status_code == 201, answer.text
    about = fetch(stack, "/d/kept/about.html?a=b")
    assert (about.status_code, about.text) == (200, "<p>about</p>")
    assert fetch(stack, "/d/kept/index.html").text == "<p>home</p>"
    assert fetch(stack, "/d/kept/blog/index.html").text == "<p>blog</p>"
    missing = fetch(stack, "/d/kept/about")
    assert (missing.status_code, missing.text) == (404, "<p>not here</p>")


def test_cloudflares_documented_headers_are_served(stack: Stack) -> None:
    # The examples of https://developers.cloudflare.com/pages/configuration/headers/ (every matching
    # block applies; "! Name" removes a header an earlier block set).
    headers = """/secure/page
  X-Frame-Options: DENY
  X-Content-Type-Options: nosniff
  Referrer-Policy: no-referrer

/static/*
  Access-Control-Allow-Origin: *
  X-Robots-Tag: nosnippet

/*
  X-Robots-Tag: noindex
  Content-Security-Policy: default-src 'self'; img-src *

/*.jpg
  ! X-Robots-Tag
"""
    deploy(stack, "cf", {**PAGES, "secure/page.html": "secure", "_headers": headers})
    secure = fetch(stack, "/d/cf/secure/page")
    assert secure.text == "secure"
    assert secure.headers["x-frame-options"] == "DENY"
    assert secure.headers["referrer-policy"] == "no-referrer"
    assert secure.headers["content-security-policy"] == "default-src 'self'; img-src *"
    static = fetch(stack, "/d/cf/static/a.css")
    assert static.headers["access-control-allow-origin"] == "*"
    assert static.headers.get_list("x-robots-tag") == ["nosnippet", "noindex"]
    assert "x-robots-tag" not in fetch(stack, "/d/cf/img/x.jpg").headers
    assert "x-frame-options" not in fetch(stack, "/d/cf/").headers
    assert fetch(stack, "/d/cf/_headers").status_code == 404


# More than sitecompile.SPLIT_ABOVE blocks: locations per block, each with its own fallbacks.
SPLIT_HEADERS = """/*
  X-Frame-Options: DENY
/static/*
  Cache-Control: public, max-age=31536000, immutable
/static/live/*
  ! Cache-Control
/blog/*
  X-Section: blog
/embed/:page
  ! X-Frame-Options
  Content-Security-Policy: frame-ancestors https://partner.example.com
/about
  X-Robots-Tag: noindex
/app/
  X-Robots-Tag: nofollow
/blog/index.html
  X-Robots-Tag: noarchive
/*.jpg
  X-Image: yes
"""


def test_many_header_blocks_apply_to_the_path_asked_for_in_every_answer(stack: Stack) -> None:
    files = {**PAGES, "static/live/feed.json": "{}", "embed/card.html": "card", "_headers": SPLIT_HEADERS}
    files["_redirects"] = "/gone /404.html 410\n/old-blog/* /blog/:splat 301\n"
    deploy(stack, "split", files)

    def headers(path: str, status: int = 200) -> dict[str, list[str]]:
        answer = fetch(stack, path)
        assert answer.status_code == status, path
        assert answer.headers["x-drophost-slot"] == "split", path
        names = ("x-frame-options", "cache-control", "x-section", "content-security-policy", "x-robots-tag", "x-image")
        return {name: answer.headers.get_list(name) for name in names if name in answer.headers}

    default = ["public, max-age=0, must-revalidate"]
    assert headers("/d/split/") == {"x-frame-options": ["DENY"], "cache-control": default}
    assert headers("/d/split/static/a.css")["cache-control"] == ["public, max-age=31536000, immutable"]
    assert headers("/d/split/static/live/feed.json")["cache-control"] == default
    # A clean URL and a missing page under /blog/ keep /blog/*'s header (the 404 page is served
    # with the headers of the path asked for, not of /404.html).
    assert headers("/d/split/blog/my-post")["x-section"] == ["blog"]
    missing = fetch(stack, "/d/split/blog/nothing")
    assert (missing.status_code, missing.text, missing.headers["x-section"]) == (404, "<p>not here</p>", "blog")
    # /blog/ is served from blog/index.html, but the block for /blog/index.html is not the path asked for.
    assert "x-robots-tag" not in headers("/d/split/blog/")
    embed = headers("/d/split/embed/card")
    assert "x-frame-options" not in embed and embed["content-security-policy"] == [
        "frame-ancestors https://partner.example.com"
    ]
    assert headers("/d/split/about")["x-robots-tag"] == ["noindex"]
    assert headers("/d/split/about/", 404)["x-robots-tag"] == ["noindex"]
    app = fetch(stack, "/d/split/app/")
    assert (app.text, app.headers["x-robots-tag"]) == ("<p>app shell</p>", "nofollow")
    assert headers("/d/split/img/x.jpg")["x-image"] == ["yes"]
    gone = fetch(stack, "/d/split/gone")
    assert (gone.status_code, gone.text, gone.headers["x-frame-options"]) == (410, "<p>not here</p>", "DENY")
    moved = fetch(stack, "/d/split/old-blog/a?x=1")
    assert (moved.status_code, moved.headers["location"]) == (301, "/d/split/blog/a?x=1")
    assert fetch(stack, "/d/split/static/.env").status_code == 404
    assert fetch(stack, "/d/split/_headers").status_code == 404


def test_many_exact_redirects_are_looked_up_in_order_and_with_case(stack: Stack) -> None:
    # More than sitecompile.MAP_ABOVE exact rules: a map, checked before the pattern rules, which
    # must not change which rule matches first.
    exact = [f"/old/page-{n} /about 301" for n in range(12)]
    rules = [
        "/first/* /blog/ 302",  # earlier than the exact rule below for the same path: it wins
        *exact,
        "/first/x /about 301",
        "/Case /about 302",
        "/case /blog/ 307",  # the same path but for case: a map cannot hold both
        "/shop https://shop.example.com 308",
        "/closed /store-closed.html 404",
        "/inside /about.html 200",
        "/old/* /blog/:splat 301",
    ]
    deploy(stack, "maps", {**PAGES, "_redirects": "\n".join(rules) + "\n"})
    expect = {
        "/d/maps/old/page-3": (301, "/d/maps/about"),
        "/d/maps/old/page-11/?a=1": (301, "/d/maps/about?a=1"),
        "/d/maps/old/PAGE-3": (301, "/d/maps/blog/PAGE-3"),
        "/d/maps/old/page-99": (301, "/d/maps/blog/page-99"),
        "/d/maps/first/x": (302, "/d/maps/blog/"),
        "/d/maps/Case": (302, "/d/maps/about"),
        "/d/maps/case": (307, "/d/maps/blog/"),
        "/d/maps/shop?q=1": (308, "https://shop.example.com?q=1"),
    }
    for path, (status, location) in expect.items():
        answer = fetch(stack, path)
        assert (answer.status_code, answer.headers.get("location")) == (status, location), path
    assert fetch(stack, "/d/maps/CASE").status_code == 404
    closed = fetch(stack, "/d/maps/closed")
    assert (closed.status_code, closed.text) == (404, "<p>closed</p>")
    inside = fetch(stack, "/d/maps/inside")
    assert (inside.status_code, inside.text) == (200, "<p>about</p>")
    assert fetch(stack, "/d/maps/about").text == "<p>about</p>"  # a file wins over rules


HOSTILE = {
    "cr": ("_redirects", "/a /b\r/c\n"),
    "lf-in-header-value": ("_headers", "/*\n  X-A: a\n\n  b\n"),
    "dollar": ("_redirects", "/a /b$host\n"),
    "semicolon": ("_redirects", "/a;return /b\n"),
    "brace": ("_redirects", "/a /b}\n"),
    "quote": ("_headers", '/*\n  X-A: a"b\n'),
    "nul": ("_redirects", "/a /b\x00\n"),
    "over-long": ("_redirects", "/a /" + "b" * 2001 + "\n"),
    "too-many": ("_redirects", "".join(f"/a{n} /b\n" for n in range(2001))),
    "bad-status": ("_redirects", "/a /b 399\n"),
    "proxy": ("_redirects", "/api/* https://api.example.com/:splat 200\n"),
    "framing-header": ("_headers", "/*\n  Transfer-Encoding: chunked\n"),
}


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_a_hostile_rule_file_is_refused_and_nothing_changes(stack: Stack, case: str) -> None:
    deploy(stack, "safe", {"index.html": "v1", "_redirects": "/x /y\n"})
    before = stack.client.get("/api/slots/safe/versions", headers=AUTH).json()
    name, text = HOSTILE[case]
    answer = stack.deploy({"index.html": "v2", name: text}, "safe")
    assert answer.status_code == 422, answer.text
    assert answer.json()["error"].startswith(f"{name}:")
    if case == "lf-in-header-value":
        assert answer.json()["line"] == 4
    assert stack.client.get("/api/slots/safe/versions", headers=AUTH).json() == before
    assert fetch(stack, "/d/safe/").text == "v1"
    assert fetch(stack, "/d/safe/x").headers["location"] == "/d/safe/y"


def test_rules_change_and_rollback_across_it_serve_exactly_the_old_behaviour(stack: Stack) -> None:
    def behaviour() -> list[tuple[int, str | None, str]]:
        paths = ("/", "/go", "/deep/route", "/about.html", "/about")
        answers = [fetch(stack, f"/d/roll{path}") for path in paths]
        return [(a.status_code, a.headers.get("location"), a.text) for a in answers]

    seen = {}
    for version, files in {
        1: {"index.html": "v1", "about.html": "a1"},  # no rules: the generic location
        2: {"index.html": "v2", "about.html": "a2", "_redirects": "/go /about 302\n"},
        3: {"index.html": "v3", "_redirects": "/go /elsewhere 307\n/*  /index.html  200\n"},
    }.items():
        deploy(stack, "roll", files)
        seen[version] = behaviour()
    assert len({str(b) for b in seen.values()}) == 3
    assert seen[2][1][:2] == (302, "/d/roll/about") and seen[3][2] == (200, None, "v3")
    for version in (1, 2, 3, 1, 3, 2):
        answer = stack.client.post("/api/slots/roll/rollback", json={"version": version}, headers=AUTH)
        assert answer.status_code == 200, (version, answer.text)
        assert behaviour() == seen[version], version
    shown = stack.client.get("/api/slots/roll/versions/2", headers=AUTH).json()
    assert "location ^~ /d/roll/ {" in shown["config"] and '"^/d/roll/go/?$"' in shown["config"]
    diff = stack.client.get("/api/slots/roll/diff", params={"a": 2, "b": 3}, headers=AUTH)
    assert diff.status_code == 200 and "$drophost_site_base/elsewhere" in diff.text


def test_a_content_only_deploy_of_a_slot_with_rules_does_not_reload_nginx(stack: Stack) -> None:
    rules = {"_redirects": "/go /about 302\n", "_headers": "/*\n  X-Team: web\n"}
    deploy(stack, "fast", {"index.html": "v1", **rules})
    master = stack.nginx.pid()
    assert master is not None
    workers = settled_workers(master)
    deploy(stack, "fast", {"index.html": "v2", **rules})
    assert fetch(stack, "/d/fast/").text == "v2"
    assert fetch(stack, "/d/fast/").headers["x-team"] == "web"
    assert nginxprocess.children(master) == workers
    # A rules change does go through nginx -t and a reload.
    deploy(stack, "fast", {"index.html": "v3", "_redirects": "/go /elsewhere 302\n"})
    assert fetch(stack, "/d/fast/go").headers["location"] == "/d/fast/elsewhere"
    assert nginxprocess.children(master) != workers


def settled_workers(master: int) -> frozenset[int]:
    """nginx's workers once the ones an earlier reload replaced have exited (the same for 0.3 s)."""
    deadline = time.monotonic() + 10
    seen, since = nginxprocess.children(master), time.monotonic()
    while time.monotonic() < deadline:
        time.sleep(0.02)
        now = nginxprocess.children(master)
        if now != seen:
            seen, since = now, time.monotonic()
        elif time.monotonic() - since > 0.3:
            return now
    raise AssertionError("old nginx workers did not exit")


def test_a_compiled_config_nginx_rejects_fails_the_deploy_and_the_old_version_stays(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    deploy(stack, "bad", {"index.html": "v1", "_redirects": "/x /y\n"})
    monkeypatch.setattr(
        sitecompile, "render_part", lambda slot, rules, auth_file="": "location ^~ /d/bad/ { nonsense; }\n"
    )
    answer = stack.deploy({"index.html": "v2", "_redirects": "/x /z\n"}, "bad")
    assert answer.status_code == 500
    body = answer.json()
    assert "nginx rejected" in body["error"] and "nonsense" in body["nginx"]
    assert str(stack.settings.data_dir) not in answer.text
    assert fetch(stack, "/d/bad/").text == "v1"
    assert fetch(stack, "/d/bad/x").headers["location"] == "/d/bad/y"
    assert not list((stack.settings.nginx_dir / "staging" / "slots").glob("*"))


def test_the_site_field_of_an_upload_and_its_precedence_over_the_files(stack: Stack) -> None:
    site = {
        "spa": True,
        "clean_urls": False,
        "redirects": [{"from": "/a", "to": "/from-api", "status": 302}],
        "headers": [{"for": "/*", "values": {"X-Source": "api"}}],
    }
    files = {**PAGES, "_redirects": "/a /from-file 302\n/b /from-file 302\n"}
    answer = stack.deploy(files, "prec", site=json.dumps(site))  # type: ignore[arg-type]
    assert answer.status_code == 201, answer.text
    assert fetch(stack, "/d/prec/a").headers["location"] == "/d/prec/from-api"
    assert fetch(stack, "/d/prec/b").headers["location"] == "/d/prec/from-file"
    spa = fetch(stack, "/d/prec/some/route")
    assert (spa.status_code, spa.text, spa.headers["x-source"]) == (200, "<p>home</p>", "api")
    assert fetch(stack, "/d/prec/about.html").status_code == 200  # clean_urls: false
    assert fetch(stack, "/d/prec/about").text == "<p>home</p>"  # no clean URL: the SPA answers
    bad = stack.deploy(files, "prec", site=json.dumps({"redirects": [{"from": "/x", "to": "/y;"}]}))  # type: ignore[arg-type]
    assert bad.status_code == 422 and bad.json()["error"].startswith("site redirects[0]:")


def test_patching_a_slots_rules_makes_a_new_version_of_the_same_files(stack: Stack) -> None:
    first = deploy(stack, "patch", {**PAGES, "_redirects": "/b /from-file 302\n"})
    answer = stack.client.patch(
        "/api/slots/patch", json={"site": {"spa": True, "redirects": [{"from": "/a", "to": "/new"}]}}, headers=AUTH
    )
    assert answer.status_code == 200, answer.text
    assert answer.json()["active"] == 2
    versions = stack.client.get("/api/slots/patch/versions", headers=AUTH).json()["versions"]
    assert [v["deployment_id"] for v in versions] == [first["id"], first["id"]]
    assert fetch(stack, "/d/patch/a").headers["location"] == "/d/patch/new"
    assert fetch(stack, "/d/patch/b").headers["location"] == "/d/patch/from-file"  # the files' rules stay
    assert fetch(stack, "/d/patch/x/y").text == "<p>home</p>"
    stack.client.post("/api/slots/patch/rollback", json={"version": 1}, headers=AUTH)
    assert fetch(stack, "/d/patch/a").status_code == 404
    assert fetch(stack, "/d/patch/b").headers["location"] == "/d/patch/from-file"
    bad = stack.client.patch(
        "/api/slots/patch", json={"site": {"headers": [{"for": "/*", "values": {"Connection": "x"}}]}}, headers=AUTH
    )
    assert bad.status_code == 422
    assert len(stack.client.get("/api/slots/patch/versions", headers=AUTH).json()["versions"]) == 2


def htpasswd(user: str, password: str) -> str:
    """An htpasswd line nginx reads ({SHA}: no crypt module needed in the test)."""
    return f"{user}:{{SHA}}{base64.b64encode(hashlib.sha1(password.encode()).digest()).decode()}"


def test_basic_auth_answers_401_without_and_200_with_credentials(stack: Stack, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SITE_USERS", htpasswd("ann", "s3cret"))
    site = {"spa": True, "access": {"basic_auth_env": "SITE_USERS"}}
    answer = stack.deploy({**PAGES}, "locked", site=json.dumps(site))  # type: ignore[arg-type]
    assert answer.status_code == 201, answer.text
    for path in ("/d/locked/", "/d/locked/about", "/d/locked/deep/spa/route", "/d/locked/nothing.png"):
        refused = fetch(stack, path)
        assert refused.status_code == 401, path
        assert refused.headers["www-authenticate"] == 'Basic realm="locked"'
        assert "home" not in refused.text
        assert fetch(stack, path, auth=("ann", "wrong")).status_code == 401
        assert fetch(stack, path, auth=("ann", "s3cret")).status_code == 200, path
    # The password file is outside every release and never served.
    auth_files = list((stack.settings.nginx_dir / "auth").glob("locked-*.htpasswd"))
    assert len(auth_files) == 1 and auth_files[0].stat().st_mode & 0o777 == 0o640
    assert "htpasswd" not in stack.client.get("/api/slots/locked/versions/1", headers=AUTH).text.split("auth/")[0]
    # Unset: the deploy fails naming the variable, and the live version stays.
    monkeypatch.delenv("SITE_USERS")
    failed = stack.deploy({"index.html": "v2"}, "locked", site=json.dumps(site))  # type: ignore[arg-type]
    assert failed.status_code == 422 and "SITE_USERS" in failed.json()["error"]
    assert fetch(stack, "/d/locked/", auth=("ann", "s3cret")).text == "<p>home</p>"


def test_an_address_outside_the_allow_list_gets_403(stack: Stack, monkeypatch: pytest.MonkeyPatch) -> None:
    site = {"spa": True, "access": {"allow": ["127.0.0.1/32"]}}
    answer = stack.deploy({**PAGES}, "lan", site=json.dumps(site))  # type: ignore[arg-type]
    assert answer.status_code == 201, answer.text
    assert fetch(stack, "/d/lan/").text == "<p>home</p>"
    other = httpx.Client(transport=httpx.HTTPTransport(local_address="127.0.0.2"), timeout=10)
    with other:
        for path in ("/d/lan/", "/d/lan/about", "/d/lan/deep/route", "/d/lan/docs/"):
            refused = other.get(stack.sites_base_url + path)
            assert refused.status_code == 403, path
            assert "home" not in refused.text
    # Both: the address AND the password (satisfy all).
    monkeypatch.setenv("LAN_USERS", htpasswd("bob", "pw"))
    both = {"access": {"allow": ["127.0.0.1"], "basic_auth_env": "LAN_USERS"}}
    patched = stack.client.patch("/api/slots/lan", json={"site": both}, headers=AUTH)
    assert patched.status_code == 200, patched.text
    assert fetch(stack, "/d/lan/").status_code == 401
    assert fetch(stack, "/d/lan/", auth=("bob", "pw")).status_code == 200
    with httpx.Client(transport=httpx.HTTPTransport(local_address="127.0.0.2"), timeout=10) as other:
        assert other.get(stack.sites_base_url + "/d/lan/", auth=("bob", "pw")).status_code == 403


def test_start_up_writes_the_parts_postgresql_records_and_the_symlink_check_still_holds(
    stack_factory: Callable[..., Any],
) -> None:
    chosen, nginx, process = stack_factory(nginx_symlink_check=True)
    files = {"index.html": "home", "docs/page.html": "page", "_redirects": "/x /docs/page.html 200\n"}
    with TestClient(create_app(chosen), raise_server_exceptions=False) as client:
        stack = Stack(settings=chosen, nginx=nginx, process=process, client=client)
        answer = stack.deploy(files, "links")  # type: ignore[arg-type]
        assert answer.status_code == 201, answer.text
        assert fetch(stack, "/d/links/docs/page").text == "page"
        release = chosen.releases_dir / "links" / str(answer.json()["id"])
        secret = chosen.data_dir / "outside.txt"
        secret.write_text("not published")
        secret.chmod(0o644)
        release.chmod(0o755)
        (release / "leak.txt").symlink_to(secret)
        assert "not published" not in fetch(stack, "/d/links/leak.txt").text
        (release / "leak.txt").unlink()  # else the start-up check would refuse the release
        release.chmod(0o555)
    # A part lost (or left over) on disk is put back from PostgreSQL at the next start.
    part = chosen.nginx_dir / "slots" / "links.conf"
    expected = part.read_text()
    part.unlink()
    (chosen.nginx_dir / "slots" / "gone.conf").write_text("location ^~ /d/gone/ { return 418; }\n")
    with TestClient(create_app(chosen), raise_server_exceptions=False) as client:
        stack = Stack(settings=chosen, nginx=nginx, process=process, client=client)
        assert part.read_text() == expected
        assert not (chosen.nginx_dir / "slots" / "gone.conf").exists()
        assert fetch(stack, "/d/links/x").text == "page"
        assert fetch(stack, "/d/gone/").status_code == 404


DEFAULT_CACHE = "public, max-age=0, must-revalidate"
BROWSER = {"Accept": "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"}


def plain_get(stack: Stack, path: str, **headers: str) -> httpx.Response:
    """A request to the sites origin exactly as given: no Accept-Encoding unless the test sends one."""
    with httpx.Client(trust_env=False, timeout=10) as client:
        return client.get(stack.sites_base_url + path, headers={"Accept-Encoding": "identity", **headers})


def test_a_slot_with_rules_serves_gzip_and_the_default_cache_control(stack: Stack) -> None:
    page = "<!doctype html><p>" + "a page long enough to be worth compressing. " * 40 + "</p>"
    script = "console.log('compress me');\n" * 40
    headers = "/assets/*\n  Cache-Control: public, max-age=31536000, immutable\n/assets/old.js\n  ! Cache-Control\n"
    files = {
        **PAGES,
        "index.html": page,
        "assets/app.js": script,
        "assets/old.js": script,
        "_redirects": "/old  /about  301\n",
        "_headers": headers,
    }
    deploy(stack, "zr", files)
    assert (stack.settings.nginx_dir / "slots" / "zr.conf").exists()  # its own location serves it
    for path, text in (("/d/zr/", page), ("/d/zr/assets/app.js", script)):
        packed = plain_get(stack, path, **{"Accept-Encoding": "gzip"})
        assert packed.status_code == 200 and packed.headers["content-encoding"] == "gzip", path
        assert packed.headers["vary"] == "Accept-Encoding" and packed.text == text, path
        assert packed.headers["etag"].startswith('W/"'), path
        assert "content-encoding" not in plain_get(stack, path).headers, path
    # Every answer of the slot's own locations: a file, a clean URL, the site's 404, a rule's
    # redirect, a refused dotfile: the default, once.
    for path, status in (
        ("/d/zr/", 200),
        ("/d/zr/about", 200),
        ("/d/zr/nothing", 404),
        ("/d/zr/old", 301),
        ("/d/zr/about.html", 301),
        ("/d/zr/.env", 404),
    ):
        answer = plain_get(stack, path)
        assert answer.status_code == status, path
        assert answer.headers.get_list("cache-control") == [DEFAULT_CACHE], path
        assert answer.headers["x-drophost-slot"] == "zr", path
    assert plain_get(stack, "/d/zr/nothing").text == "<p>not here</p>"
    etag = plain_get(stack, "/d/zr/").headers["etag"]
    again = plain_get(stack, "/d/zr/", **{"If-None-Match": etag})
    assert again.status_code == 304 and again.headers.get_list("cache-control") == [DEFAULT_CACHE]
    # A header rule for Cache-Control replaces the default (one header, never two); a later
    # "! Cache-Control" gives the default back.
    immutable = plain_get(stack, "/d/zr/assets/app.js")
    assert immutable.headers.get_list("cache-control") == ["public, max-age=31536000, immutable"]
    assert plain_get(stack, "/d/zr/assets/old.js").headers.get_list("cache-control") == [DEFAULT_CACHE]


def test_a_slot_with_rules_serves_well_known_and_no_other_dotfile(stack: Stack) -> None:
    files = {
        **PAGES,
        ".well-known/security.txt": "Contact: mailto:security@example.org\n",
        ".well-known/apple-app-site-association": '{"applinks": {"details": []}}',
        ".well-known/.hidden": "no",
        ".env": "SECRET=1",
        "_redirects": "/*  /index.html  200\n",
        "_headers": "/*\n  X-Team: web\n",
    }
    answer = stack.deploy(files, "wk")  # type: ignore[arg-type]
    assert answer.status_code == 201, answer.text
    assert (stack.settings.nginx_dir / "slots" / "wk.conf").exists()
    security = plain_get(stack, "/d/wk/.well-known/security.txt")
    assert security.status_code == 200 and security.text == "Contact: mailto:security@example.org\n"
    assert security.headers["x-team"] == "web" and security.headers["cache-control"] == DEFAULT_CACHE
    association = plain_get(stack, "/d/wk/.well-known/apple-app-site-association")
    assert association.status_code == 200 and association.headers["content-type"].startswith("application/json")
    assert association.json() == {"applinks": {"details": []}}
    assert association.headers["x-team"] == "web" and association.headers["cache-control"] == DEFAULT_CACHE
    # Not published, and refused by nginx even when planted on disk (a sealed release holds none).
    release = stack.settings.releases_dir / "wk" / str(answer.json()["id"])
    for folder in (release, release / ".well-known"):
        folder.chmod(0o755)
    for name in (".env", ".well-known/.hidden", "a/.well-known/x"):
        (release / name).parent.mkdir(parents=True, exist_ok=True)
        (release / name).write_text("SECRET=1")
    for path in ("/d/wk/.env", "/d/wk/.well-known/.hidden", "/d/wk/a/.well-known/x", "/d/wk/%2eenv"):
        refused = plain_get(stack, path)
        assert (refused.status_code, refused.text) == (404, "<p>not here</p>"), path
        assert refused.headers["cache-control"] == DEFAULT_CACHE, path
    # The SPA fallback still answers a route that is no file.
    assert plain_get(stack, "/d/wk/some/route").text == "<p>home</p>"


def _slot_status(stack: Stack, slot: str) -> str:
    slots = stack.client.get("/api/slots", headers=AUTH).json()["slots"]
    return str({s["slot"]: s for s in slots}[slot]["status"])


def test_an_expired_slot_with_rules_answers_410_like_one_without(stack: Stack) -> None:
    deploy(stack, "brief", {**PAGES, "_redirects": "/go  /about  302\n/*  /index.html  200\n"})
    part = stack.settings.nginx_dir / "slots" / "brief.conf"
    assert part.exists()
    assert stack.client.patch("/api/slots/brief", json={"ttl": "1s"}, headers=AUTH).status_code == 200
    deadline = time.monotonic() + 30
    while _slot_status(stack, "brief") != "expired" and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _slot_status(stack, "brief") == "expired"

    def gone() -> None:
        for path in ("/d/brief/", "/d/brief/go", "/d/brief/some/route", "/d/brief/.well-known/security.txt"):
            page = plain_get(stack, path, **BROWSER)
            assert page.status_code == 410 and page.headers["content-type"].startswith("text/html"), path
            assert "expired" in page.text and "x-drophost-slot" not in page.headers, path
            answer = plain_get(stack, path)
            assert answer.status_code == 410, path
            assert answer.json()["error"] == "the site at this address has expired", path

    gone()
    assert not part.exists()
    assert "brief expired;" in (stack.settings.nginx_dir / "sites.map").read_text()
    # A start puts back what PostgreSQL records: still expired, and no part.
    with TestClient(create_app(stack.settings), raise_server_exceptions=False):
        gone()
        assert not part.exists()
    # Made live again by hand: its rules again; taken offline: nginx's not-found page, not the site's.
    assert stack.client.post("/api/slots/brief/rollback", json={}, headers=AUTH).status_code == 200
    assert fetch(stack, "/d/brief/go").headers["location"] == "/d/brief/about"
    assert stack.client.delete("/api/slots/brief", headers=AUTH).status_code == 200
    offline = plain_get(stack, "/d/brief/some/route", **BROWSER)
    assert offline.status_code == 404 and "No site is deployed at this address" in offline.text
    assert not part.exists()


def test_a_site_field_nested_too_deep_is_refused_not_a_crash(stack: Stack) -> None:
    nested = '{"headers": ' + "[" * 5000 + "]" * 5000 + "}"
    answer = stack.deploy({"index.html": "x"}, "deep", site=nested)
    assert answer.status_code == 422, answer.text
    assert answer.json()["field"] == "site" and "deeper than" in answer.json()["error"]
