"""The API flow: deploy, list, versions, rollback, delete, expiry, health; served content via nginx."""

from __future__ import annotations

import hashlib
import os
import threading
import time

import httpx2 as httpx
import psycopg

from drophost.pipeline.nginxconfig import site_entry
from tests.harness.auth import AUTH
from tests.harness.stacks import Stack
from tests.integration.support import (
    assert_error,
    deploy_site,
    fetch,
    hashes,
    live_version,
    served,
    site,
    sites_map,
    tree,
    upload,
)
from tests.zipcraft import std_zip


def api(stack: Stack, method: str, path: str, **kwargs: object) -> httpx.Response:
    return stack.client.request(method, path, headers=AUTH, **kwargs)  # type: ignore[arg-type]


def test_a_deploy_answers_201_with_the_live_site(stack: Stack) -> None:
    files = {
        "my-site/index.html": b"<h1>home</h1>",
        "my-site/about/index.html": b"<h1>about</h1>",
        "my-site/img/pic.jpg": os.urandom(3000),
        "my-site/.env": b"SECRET=1",
        "__MACOSX/my-site/._index.html": b"fork",
    }
    response = upload(stack, std_zip(files), slot="demo")
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["slot"] == "demo" and body["status"] == "live" and body["source"] == "zip"
    assert body["config_version"] == 1 and isinstance(body["id"], int)
    assert body["path_url"] == f"{stack.sites_base_url}/d/demo/"
    assert body["url"] == f"http://demo.localhost:{stack.settings.sites_listen_port}/"
    assert body["files"] == 3 and body["bytes"] == 13 + 14 + 3000
    assert body["error"] is None and body["created_at"]
    # The single top-level folder is served from inside; dotfiles and __MACOSX are not published.
    assert fetch(stack, "/d/demo/").content == b"<h1>home</h1>"
    assert fetch(stack, "/d/demo/about/").content == b"<h1>about</h1>"
    assert fetch(stack, "/d/demo/img/pic.jpg").content == files["my-site/img/pic.jpg"]
    assert fetch(stack, "/d/demo/.env").status_code == 404
    assert fetch(stack, "/d/demo/my-site/").status_code == 404
    release = stack.settings.releases_dir / "demo" / str(body["id"])
    assert tree(release) == ["about", "about/index.html", "img", "img/pic.jpg", "index.html"]


def test_the_slot_defaults_to_the_file_name(stack: Stack) -> None:
    response = upload(stack, std_zip({"index.html": b"x"}), slot=None, filename="My Portfolio (final).zip")
    assert response.status_code == 201, response.text
    assert response.json()["slot"] == "my-portfolio-final"
    assert fetch(stack, "/d/my-portfolio-final/").content == b"x"


def test_nginx_serves_files_only(stack: Stack) -> None:
    deployed = deploy_site(stack, site("plain"), slot="demo")
    assert fetch(stack, "/d/demo/missing").status_code == 404
    assert fetch(stack, "/d/demo/css/").status_code in (403, 404)  # no directory listings
    redirect = fetch(stack, "/d/demo")
    assert redirect.status_code == 301 and redirect.headers["location"] == "/d/demo/"
    # A dotfile planted on disk is never served (a sealed release holds none; root can still write).
    release = stack.settings.releases_dir / "demo" / str(deployed["id"])
    (release / ".hidden.html").write_text("hidden")
    assert fetch(stack, "/d/demo/.hidden.html").status_code == 404
    assert fetch(stack, "/d/demo/%2ehidden.html").status_code == 404
    assert fetch(stack, "/d/demo/css/%2e%2e/.hidden.html").status_code == 404


def test_url_and_config_version_count_per_slot_from_one(stack: Stack) -> None:
    plan = ["alpha", "alpha", "beta", "alpha", "beta"]
    got = []
    for n, slot in enumerate(plan):
        body = deploy_site(stack, {"index.html": f"{slot} {n}".encode()}, slot=slot)
        got.append((body["slot"], body["config_version"]))
        assert body["path_url"] == f"{stack.sites_base_url}/d/{slot}/"
        assert fetch(stack, f"/d/{slot}/").content == f"{slot} {n}".encode()
    assert got == [("alpha", 1), ("alpha", 2), ("beta", 1), ("alpha", 3), ("beta", 2)]
    slots = api(stack, "GET", "/api/slots").json()["slots"]
    assert [(s["slot"], s["active_version"], s["status"]) for s in slots] == [("alpha", 3, "live"), ("beta", 2, "live")]
    assert all(s["path_url"] == f"{stack.sites_base_url}/d/{s['slot']}/" for s in slots)


def test_deployments_are_listed_newest_first(stack: Stack) -> None:
    ids = [deploy_site(stack, {"index.html": f"{n}".encode()}, slot=slot)["id"] for n, slot in enumerate("aab")]
    listed = api(stack, "GET", "/api/deployments").json()["deployments"]
    assert [d["id"] for d in listed] == ids[::-1]
    assert [d["status"] for d in listed] == ["live", "live", "superseded"]
    only_a = api(stack, "GET", "/api/deployments?slot=a").json()["deployments"]
    assert [d["id"] for d in only_a] == ids[1::-1]
    assert api(stack, "GET", "/api/deployments?limit=1").json()["deployments"][0]["id"] == ids[2]
    one = api(stack, "GET", f"/api/deployments/{ids[0]}").json()
    for key in ("id", "slot", "status", "source", "created_at", "error", "url", "config_version"):
        assert key in one
    assert (one["slot"], one["source"], one["status"], one["config_version"]) == ("a", "zip", "superseded", 1)


def test_versions_hold_the_config_text_nginx_serves(stack: Stack) -> None:
    first = deploy_site(stack, site("one"), slot="demo")
    second = deploy_site(stack, site("two"), slot="demo")
    listed = api(stack, "GET", "/api/slots/demo/versions").json()
    assert listed["slot"] == "demo" and listed["active"] == 2
    assert [(v["version"], v["status"], v["deployment_id"]) for v in listed["versions"]] == [
        (2, "active", second["id"]),
        (1, "inactive", first["id"]),
    ]
    for entry in listed["versions"]:
        one = api(stack, "GET", f"/api/slots/demo/versions/{entry['version']}").json()
        assert hashlib.sha256(one["config"].encode()).hexdigest() == one["sha256"] == entry["sha256"]
        assert f"Files: releases/demo/{entry['deployment_id']}," in one["config"]
    # nginx has the versions' shared entry; the slot's link leads to version 2's release.
    live = sites_map(stack.settings)
    assert site_entry(api(stack, "GET", "/api/slots/demo/versions/1").json()["config"]) in live
    assert os.readlink(stack.settings.data_dir / "live" / "demo") == f"../releases/demo/{second['id']}"


def test_rollback_without_a_version_goes_to_the_previous_one(stack: Stack) -> None:
    for label in ("one", "two", "three"):
        deploy_site(stack, site(label), slot="demo")
    assert api(stack, "POST", "/api/slots/demo/rollback").json() == {"slot": "demo", "active": 2}
    assert served(stack, "demo", list(site("two"))) == hashes(site("two"))
    # The version active before 2 was 3 (history order, not version order).
    assert api(stack, "POST", "/api/slots/demo/rollback", json={}).json() == {"slot": "demo", "active": 3}
    assert api(stack, "POST", "/api/slots/demo/rollback", json={"version": 3}).json() == {"slot": "demo", "active": 3}
    assert live_version(stack, "demo") == "3"
    actions = [v["status"] for v in api(stack, "GET", "/api/slots/demo/versions").json()["versions"]]
    assert actions == ["active", "inactive", "inactive"]


def test_rollback_with_one_version_is_409(stack: Stack) -> None:
    deploy_site(stack, site("only"), slot="demo")
    assert "no earlier version" in assert_error(api(stack, "POST", "/api/slots/demo/rollback"), 409)


def test_delete_takes_the_slot_offline_and_keeps_its_history(stack: Stack) -> None:
    deploy_site(stack, site("one"), slot="demo")
    deploy_site(stack, site("two"), slot="demo")
    deploy_site(stack, site("other"), slot="other")
    response = api(stack, "DELETE", "/api/slots/demo")
    assert response.status_code == 200 and response.json() == {"slot": "demo", "status": "offline"}
    for path in ("", "index.html", "img/logo.png"):
        assert_error(fetch(stack, f"/d/demo/{path}"), 404)
    assert fetch(stack, "/d/other/").status_code == 200
    versions = api(stack, "GET", "/api/slots/demo/versions").json()
    assert versions["active"] is None and [v["version"] for v in versions["versions"]] == [2, 1]
    slots = {s["slot"]: s for s in api(stack, "GET", "/api/slots").json()["slots"]}
    assert slots["demo"]["status"] == "offline" and slots["demo"]["active_version"] is None
    statuses = [d["status"] for d in api(stack, "GET", "/api/deployments?slot=demo").json()["deployments"]]
    assert statuses == ["offline", "superseded"]
    assert "\ndemo " not in sites_map(stack.settings) and "\nother " in sites_map(stack.settings)
    assert sorted(os.listdir(stack.settings.data_dir / "live")) == ["other"]
    # Deleting again changes nothing; rolling back makes the last live version live again.
    assert api(stack, "DELETE", "/api/slots/demo").json() == {"slot": "demo", "status": "offline"}
    assert api(stack, "POST", "/api/slots/demo/rollback").json() == {"slot": "demo", "active": 2}
    assert served(stack, "demo", list(site("two"))) == hashes(site("two"))
    assert api(stack, "POST", "/api/slots/demo/rollback", json={"version": 1}).json()["active"] == 1
    assert served(stack, "demo", list(site("one"))) == hashes(site("one"))


def test_a_deploy_with_a_ttl_expires(stack: Stack) -> None:
    response = upload_with_ttl(stack, "1s")
    assert response.status_code == 201 and response.json()["ttl_seconds"] == 1
    deadline = time.monotonic() + 20
    while api(stack, "GET", "/api/slots").json()["slots"][0]["status"] != "expired":
        assert time.monotonic() < deadline, "the slot did not expire"
        time.sleep(0.1)
    assert fetch(stack, "/d/demo/").status_code == 410
    assert api(stack, "GET", f"/api/deployments/{response.json()['id']}").json()["status"] == "expired"


def upload_with_ttl(stack: Stack, ttl: str) -> httpx.Response:
    return stack.client.post(
        "/api/deployments",
        files={"file": ("demo.zip", std_zip({"index.html": b"soon gone"}), "application/zip")},
        data={"slot": "demo", "ttl": ttl},
        headers=AUTH,
    )


def test_health_is_200_and_names_nginx_when_it_stops(stack: Stack) -> None:
    healthy = stack.client.get("/health")
    assert healthy.status_code == 200 and healthy.json()["status"] == "ok"
    stack.process.terminate()
    stack.process.wait(timeout=10)
    down = stack.client.get("/health")
    assert "nginx" in assert_error(down, 503, stack.settings)
    assert down.json()["checks"] == {"database": True, "nginx": False}


def test_deploys_to_one_slot_are_serialised_and_other_slots_proceed(stack: Stack) -> None:
    jobs = [("same", n) for n in range(3)] + [(f"other-{n}", n) for n in range(3)]
    results: dict[tuple[str, int], httpx.Response] = {}

    def deploy(slot: str, n: int) -> None:
        results[(slot, n)] = upload(stack, std_zip({"index.html": f"{slot} {n}".encode()}), slot=slot)

    threads = [threading.Thread(target=deploy, args=job) for job in jobs]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert all(r.status_code == 201 for r in results.values()), {k: r.text for k, r in results.items()}
    same = {n: results[("same", n)].json()["config_version"] for n in range(3)}
    assert sorted(same.values()) == [1, 2, 3]
    last = max(same, key=lambda n: same[n])
    assert fetch(stack, "/d/same/").content == f"same {last}".encode()
    assert live_version(stack, "same") == "3"
    for n in range(3):
        assert results[(f"other-{n}", n)].json()["config_version"] == 1
        assert fetch(stack, f"/d/other-{n}/").content == f"other-{n} {n}".encode()


def test_health_names_the_database_when_it_is_gone(stack: Stack, postgres_server: str) -> None:
    name = psycopg.conninfo.conninfo_to_dict(stack.settings.database_url)["dbname"]
    with psycopg.connect(postgres_server, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
    down = stack.client.get("/health")
    assert "database" in assert_error(down, 503, stack.settings)
    assert down.json()["checks"] == {"database": False, "nginx": True}
