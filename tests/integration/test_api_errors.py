"""One JSON error shape on every endpoint, the token on every /api/ route, and the OpenAPI document."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.routing import Mount, Route

from drophost.gitops import manifest
from tests.harness.auth import AUTH
from tests.harness.stacks import Stack, running_stack, shared_settings
from tests.integration.support import assert_error, deploy_site, fetch, site
from tests.zipcraft import std_zip

SAMPLE_PARAMS = {
    "id": "1",
    "slot": "site",
    "version": "1",
    "upload_id": "1",
    "digest": "0" * 64,
    "provider": "github",
    "name": "site",
    "rest": "info/refs",
}
DIGEST = "0" * 64


@pytest.fixture(scope="module")
def shared_stack(scratch_root: Path, postgres_server: str) -> Iterator[Stack]:
    # Slot "site" with one live version, deployment 1; these tests only read or are refused.
    with shared_settings(scratch_root, postgres_server) as settings, running_stack(settings) as stack:
        deploy_site(stack, site("one"))
        yield stack


# The API is what OpenAPI describes; the dashboard's HTML pages (tested by the dashboard's own
# tests) are not part of it.
API_PREFIXES = ("/api/", "/health", "/git/")


def app_routes(app: Starlette) -> set[tuple[str, str]]:
    """(path, method) of every API route the application answers, HEAD aside."""
    found: set[tuple[str, str]] = set()
    for route in app.routes:
        assert isinstance(route, Route) and not isinstance(route, Mount), f"teach this test about {route!r}"
        if route.include_in_schema and route.path.startswith(API_PREFIXES):
            # OpenAPI writes {rest} where Starlette writes {rest:path}.
            path = re.sub(r"\{(\w+):\w+\}", r"{\1}", route.path)
            found.update((path, method.lower()) for method in route.methods or () if method != "HEAD")
    return found


def served_document(stack: Stack) -> dict[str, Any]:
    response = stack.client.get("/api/openapi.json")
    assert response.status_code == 200
    document: dict[str, Any] = response.json()
    return document


def documented_routes(document: dict[str, Any]) -> set[tuple[str, str]]:
    return {(path, method) for path, operations in document["paths"].items() for method in operations}


def concrete(path: str) -> str:
    return re.sub(r"\{(\w+)\}", lambda m: SAMPLE_PARAMS[m.group(1)], path)


def is_public(document: dict[str, Any], path: str, method: str) -> bool:
    return document["paths"][path][method].get("security") == []


# -- OpenAPI ---------------------------------------------------------------------------------------
def test_openapi_lists_exactly_the_apps_routes_and_methods(shared_stack: Stack) -> None:
    document = served_document(shared_stack)
    assert document["openapi"].startswith("3.")
    assert documented_routes(document) == app_routes(shared_stack.client.app)  # type: ignore[arg-type]


def test_openapi_documents_every_path_parameter(shared_stack: Stack) -> None:
    document = served_document(shared_stack)
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            in_path = set(re.findall(r"\{(\w+)\}", path))
            declared = {p["name"] for p in operation.get("parameters", []) if p["in"] == "path"}
            assert declared == in_path, (path, method)
            assert "summary" in operation and operation["responses"], (path, method)


# -- the token ----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer wrong-token"},
        {"Authorization": "Bearer "},
        {"Authorization": "Bearer"},
        {"Authorization": "Basic dGVzdDp0ZXN0"},
        {"Authorization": AUTH["Authorization"].replace("Bearer", "Token")},
        {"Authorization": AUTH["Authorization"] + "x"},
        {"Authorization": AUTH["Authorization"][:-1]},
        {"Authorization": "Bearer t\u00f6ken".encode("latin-1")},  # type: ignore[dict-item]
    ],
    ids=["none", "wrong", "empty", "no-space", "basic", "other-scheme", "longer", "shorter", "non-ascii"],
)
def test_every_api_route_refuses_a_missing_or_wrong_token(shared_stack: Stack, headers: dict[str, str | bytes]) -> None:
    document = served_document(shared_stack)
    routes = sorted(app_routes(shared_stack.client.app))  # type: ignore[arg-type]
    assert len(routes) >= 8
    for path, method in routes:
        response = shared_stack.client.request(method, concrete(path), headers=headers)
        if path == "/api/openapi.json":
            assert response.status_code == 200
        elif path.startswith("/git/"):
            assert response.status_code == 401, path  # git's basic auth; git prints the text/plain reason
        elif not is_public(document, path, method):
            assert_error(response, 401, shared_stack.settings)


def test_the_only_api_routes_without_the_token_are_the_description_and_signed_webhooks(
    shared_stack: Stack,
) -> None:
    document = served_document(shared_stack)
    public = {(p, m) for p, m in documented_routes(document) if is_public(document, p, m) and p.startswith("/api/")}
    assert public == {("/api/openapi.json", "get"), ("/api/webhooks/{provider}", "post")}


def test_the_token_is_accepted_in_any_case_of_bearer(shared_stack: Stack) -> None:
    token = AUTH["Authorization"].split(" ", 1)[1]
    response = shared_stack.client.get("/api/slots", headers={"Authorization": f"bearer {token}"})
    assert response.status_code == 200


# -- one error shape everywhere -----------------------------------------------------------------------
@dataclass(frozen=True)
class Bad:
    route: tuple[str, str]
    status: int
    url: str = ""
    kwargs: dict[str, Any] = field(default_factory=dict)

    @property
    def id(self) -> str:
        return f"{self.route[1].upper()} {self.url or self.route[0]} -> {self.status}"


def _auth(**kwargs: Any) -> dict[str, Any]:
    return {"headers": AUTH, **kwargs}


ZIP = std_zip({"index.html": "x"})
JSON_AUTH = {**AUTH, "content-type": "application/json"}
BAD_REQUESTS = [
    Bad(("/health", "get"), 405, "/health", {"method": "post"}),
    Bad(("/api/openapi.json", "get"), 405, "/api/openapi.json", {"method": "delete"}),
    Bad(("/api/deployments", "post"), 401),
    Bad(("/api/deployments", "post"), 415, kwargs=_auth(content=ZIP)),
    Bad(("/api/deployments", "post"), 422, kwargs=_auth(files={"nofile": ("a", b"b")})),
    Bad(("/api/deployments", "post"), 422, kwargs=_auth(files={"file": ("a.zip", b"junk")}, data={"slot": "site"})),
    Bad(("/api/deployments", "post"), 413, kwargs={"headers": JSON_AUTH, "content": b" " * (65 * 1024)}),
    Bad(("/api/deployments", "get"), 401),
    Bad(("/api/deployments", "get"), 422, "/api/deployments?slot=No", _auth()),
    Bad(("/api/deployments", "get"), 422, "/api/deployments?limit=0", _auth()),
    Bad(("/api/deployments", "get"), 422, "/api/deployments?limit=x", _auth()),
    Bad(("/api/deployments/{id}", "get"), 401),
    Bad(("/api/deployments/{id}", "get"), 404, "/api/deployments/999", _auth()),
    Bad(("/api/deployments/{id}", "get"), 404, "/api/deployments/abc", _auth()),
    Bad(("/api/deployments/{id}", "get"), 404, "/api/deployments/0", _auth()),
    Bad(("/api/deployments/{id}", "get"), 404, "/api/deployments/99999999999999999999", _auth()),
    Bad(("/api/deployments/{id}/log", "get"), 401),
    Bad(("/api/deployments/{id}/log", "get"), 404, "/api/deployments/999/log", _auth()),
    Bad(("/api/slots", "get"), 401),
    Bad(("/api/slots/{slot}", "delete"), 401),
    Bad(("/api/slots/{slot}", "delete"), 404, "/api/slots/nope", _auth()),
    Bad(("/api/slots/{slot}", "delete"), 422, "/api/slots/No", _auth()),
    Bad(("/api/slots/{slot}", "delete"), 422, "/api/slots/demo?purge=yes", _auth()),
    Bad(("/api/slots/{slot}", "delete"), 404, "/api/slots/nope?purge=true&confirm=nope", _auth()),
    Bad(("/api/slots/{slot}/versions", "get"), 401),
    Bad(("/api/slots/{slot}/versions", "get"), 404, "/api/slots/nope/versions", _auth()),
    Bad(("/api/slots/{slot}/versions", "get"), 422, "/api/slots/-x-/versions", _auth()),
    Bad(("/api/slots/{slot}/versions", "get"), 422, "/api/slots/a%20b/versions", _auth()),
    Bad(("/api/slots/{slot}/versions/{version}", "get"), 401),
    Bad(("/api/slots/{slot}/versions/{version}", "get"), 404, "/api/slots/site/versions/2", _auth()),
    Bad(("/api/slots/{slot}/versions/{version}", "get"), 404, "/api/slots/site/versions/0", _auth()),
    Bad(("/api/slots/{slot}/versions/{version}", "get"), 404, "/api/slots/site/versions/x", _auth()),
    Bad(("/api/slots/{slot}/versions/{version}", "get"), 404, "/api/slots/site/versions/999999999999999999", _auth()),
    Bad(("/api/slots/{slot}/versions/{version}", "get"), 404, "/api/slots/nope/versions/1", _auth()),
    Bad(("/api/slots/{slot}/versions/{version}", "get"), 422, "/api/slots/N/versions/1", _auth()),
    Bad(("/api/slots/{slot}/rollback", "post"), 401),
    Bad(("/api/slots/{slot}/rollback", "post"), 400, kwargs=_auth(content=b"{not json")),
    Bad(("/api/slots/{slot}/rollback", "post"), 400, kwargs=_auth(content=b"[1]")),
    Bad(("/api/slots/{slot}/rollback", "post"), 400, kwargs=_auth(content=b"null")),
    Bad(("/api/slots/{slot}/rollback", "post"), 400, kwargs=_auth(content=b"\xff\xfe")),
    Bad(("/api/slots/{slot}/rollback", "post"), 422, kwargs=_auth(json={"version": "1"})),
    Bad(("/api/slots/{slot}/rollback", "post"), 422, kwargs=_auth(json={"version": 0})),
    Bad(("/api/slots/{slot}/rollback", "post"), 422, kwargs=_auth(json={"version": True})),
    Bad(("/api/slots/{slot}/rollback", "post"), 422, kwargs=_auth(json={"version": 1.5})),
    Bad(("/api/slots/{slot}/rollback", "post"), 404, kwargs=_auth(json={"version": 7})),
    Bad(("/api/slots/{slot}/promote", "post"), 401),
    Bad(("/api/slots/{slot}/promote", "post"), 400, kwargs=_auth(content=b"{not json")),
    Bad(("/api/slots/{slot}/promote", "post"), 422, kwargs=_auth(json={})),
    Bad(("/api/slots/{slot}/promote", "post"), 422, kwargs=_auth(json={"deployment_id": True})),
    Bad(("/api/slots/{slot}/promote", "post"), 404, kwargs=_auth(json={"deployment_id": 7})),
    Bad(("/api/slots/{slot}/rollback", "post"), 404, kwargs=_auth(json={"version": 10**30})),
    Bad(("/api/slots/{slot}/rollback", "post"), 404, kwargs=_auth(json={"version": 2**31})),
    Bad(("/api/slots/{slot}/rollback", "post"), 404, "/api/slots/nope/rollback", _auth(json={})),
    Bad(("/api/slots/{slot}/rollback", "post"), 409, kwargs=_auth()),
    Bad(("/api/slots/{slot}/rollback", "post"), 413, kwargs=_auth(content=b" " * (65 * 1024))),
    Bad(("/api/slots/{slot}/rollback", "post"), 422, "/api/slots/UP/rollback", _auth(json={})),
    Bad(("/api/slots/{slot}/versions/{version}/pin", "post"), 401),
    Bad(("/api/slots/{slot}/versions/{version}/pin", "post"), 404, "/api/slots/site/versions/9/pin", _auth()),
    Bad(("/api/slots/{slot}/versions/{version}/pin", "post"), 422, kwargs=_auth(json={"pinned": "yes"})),
    Bad(("/api/slots/{slot}/versions/{version}/pin", "post"), 400, kwargs=_auth(content=b"{")),
    Bad(("/api/slots/{slot}/versions/{version}/pin", "post"), 413, kwargs=_auth(content=b" " * (65 * 1024))),
    Bad(("/api/uploads", "post"), 401),
    Bad(("/api/uploads", "post"), 422, kwargs=_auth(json={})),
    Bad(("/api/uploads", "post"), 422, kwargs=_auth(json={"slot": "site", "files": {"../x": DIGEST}})),
    Bad(("/api/uploads", "post"), 422, kwargs=_auth(json={"slot": "No", "files": {"a.html": DIGEST}})),
    Bad(("/api/uploads", "post"), 400, kwargs=_auth(content=b"[]")),
    Bad(("/api/uploads/deploy", "post"), 401),
    Bad(("/api/uploads/deploy", "post"), 400, kwargs=_auth(content=b"[]")),
    Bad(("/api/uploads/deploy", "post"), 422, kwargs=_auth(content=b'{"slot": "site", "files": {}}\n')),
    Bad(("/api/uploads/{upload_id}/blobs/{digest}", "put"), 401),
    Bad(("/api/uploads/{upload_id}/blobs/{digest}", "put"), 404, kwargs=_auth(content=b"x")),
    Bad(("/api/uploads/{upload_id}/blobs/{digest}", "put"), 404, "/api/uploads/nope/blobs/" + DIGEST, _auth()),
    Bad(("/api/uploads/{upload_id}", "get"), 401),
    Bad(("/api/uploads/{upload_id}", "get"), 404, kwargs=_auth()),
    Bad(("/api/uploads/{upload_id}/batch", "post"), 401),
    Bad(("/api/uploads/{upload_id}/batch", "post"), 404, kwargs=_auth(content=b"x")),
    Bad(("/api/uploads/{upload_id}/finalize", "post"), 401),
    Bad(("/api/uploads/{upload_id}/finalize", "post"), 404, kwargs=_auth()),
    Bad(("/api/gc", "post"), 401),
    Bad(("/api/gc", "post"), 422, kwargs=_auth(json={"dry_run": "no"})),
    Bad(("/api/gc", "post"), 400, kwargs=_auth(content=b"{x")),
    Bad(("/api/gc", "post"), 413, kwargs=_auth(content=b" " * (65 * 1024))),
    Bad(("/api/analytics", "get"), 401),
    Bad(("/api/analytics", "get"), 422, "/api/analytics?slot=No", _auth()),
    Bad(("/api/slots/{slot}", "patch"), 401),
    Bad(("/api/slots/{slot}", "patch"), 400, kwargs=_auth(content=b"{x")),
    Bad(("/api/slots/{slot}", "patch"), 404, "/api/slots/nope", _auth(json={"ttl": "1h"})),
    Bad(("/api/slots/{slot}", "patch"), 422, kwargs=_auth(json={"ttl": "soon"})),
    Bad(("/api/slots/{slot}", "patch"), 413, kwargs=_auth(content=b" " * (65 * 1024))),
    Bad(("/api/slots/{slot}/events", "get"), 401),
    Bad(("/api/slots/{slot}/events", "get"), 422, "/api/slots/No/events", _auth()),
    Bad(("/api/slots/{slot}/events", "get"), 404, "/api/slots/nope/events", _auth()),
    Bad(("/api/slots/{slot}/diff", "get"), 401),
    Bad(("/api/slots/{slot}/diff", "get"), 422, kwargs=_auth()),
    Bad(("/api/webhooks/{provider}", "post"), 404, "/api/webhooks/nope", {"content": b"{}"}),
    Bad(("/api/webhooks/{provider}", "post"), 403, kwargs={"content": b"{}"}),
    Bad(("/api/reload", "post"), 401),
    Bad(("/api/plan", "post"), 401),
    Bad(("/api/plan", "post"), 422, kwargs=_auth(content=b"sites: [\n")),
    Bad(("/api/plan", "post"), 413, kwargs=_auth(content=b" " * (manifest.MAX_BYTES + 1))),
    Bad(("/api/git/hook", "post"), 401),
    Bad(("/api/git/hook", "post"), 400, kwargs=_auth(content=b"{x")),
    Bad(("/api/git/hook", "post"), 413, kwargs=_auth(content=b" " * (1024 * 1024 + 1))),
    Bad(("/api/users", "post"), 401),
    Bad(("/api/users", "post"), 422, kwargs=_auth(json={"name": "Not A Name", "role": "viewer"})),
    Bad(("/api/users", "get"), 401),
    Bad(("/api/whoami", "get"), 401),
    Bad(("/api/users/{name}", "delete"), 401),
    Bad(("/api/users/{name}", "delete"), 404, kwargs=_auth()),
    Bad(("/api/tokens", "post"), 401),
    Bad(("/api/tokens", "post"), 422, kwargs=_auth(json={"name": "ci", "scopes": ["write"]})),
    Bad(("/api/tokens", "get"), 401),
    Bad(("/api/tokens/{id}", "delete"), 401),
    Bad(("/api/tokens/{id}", "delete"), 404, kwargs=_auth()),
    Bad(("/api/audit", "get"), 401),
    Bad(("/api/audit", "get"), 422, "/api/audit?since=yesterday", _auth()),
    Bad(("/api/slots/{slot}/lock", "post"), 401),
    Bad(("/api/slots/{slot}/lock", "post"), 422, kwargs=_auth(json={"reason": "a\nb"})),
    Bad(("/api/slots/{slot}/unlock", "post"), 401),
    Bad(("/api/slots/{slot}/unlock", "post"), 422, "/api/slots/No/unlock", _auth()),
    Bad(("/api/outbox", "get"), 401),
    Bad(("/api/outbox", "get"), 422, "/api/outbox?state=lost", _auth()),
]


@pytest.mark.parametrize("bad", BAD_REQUESTS, ids=lambda bad: bad.id)
def test_every_endpoint_answers_errors_as_json(shared_stack: Stack, bad: Bad) -> None:
    kwargs = dict(bad.kwargs)
    method = kwargs.pop("method", bad.route[1])
    response = shared_stack.client.request(method, bad.url or concrete(bad.route[0]), **kwargs)
    assert_error(response, bad.status, shared_stack.settings)


def test_the_error_cases_cover_every_route(shared_stack: Stack) -> None:
    # Except git's smart HTTP: git clients print a text/plain reason, not JSON.
    routes = {r for r in app_routes(shared_stack.client.app) if not r[0].startswith("/git/")}  # type: ignore[arg-type]
    assert {bad.route for bad in BAD_REQUESTS} == routes


@pytest.mark.parametrize(
    ("method", "url", "status"),
    [("get", "/api/nothing", 404), ("put", "/api/slots", 405), ("get", "/elsewhere", 404), ("patch", "/", 405)],
)
def test_unknown_addresses_answer_json_too(shared_stack: Stack, method: str, url: str, status: int) -> None:
    assert_error(shared_stack.client.request(method, url, headers=AUTH), status, shared_stack.settings)


def test_nginx_answers_json_for_a_slot_that_does_not_exist(shared_stack: Stack) -> None:
    assert_error(fetch(shared_stack, "/d/nothing-here/"), 404)
    assert_error(fetch(shared_stack, "/d/"), 404)
    assert_error(fetch(shared_stack, "/d/nothing-here/index.html"), 404)
    assert_error(fetch(shared_stack, "/d/nothing-here/logo.png"), 404)


def test_nginx_answers_json_when_the_service_is_down(shared_stack: Stack) -> None:
    # Here only the TestClient runs the app; nothing listens on the socket nginx proxies to.
    response = fetch(shared_stack, "/api/slots/site/page.html")
    assert "not answering" in assert_error(response, response.status_code, shared_stack.settings)
    assert response.status_code == 502
