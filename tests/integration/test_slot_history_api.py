from __future__ import annotations

from tests.harness.auth import AUTH
from tests.harness.stacks import Stack


def test_events_list_every_switch_newest_first(stack: Stack) -> None:
    stack.deploy({"index.html": "one"}, "demo")
    stack.deploy({"index.html": "two"}, "demo")
    stack.client.post("/api/slots/demo/rollback", json={}, headers=AUTH)
    stack.client.delete("/api/slots/demo", headers=AUTH)
    events = stack.client.get("/api/slots/demo/events", headers=AUTH).json()["events"]
    assert [(e["action"], e["version"]) for e in events] == [
        ("offline", None), ("rollback", 1), ("deploy", 2), ("deploy", 1),
    ]  # fmt: skip
    # A slot with no history at all is a typo, named as such (issue 19), not an empty history.
    unknown = stack.client.get("/api/slots/never-deployed/events", headers=AUTH)
    assert (unknown.status_code, unknown.json()["error"]) == (404, "no such slot 'never-deployed'")


def test_diff_compares_files_and_config(stack: Stack) -> None:
    stack.deploy({"index.html": "one\n", "keep.css": "k", "gone.txt": "g"}, "demo")
    stack.deploy({"index.html": "two\n", "keep.css": "k", "new.txt": "n"}, "demo")
    answer = stack.client.get("/api/slots/demo/diff?a=1&b=2", headers=AUTH)
    assert answer.status_code == 200, answer.text
    files = answer.json()["files"]
    assert (files["added"], files["removed"], files["changed"], files["unchanged"]) == (
        ["new.txt"], ["gone.txt"], ["index.html"], 1,
    )  # fmt: skip
    assert "-one\n+two\n" in files["text_diffs"]["index.html"]
    assert "+# Files: " in answer.json()["config"] and "Files: releases/demo/2, reached" in answer.json()["config"]


def test_bad_diff_and_event_requests_get_the_error_shape(stack: Stack) -> None:
    stack.deploy({"index.html": "one"}, "demo")
    cases = {
        "/api/slots/demo/diff?a=1": 422,
        "/api/slots/demo/diff?a=1&b=x": 422,
        "/api/slots/demo/diff?a=1&b=9": 404,
        "/api/slots/Bad_Name/diff?a=1&b=1": 422,
        "/api/slots/Bad_Name/events": 422,
        "/api/slots/demo/events?limit=0": 422,
    }
    for path, status in cases.items():
        answer = stack.client.get(path, headers=AUTH)
        assert answer.status_code == status, path
        assert isinstance(answer.json()["error"], str) and "/tmp" not in answer.text
    assert stack.client.get("/api/slots/demo/diff?a=1&b=1").status_code == 401
