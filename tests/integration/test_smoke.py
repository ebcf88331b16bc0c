from __future__ import annotations

from tests.harness.auth import AUTH
from tests.harness.stacks import Stack


def test_zip_deploy_is_served_by_nginx_and_rolls_back(stack: Stack) -> None:
    first = stack.deploy({"site/index.html": "<h1>one</h1>"}, "demo")
    assert first.status_code == 201, first.text
    assert first.json()["status"] == "live" and first.json()["config_version"] == 1
    assert stack.get("/d/demo/").text == "<h1>one</h1>"
    second = stack.deploy({"index.html": "<h1>two</h1>"}, "demo")
    assert second.json()["config_version"] == 2
    assert stack.get("/d/demo/").text == "<h1>two</h1>"
    rolled = stack.client.post("/api/slots/demo/rollback", json={"version": 1}, headers=AUTH)
    assert rolled.json() == {"slot": "demo", "active": 1}
    assert stack.get("/d/demo/").text == "<h1>one</h1>"
