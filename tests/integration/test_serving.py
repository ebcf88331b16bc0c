"""What the sites origin sends besides the files: compression, Cache-Control and ETags, the page of an
address where nothing is served (404, or 410 once a slot expired), and .well-known/ (issue 13)."""

from __future__ import annotations

import gzip
import time
from pathlib import Path

import httpx2 as httpx
from starlette.testclient import TestClient

from drophost.client.digest import deploy_folder
from drophost.client.http import ApiClient
from drophost.web.app import create_app
from tests.harness.auth import AUTH, TOKEN
from tests.harness.stacks import LiveStack, Stack
from tests.integration.support import visited

DEFAULT_CACHE = "public, max-age=0, must-revalidate"
PAGE = "<!doctype html><p>" + "a page long enough to be worth compressing. " * 40 + "</p>"
BROWSER = {"Accept": "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"}
WELL_KNOWN = {
    "index.html": "home",
    ".well-known/security.txt": "Contact: mailto:security@example.org\n",
    ".well-known/assetlinks.json": '[{"relation": ["delegate_permission/common.handle_all_urls"]}]',
    ".well-known/apple-app-site-association": '{"applinks": {"details": []}}',
    ".well-known/acme/token": "nested",
    ".well-known/.hidden": "no",
    ".env": "SECRET=1",
    ".git/config": "[core]",
    "a/.well-known/x": "no",
}
SERVED = ("index.html", ".well-known/security.txt", ".well-known/assetlinks.json", ".well-known/acme/token")
UNSERVED = (".well-known/.hidden", ".env", ".git/config", "a/.well-known/x")


def get(stack: Stack, path: str, **headers: str) -> httpx.Response:
    """A request to the sites origin exactly as given: no Accept-Encoding unless the test sends one."""
    with httpx.Client(trust_env=False, timeout=10) as client:
        return client.get(stack.sites_base_url + path, headers={"Accept-Encoding": "identity", **headers})


def test_text_is_compressed_for_clients_that_accept_gzip(stack: Stack) -> None:
    files = {
        "index.html": PAGE,
        "app.js": "console.log('compress me');\n" * 40,
        "site.css": "body { color: #333; }\n" * 40,
        "data.json": '{"key": "value"}\n' * 40,
        "logo.svg": "<svg xmlns='http://www.w3.org/2000/svg'><g/></svg>\n" * 20,
        "notes.txt": "plain text\n" * 60,
        "img.png": "\x89PNG" + "x" * 2000,
    }
    assert stack.deploy(files, "zipped").status_code == 201
    for name in ("", "app.js", "site.css", "data.json", "logo.svg", "notes.txt"):
        packed = get(stack, f"/d/zipped/{name}", **{"Accept-Encoding": "gzip"})
        assert packed.status_code == 200 and packed.headers["content-encoding"] == "gzip", name
        assert packed.headers["vary"] == "Accept-Encoding", name
        plain = get(stack, f"/d/zipped/{name}")
        assert "content-encoding" not in plain.headers and plain.headers["vary"] == "Accept-Encoding", name
        assert packed.text == plain.text == files[name or "index.html"], name
    # Images are compressed already.
    assert "content-encoding" not in get(stack, "/d/zipped/img.png", **{"Accept-Encoding": "gzip"}).headers


def test_a_published_gz_file_is_sent_as_it_is(stack: Stack) -> None:
    precompressed = gzip.compress(b"// built with the highest level\n" * 30, compresslevel=9)
    files = {"index.html": "x", "app.js": "// plain\n" * 30, "app.js.gz": precompressed}
    assert stack.deploy(files, "pre").status_code == 201
    packed = get(stack, "/d/pre/app.js", **{"Accept-Encoding": "gzip"})
    assert packed.headers["content-encoding"] == "gzip" and packed.headers["vary"] == "Accept-Encoding"
    assert packed.headers["content-type"].startswith("application/javascript")
    assert packed.headers["content-length"] == str(len(precompressed))
    assert packed.text == "// built with the highest level\n" * 30
    assert get(stack, "/d/pre/app.js").text == "// plain\n" * 30


def test_every_answer_carries_cache_control_and_files_an_etag(stack: Stack) -> None:
    files = {"index.html": PAGE, "css/site.css": "body{}", "404.html": "<h1>lost</h1>", "img/a.png": "png"}
    assert stack.deploy(files, "cached").status_code == 201
    for path, status in (("/d/cached/", 200), ("/d/cached/css/site.css", 200), ("/d/cached/img/a.png", 200)):
        answer = get(stack, path)
        assert answer.status_code == status and answer.headers["cache-control"] == DEFAULT_CACHE, path
        etag = answer.headers["etag"]
        assert etag.startswith('"') and etag.endswith('"'), path  # nginx's: "<mtime>-<size>" in hex
        # A cache revalidates (must-revalidate, max-age=0) and is told nothing changed.
        again = get(stack, path, **{"If-None-Match": etag})
        assert again.status_code == 304 and again.headers["cache-control"] == DEFAULT_CACHE, path
    # Compressing changes the bytes: nginx weakens the ETag (W/) rather than drop it.
    assert get(stack, "/d/cached/", **{"Accept-Encoding": "gzip"}).headers["etag"].startswith('W/"')
    missing = get(stack, "/d/cached/nope")
    assert (missing.status_code, missing.text) == (404, "<h1>lost</h1>")
    assert missing.headers["cache-control"] == DEFAULT_CACHE
    moved = get(stack, "/d/cached")
    assert moved.status_code == 301 and moved.headers["cache-control"] == DEFAULT_CACHE
    # A new deploy changes the ETag of a changed file, so the revalidation fetches it.
    old = get(stack, "/d/cached/css/site.css").headers["etag"]
    time.sleep(1.1)  # nginx's ETag is the file's mtime (seconds) and size
    assert stack.deploy({**files, "css/site.css": "body{color:red}"}, "cached").status_code == 201
    fresh = get(stack, "/d/cached/css/site.css", **{"If-None-Match": old})
    assert fresh.status_code == 200 and fresh.text == "body{color:red}"


def _not_found_page(answer: httpx.Response, status: int) -> None:
    assert answer.status_code == status
    assert answer.headers["content-type"].startswith("text/html")
    assert answer.text.startswith("<!doctype html>") and "x-drophost-slot" not in answer.headers


def _json_error(answer: httpx.Response, status: int) -> str:
    assert answer.status_code == status
    assert answer.headers["content-type"].startswith("application/json")
    message: str = answer.json()["error"]
    return message


def _slot_status(stack: Stack, slot: str) -> str:
    slots = stack.client.get("/api/slots", headers=AUTH).json()["slots"]
    return str({s["slot"]: s for s in slots}[slot]["status"])


def test_browsers_get_a_page_where_no_site_is_deployed_and_other_clients_json(stack: Stack) -> None:
    for path in ("/d/never/", "/d/never/deep/page.html", "/", "/favicon.ico", "/__drophost/not-found.html"):
        page = get(stack, path, **BROWSER)
        _not_found_page(page, 404)
        assert "No site is deployed at this address" in page.text, path
        for accept in ({}, {"Accept": "application/json"}, {"Accept": "*/*"}):
            assert _json_error(get(stack, path, **accept), 404) == "no site is deployed at this address", path
    # Taken offline: the same as never deployed.
    assert stack.deploy({"index.html": "soon gone"}, "gone").status_code == 201
    assert stack.client.delete("/api/slots/gone", headers=AUTH).status_code == 200
    _not_found_page(get(stack, "/d/gone/", **BROWSER), 404)
    assert _json_error(get(stack, "/d/gone/"), 404) == "no site is deployed at this address"


def test_an_expired_slot_answers_410_until_it_is_deployed_again_also_after_a_restart(stack: Stack) -> None:
    files = {"index.html": "brief", ".well-known/apple-app-site-association": "{}"}
    assert stack.deploy(files, "brief").status_code == 201
    assert stack.client.patch("/api/slots/brief", json={"ttl": "1s"}, headers=AUTH).status_code == 200
    deadline = time.monotonic() + 30
    while _slot_status(stack, "brief") != "expired" and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _slot_status(stack, "brief") == "expired"
    for path in ("/d/brief/", "/d/brief/index.html", "/d/brief/.well-known/apple-app-site-association"):
        page = get(stack, path, **BROWSER)
        _not_found_page(page, 410)
        assert "expired" in page.text
        assert _json_error(get(stack, path), 410) == "the site at this address has expired", path
    assert "brief expired;" in (stack.settings.nginx_dir / "sites.map").read_text()
    # A start puts back what PostgreSQL records: still expired.
    with TestClient(create_app(stack.settings), raise_server_exceptions=False):
        _not_found_page(get(stack, "/d/brief/", **BROWSER), 410)
    # Made live again by hand: served, then taken offline: a plain 404.
    assert stack.client.post("/api/slots/brief/rollback", json={}, headers=AUTH).status_code == 200
    assert get(stack, "/d/brief/").text == "brief"
    assert stack.client.delete("/api/slots/brief", headers=AUTH).status_code == 200
    _not_found_page(get(stack, "/d/brief/", **BROWSER), 404)


def _assert_well_known_served(stack: Stack, slot: str) -> None:
    for path in SERVED:
        answer = get(stack, f"/d/{slot}/{visited(path)}")
        assert answer.status_code == 200 and answer.text == WELL_KNOWN[path], path
    association = get(stack, f"/d/{slot}/.well-known/apple-app-site-association")
    assert association.status_code == 200 and association.headers["content-type"].startswith("application/json")
    assert association.json() == {"applinks": {"details": []}}
    for path in UNSERVED:
        assert get(stack, f"/d/{slot}/{path}").status_code == 404, path


def test_well_known_is_published_and_served_and_no_other_dotfile(stack: Stack) -> None:
    answer = stack.deploy(WELL_KNOWN, "known")
    assert answer.status_code == 201 and answer.json()["files"] == 5, answer.text
    _assert_well_known_served(stack, "known")
    release = stack.settings.releases_dir / "known" / str(answer.json()["id"])
    assert sorted(p.name for p in release.iterdir()) == [".well-known", "index.html"]
    # Zipped inside a folder, as people do: the folder is not part of the site, .well-known/ is.
    inside = stack.deploy({f"my-site/{name}": text for name, text in WELL_KNOWN.items()}, "inside")
    assert inside.status_code == 201 and inside.json()["files"] == 5, inside.text
    _assert_well_known_served(stack, "inside")


def test_nginx_serves_no_dotfile_but_well_known_even_if_one_is_on_disk(stack: Stack) -> None:
    answer = stack.deploy({"index.html": "x", ".well-known/security.txt": "Contact: x"}, "planted")
    release = stack.settings.releases_dir / "planted" / str(answer.json()["id"])
    # A sealed release holds none of these; whoever can write there has to unseal it first.
    for folder in (release, release / ".well-known"):
        folder.chmod(0o755)
    for name in (".env", ".well-known/.hidden", "a/.well-known/x", "a/.b/c.html"):
        (release / name).parent.mkdir(parents=True, exist_ok=True)
        (release / name).write_text("secret")
        assert get(stack, f"/d/planted/{name}").status_code == 404, name
    assert get(stack, "/d/planted/%2eenv").status_code == 404
    assert get(stack, "/d/planted/.well-known/%2ehidden").status_code == 404
    assert get(stack, "/d/planted/.well-known/../.env").status_code == 404
    assert get(stack, "/d/planted/.well-known/security.txt").text == "Contact: x"


def test_a_digest_folder_deploy_publishes_well_known(live: LiveStack, tmp_path: Path) -> None:
    folder = tmp_path / "site"
    for name, text in WELL_KNOWN.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text(text)
    deployed = deploy_folder(ApiClient(live.base_url, TOKEN), folder, slot="folder")
    assert deployed["status"] == "live" and deployed["files"] == 5, deployed
    _assert_well_known_served(live, "folder")
