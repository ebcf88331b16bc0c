from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

import httpx2 as httpx
import pytest
from starlette.testclient import TestClient

from drophost.errors import SettingsError
from drophost.pipeline.nginxconfig import render_main_config, template_environment
from drophost.settings import Settings
from drophost.web.app import create_app
from tests.harness.auth import AUTH
from tests.harness.processes import serve_in_thread, stop_server
from tests.harness.stacks import LiveStack, Stack
from tests.harness.zips import make_zip


def test_sites_are_served_on_their_own_port_and_the_api_points_there(stack: Stack) -> None:
    answer = stack.deploy({"index.html": "<h1>own origin</h1>", "a/b.txt": "b"}, "demo")
    assert answer.status_code == 201, answer.text
    assert answer.json()["path_url"] == f"{stack.sites_base_url}/d/demo/"
    slots = stack.client.get("/api/slots", headers=AUTH).json()["slots"]
    assert slots[0]["path_url"] == f"{stack.sites_base_url}/d/demo/"
    site = httpx.get(f"{stack.sites_base_url}/d/demo/", timeout=10)
    assert site.text == "<h1>own origin</h1>" and site.headers["x-drophost-slot"] == "demo"


def test_the_main_port_redirects_sites_to_the_same_path_on_the_sites_origin(stack: Stack) -> None:
    stack.deploy({"index.html": "x", "a/b.txt": "b"}, "demo")
    moved = httpx.get(f"{stack.base_url}/d/demo/a/b.txt?q=1", timeout=10)
    assert moved.status_code == 302
    assert moved.headers["location"] == f"{stack.sites_base_url}/d/demo/a/b.txt?q=1"
    followed = httpx.get(f"{stack.base_url}/d/demo/a/b.txt", timeout=10, follow_redirects=True)
    assert followed.text == "b" and str(followed.url).startswith(stack.sites_base_url)


def test_the_sites_origin_never_reaches_the_service(live: LiveStack) -> None:
    stack = live
    stack.deploy({"index.html": "x"}, "demo")
    for path in ("/api/slots", "/api/openapi.json", "/", "/health", "/d/nothing-here/"):
        answer = httpx.get(stack.sites_base_url + path, headers=AUTH, timeout=10)
        assert answer.status_code == 404, path
        assert answer.json() == {"error": "no site is deployed at this address"}
    assert httpx.get(f"{stack.base_url}/api/slots", headers=AUTH, timeout=10).status_code == 200


def test_sites_on_a_host_name_share_the_port(stack_factory: Callable[..., object], settings: Settings) -> None:
    chosen, _nginx, _process = stack_factory(sites_port=settings.port, sites_host="sites.drophost.test")  # type: ignore[misc]
    app = create_app(chosen)
    server, thread = serve_in_thread(chosen, app)
    try:
        client = TestClient(app, raise_server_exceptions=False)
        answer = client.post(
            "/api/deployments",
            files={"file": ("demo.zip", make_zip({"index.html": "by name"}), "application/zip")},
            headers=AUTH,
        )
        assert answer.status_code == 201, answer.text
        assert answer.json()["path_url"] == f"http://sites.drophost.test:{settings.port}/d/demo/"
        assert answer.json()["url"] == f"http://demo.localhost:{settings.port}/"
        base = f"http://127.0.0.1:{settings.port}"
        site = httpx.get(f"{base}/d/demo/", headers={"Host": f"sites.drophost.test:{settings.port}"}, timeout=10)
        assert site.text == "by name"
        moved = httpx.get(f"{base}/d/demo/", timeout=10)
        assert moved.headers["location"] == f"http://sites.drophost.test:{settings.port}/d/demo/"
        assert httpx.get(f"{base}/api/slots", headers=AUTH, timeout=10).status_code == 200
        hidden = httpx.get(f"{base}/api/slots", headers={**AUTH, "Host": "sites.drophost.test"}, timeout=10)
        assert hidden.status_code == 404
    finally:
        stop_server(server, thread)


def test_the_sites_need_a_port_or_a_host_name_of_their_own(settings: Settings) -> None:
    env = template_environment()
    with pytest.raises(SettingsError, match="own port"):
        render_main_config(env, replace(settings, sites_port=settings.port), sites_map="/tmp/sites.map")
    with pytest.raises(SettingsError, match="origin"):
        render_main_config(env, replace(settings, sites_url="http://x/;evil"), sites_map="/tmp/sites.map")
    with pytest.raises(SettingsError, match="host name"):
        render_main_config(env, replace(settings, sites_host="a b"), sites_map="/tmp/sites.map")


def test_a_configured_sites_url_is_advertised_and_used_for_redirects(settings: Settings) -> None:
    chosen = replace(settings, sites_url="https://sites.example.org")
    assert chosen.site_base_url == "https://sites.example.org"
    text = render_main_config(template_environment(), chosen, sites_map="/tmp/sites.map")
    assert "return 302 https://sites.example.org$request_uri;" in text
    assert replace(settings, port=8080, sites_port=0).site_base_url == "http://127.0.0.1:8081"
    lan = replace(settings, port=8080, sites_port=0, public_url="http://192.168.1.5:8080")
    assert lan.site_base_url == "http://192.168.1.5:8081"


def test_with_the_per_request_check_a_link_planted_in_a_live_release_is_never_followed(
    stack_factory: Callable[..., object],
) -> None:
    # DROPHOST_NGINX_SYMLINK_CHECK: for data directories something besides DropHost writes into.
    chosen, nginx, process = stack_factory(nginx_symlink_check=True)  # type: ignore[misc]
    with TestClient(create_app(chosen), raise_server_exceptions=False) as client:
        stack = Stack(settings=chosen, nginx=nginx, process=process, client=client)
        answer = stack.deploy({"index.html": "home", "docs/page.html": "page"}, "links")
        assert answer.status_code == 201, answer.text
        release = stack.settings.releases_dir / "links" / str(answer.json()["id"])
        secret = stack.settings.data_dir / "outside.txt"
        secret.write_text("not published")
        secret.chmod(0o644)
        # The release is sealed; whoever plants a link here has to unseal it first.
        release.chmod(0o755)
        (release / "docs").chmod(0o755)
        (release / "leak.txt").symlink_to(secret)
        (release / "docs" / "up").symlink_to(release.parent.parent.parent)
        (release / "again.html").symlink_to(release / "index.html")
        assert stack.get("/d/links/docs/page").text == "page"
        assert stack.get("/d/links/leak.txt").status_code in (403, 404)
        assert stack.get("/d/links/docs/up/outside.txt").status_code in (403, 404)
        assert stack.get("/d/links/again").status_code in (403, 404)


def test_a_missing_page_answers_404_with_the_sites_own_404_page(stack: Stack) -> None:
    custom = {"index.html": "home", "404.html": "<h1>lost</h1>", "docs/page.html": "page", "empty/img/x.png": "x"}
    assert stack.deploy(custom, "custom").status_code == 201
    assert stack.deploy({"index.html": "plain", "docs/page.html": "page"}, "plain").status_code == 201
    # A folder without index.html is not there either (not 403).
    for path in ("/d/custom/missing", "/d/custom/docs/nope/", "/d/custom/empty/", "/d/custom/empty/img/"):
        got = stack.get(path)
        assert (got.status_code, got.text, got.headers.get("x-drophost-slot")) == (404, "<h1>lost</h1>", "custom"), path
    assert stack.get("/d/custom/404").status_code == 200  # the page itself, at its clean URL
    assert stack.get("/d/custom/docs/page").text == "page"
    # Without a 404.html: nginx's own 404 page, never another site's.
    for path in ("/d/plain/missing", "/d/plain/docs/", "/d/plain/404"):
        got = stack.get(path)
        assert got.status_code == 404 and "lost" not in got.text, path
