"""nginx -t rejecting a generated config: the previous version stays live, the failure is recorded."""

from __future__ import annotations

import os
import shutil
from dataclasses import replace
from importlib import resources
from pathlib import Path

import pytest

from drophost.settings import Settings
from tests.harness.auth import AUTH
from tests.harness.processes import stop_process
from tests.harness.stacks import Stack
from tests.integration.support import (
    assert_error,
    deploy_site,
    fetch,
    hashes,
    live_version,
    on_disk,
    served,
    site,
    sites_map,
    upload,
)
from tests.zipcraft import std_zip

# A map entry with three values: nginx -t refuses the whole configuration.
BAD_LINE = "{{ slot }}-broken drophost_bad_entry three;\n"


@pytest.fixture
def templates(tmp_path: Path) -> Path:
    folder = tmp_path / "templates"
    shutil.copytree(str(resources.files("drophost.nginx_templates")), folder)
    return folder


@pytest.fixture
def settings(settings: Settings, templates: Path) -> Settings:
    return replace(settings, nginx_template_dir=str(templates))


def set_template(templates: Path, text: str) -> None:
    path = templates / "site.conf.j2"
    path.write_text(text)
    # Jinja reloads a template whose modification time changed; make sure it did.
    stamp = path.stat().st_mtime + 10
    os.utime(path, (stamp, stamp))


def test_a_rejected_config_leaves_the_previous_version_live(stack: Stack, templates: Path) -> None:
    good_template = (templates / "site.conf.j2").read_text()
    one = site("one")
    first = deploy_site(stack, one)
    before = on_disk(stack.settings)

    set_template(templates, good_template + BAD_LINE)
    response = upload(stack, std_zip(dict(site("two"))))
    message = assert_error(response, 500, stack.settings)
    assert "nginx rejected" in message and "previous version is still live" in message
    body = response.json()
    failed_id = body["deployment_id"]
    assert isinstance(failed_id, int) and failed_id != first["id"]
    assert "map" in body["nginx"]

    # Still served: version 1, byte for byte; nginx's files and the releases are as before.
    assert live_version(stack, "site") == "1"
    assert served(stack, "site", list(one)) == hashes(one)
    assert on_disk(stack.settings) == before
    # Recorded: the version as failed, the deployment as failed with its reason.
    versions = stack.client.get("/api/slots/site/versions", headers=AUTH).json()
    assert versions["active"] == 1
    assert [(v["version"], v["status"]) for v in versions["versions"]] == [(2, "failed"), (1, "active")]
    deployment = stack.client.get(f"/api/deployments/{failed_id}", headers=AUTH).json()
    assert deployment["status"] == "failed" and "nginx rejected" in deployment["error"]
    # A failed version can never be made live.
    refused = stack.client.post("/api/slots/site/rollback", json={"version": 2}, headers=AUTH)
    assert "never went live" in assert_error(refused, 409, stack.settings)
    assert live_version(stack, "site") == "1"

    # With the template fixed, the next deploy is version 3, and "previous" skips the failed one.
    set_template(templates, good_template)
    third = deploy_site(stack, site("three"))
    assert third["config_version"] == 3
    assert served(stack, "site", list(site("three"))) == hashes(site("three"))
    back = stack.client.post("/api/slots/site/rollback", headers=AUTH)
    assert back.json() == {"slot": "site", "active": 1}
    assert served(stack, "site", list(one)) == hashes(one)


def test_a_deploy_while_nginx_is_down_leaves_the_recorded_version_in_place(stack: Stack) -> None:
    one = site("one")
    deploy_site(stack, one)
    live_text = sites_map(stack.settings)
    stop_process(stack.process)

    response = upload(stack, std_zip(dict(site("two"))))
    assert "nginx is not running" in assert_error(response, 500, stack.settings)
    failed_id = response.json()["deployment_id"]
    # The sites map still holds the recorded version: whoever starts nginx next gets version 1.
    assert sites_map(stack.settings) == live_text
    versions = stack.client.get("/api/slots/site/versions", headers=AUTH).json()
    assert [(v["version"], v["status"]) for v in versions["versions"]] == [(2, "failed"), (1, "active")]
    assert stack.client.get(f"/api/deployments/{failed_id}", headers=AUTH).json()["status"] == "failed"

    restarted = stack.nginx.start()
    try:
        assert live_version(stack, "site") == "1"
        assert served(stack, "site", list(one)) == hashes(one)
    finally:
        stop_process(restarted)


def test_a_first_deploy_rejected_by_nginx_is_listed_as_a_failed_version(stack: Stack, templates: Path) -> None:
    good_template = (templates / "site.conf.j2").read_text()
    set_template(templates, good_template + BAD_LINE)
    assert_error(upload(stack, std_zip(dict(site("one")))), 500, stack.settings)
    versions = stack.client.get("/api/slots/site/versions", headers=AUTH)
    assert versions.status_code == 200, versions.text
    assert versions.json()["active"] is None
    assert [(v["version"], v["status"]) for v in versions.json()["versions"]] == [(1, "failed")]
    assert_error(fetch(stack, "/d/site/"), 404)
