"""Every slot at the root of its own host name, <slot>.localhost, through real nginx (Host headers)."""

from __future__ import annotations

from dataclasses import replace

import httpx2 as httpx
import pytest

from drophost.errors import SettingsError
from drophost.pipeline.nginxconfig import render_main_config, template_environment
from drophost.settings import Settings
from tests.harness.auth import AUTH
from tests.harness.stacks import Stack

SITE = {
    "index.html": '<link rel="stylesheet" href="/css/site.css"><p>home</p>',
    "css/site.css": "body{color:red}",
    "docs/index.html": "<p>docs</p>",
    "404.html": "<p>own 404</p>",
    "d/docs/x.txt": "a folder named like the path form",
}


def by_host(stack: Stack, host: str, path: str = "/", **kwargs: object) -> httpx.Response:
    """A request to the sites port as a browser sends it to http://<host>:<sites port>/."""
    port = stack.settings.sites_listen_port
    headers = {"Host": f"{host}:{port}", **kwargs.pop("headers", {})}  # type: ignore[dict-item]
    return httpx.get(f"http://127.0.0.1:{port}{path}", headers=headers, timeout=10, **kwargs)  # type: ignore[arg-type]


def test_a_slot_is_served_at_the_root_of_its_host_name(stack: Stack) -> None:
    answer = stack.deploy(SITE, "docs")  # type: ignore[arg-type]
    assert answer.status_code == 201, answer.text
    port = stack.settings.sites_listen_port
    assert answer.json()["url"] == f"http://docs.localhost:{port}/"
    assert answer.json()["path_url"] == f"{stack.sites_base_url}/d/docs/"
    slots = stack.client.get("/api/slots", headers=AUTH).json()["slots"]
    assert slots[0]["url"] == f"http://docs.localhost:{port}/"
    assert slots[0]["path_url"] == f"{stack.sites_base_url}/d/docs/"
    home = by_host(stack, "docs.localhost")
    assert home.text == SITE["index.html"] and home.headers["x-drophost-slot"] == "docs"
    assert by_host(stack, "docs.localhost", "/css/site.css").text == "body{color:red}"
    assert by_host(stack, "docs.localhost", "/css/site.css?v=1").text == "body{color:red}"
    assert by_host(stack, "docs.localhost", "/docs/").text == "<p>docs</p>"
    missing = by_host(stack, "docs.localhost", "/nothing")
    assert (missing.status_code, missing.text) == (404, "<p>own 404</p>")
    assert by_host(stack, "docs.localhost", "/.env").status_code == 404
    # /d/<slot>/ keeps working beside it.
    assert stack.get("/d/docs/css/site.css").text == "body{color:red}"


def test_a_folder_without_its_slash_is_redirected_on_the_host_name(stack: Stack) -> None:
    stack.deploy(SITE, "docs")  # type: ignore[arg-type]
    first = by_host(stack, "docs.localhost", "/docs?a=1")
    assert (first.status_code, first.headers["location"]) == (301, "/d/docs/docs/?a=1")
    second = by_host(stack, "docs.localhost", first.headers["location"])
    assert (second.status_code, second.headers["location"]) == (301, "/docs/?a=1")
    followed = by_host(stack, "docs.localhost", "/docs", follow_redirects=True)
    assert followed.text == "<p>docs</p>" and followed.url.path == "/docs/"


def test_another_slots_path_on_a_host_name_is_this_sites_own_path(stack: Stack) -> None:
    stack.deploy(SITE, "docs")  # type: ignore[arg-type]
    stack.deploy({"index.html": "other", "secret.txt": "other's"}, "other")
    assert by_host(stack, "docs.localhost", "/d/other/secret.txt").status_code == 404
    assert by_host(stack, "other.localhost", "/secret.txt").text == "other's"


def test_a_name_that_is_no_slot_gets_the_not_deployed_page(stack: Stack) -> None:
    stack.deploy(SITE, "docs")  # type: ignore[arg-type]
    for host in ("nothing.localhost", "nothing-here.localhost"):
        page = by_host(stack, host, headers={"Accept": "text/html"})
        assert page.status_code == 404 and "<html" in page.text.lower()
        assert by_host(stack, host).json() == {"error": "no site is deployed at this address"}


def test_rules_behave_the_same_under_the_host_name(stack: Stack) -> None:
    rules = "/old  /about\n/go/*  /blog/:splat  302\n/app/*  /app/index.html  200\n"
    files = {
        "index.html": "home",
        "about.html": "about",
        "blog/index.html": "blog",
        "blog/post.html": "post",
        "app/index.html": "app shell",
        "_redirects": rules,
        "_headers": "/about\n  X-Rule: yes\n",
    }
    assert stack.deploy(files, "ruled").status_code == 201  # type: ignore[arg-type]
    for fetch, prefix in ((lambda p: by_host(stack, "ruled.localhost", p), ""), (stack.get, "/d/ruled")):
        old = fetch(f"{prefix}/old?x=1")
        assert (old.status_code, old.headers["location"]) == (301, f"{prefix}/about?x=1")
        go = fetch(f"{prefix}/go/post")
        assert (go.status_code, go.headers["location"]) == (302, f"{prefix}/blog/post")
        clean = fetch(f"{prefix}/about.html")
        assert (clean.status_code, clean.headers["location"]) == (301, f"{prefix}/about")
        index = fetch(f"{prefix}/blog/index.html")
        assert (index.status_code, index.headers["location"]) == (301, f"{prefix}/blog/")
        about = fetch(f"{prefix}/about")
        assert about.text == "about" and about.headers["x-rule"] == "yes"
        assert fetch(f"{prefix}/blog/post").text == "post"
        assert fetch(f"{prefix}/app/settings/1").text == "app shell"
        assert fetch(f"{prefix}/blog/").text == "blog"


def test_a_slot_without_rules_moves_its_html_urls_to_clean_ones_on_both_forms(stack: Stack) -> None:
    # https://developers.cloudflare.com/pages/configuration/serving-pages/ ("Route matching").
    files = {**SITE, "about.html": "about", "docs/page.html": "page", "docs.html": "shadowed by docs/"}
    assert stack.deploy(files, "bare").status_code == 201  # type: ignore[arg-type]
    for fetch, prefix in ((lambda p: by_host(stack, "bare.localhost", p), ""), (stack.get, "/d/bare")):
        for path, location in (
            ("/about.html?a=1&b=2", "/about?a=1&b=2"),
            ("/docs/page.html", "/docs/page"),
            ("/index.html", "/"),
            ("/docs/index.html?x", "/docs/?x"),
            ("/docs.html", "/docs"),  # whatever /docs leads to (the folder), as on Cloudflare Pages
        ):
            moved = fetch(f"{prefix}{path}")
            assert (moved.status_code, moved.headers["location"]) == (301, f"{prefix}{location}"), path
        assert fetch(f"{prefix}/about").text == "about"
        assert fetch(f"{prefix}/docs/page").text == "page"
        assert fetch(f"{prefix}/docs/").text == "<p>docs</p>"
        assert fetch(f"{prefix}/css/site.css").text == "body{color:red}"
        missing = fetch(f"{prefix}/nothing.html")
        assert (missing.status_code, missing.headers["location"]) == (301, f"{prefix}/nothing")
        assert fetch(f"{prefix}/nothing").text == "<p>own 404</p>"
    # The dashboard's port only sends /d/ links on to the sites origin, unchanged.
    old_link = httpx.get(f"{stack.base_url}/d/bare/about.html?a=1", timeout=10)
    moved_on = f"{stack.sites_base_url}/d/bare/about.html?a=1"
    assert (old_link.status_code, old_link.headers["location"]) == (302, moved_on)


def test_a_site_host_name_on_the_main_port_is_sent_to_the_sites_port(stack: Stack) -> None:
    port = stack.settings.port
    moved = httpx.get(f"http://127.0.0.1:{port}/api/slots", headers={"Host": f"docs.localhost:{port}"}, timeout=10)
    assert moved.status_code == 302
    assert moved.headers["location"] == f"http://docs.localhost:{stack.settings.sites_listen_port}/api/slots"


def test_a_new_slot_name_with_a_double_hyphen_is_refused(stack: Stack) -> None:
    answer = stack.deploy({"index.html": "x"}, "a--b")
    assert answer.status_code == 422, answer.text
    assert "--" in answer.json()["error"]
    digest = stack.client.post("/api/uploads", json={"slot": "c--d", "files": []}, headers=AUTH)
    assert digest.status_code == 422, digest.text
    assert stack.client.get("/api/deployments", headers=AUTH).json()["deployments"] == []


def test_the_dashboard_is_never_on_a_site_host_name(settings: Settings) -> None:
    env = template_environment()
    with pytest.raises(SettingsError, match="host names"):
        render_main_config(env, replace(settings, public_url="http://admin.localhost:8080"), sites_map="/tmp/m")
    with pytest.raises(SettingsError, match="domain"):
        render_main_config(env, replace(settings, sites_domain="bad domain;"), sites_map="/tmp/m")
    render_main_config(env, replace(settings, public_url="http://localhost:8080"), sites_map="/tmp/m")


def test_no_redirect_of_a_host_name_leads_to_another_host(stack: Stack) -> None:
    # On a host name a redirect's base is empty: a path kept as sent ("//x", "/\x", %5C decoded)
    # would make Location "//evil.example", which a browser reads as another site.
    assert stack.deploy({**SITE, "sub/index.html": "sub"}, "bare").status_code == 201  # type: ignore[arg-type]
    ruled = {**SITE, "sub/index.html": "sub", "_headers": "/*\n  X-Rule: yes\n"}
    assert stack.deploy(ruled, "ruled").status_code == 201  # type: ignore[arg-type]
    for host in ("bare.localhost", "ruled.localhost"):
        for path in (
            "//evil.example.html",
            "//evil.example/index.html",
            "/%5Cevil.example.html",
            "/d/bare/%5Cevil.example/",
            "/d/ruled/%5Cevil.example/",
            "/d/bare//evil.example/",
        ):
            answer = by_host(stack, host, path)
            location = answer.headers.get("location", "")
            # (A Location of /%5C... is a path of this site: browsers do not decode it.)
            assert not location.startswith(("//", "/\\")), (host, path, location)
        # What a visitor meant still moves as it did.
        moved = by_host(stack, host, "/sub/index.html")
        assert (moved.status_code, moved.headers["location"]) == (301, "/sub/")
