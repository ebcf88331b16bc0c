from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from openapi_spec_validator import validate
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from drophost.settings import Settings
from drophost.web import dashboard, deliveries, openapi, routes, teampages
from drophost.web.app import build_routes

# The API is described by OpenAPI; the dashboard's HTML pages are not an API and stay out by prefix.
DOCUMENTED_PREFIXES = ("/api/", "/health", "/git/")
SETTINGS = Settings(data_dir=Path("/tmp/drophost-unit"))


def document() -> dict[str, Any]:
    return openapi.document(routes.endpoints(SETTINGS))


def undocumented(router: list[BaseRoute], documented: dict[str, Any]) -> set[tuple[str, str]]:
    """(path, method) of every API route the router answers that the document does not describe."""
    missing = set()
    for route in router:
        assert isinstance(route, Route)
        if not route.path.startswith(DOCUMENTED_PREFIXES):
            continue
        path = openapi.openapi_path(route.path)
        for method in {m.lower() for m in route.methods or ()} - {"head"}:
            if method not in documented["paths"].get(path, {}):
                missing.add((path, method))
    return missing


def test_every_api_route_is_documented_with_its_methods() -> None:
    documented = document()
    assert undocumented(build_routes(SETTINGS), documented) == set()
    api_paths = {openapi.openapi_path(r.path) for r in build_routes(SETTINGS) if isinstance(r, Route)}
    assert set(documented["paths"]) <= api_paths


def test_a_route_added_without_a_declaration_is_caught() -> None:
    async def extra(request: Request) -> Response:
        return Response()

    router = [*build_routes(SETTINGS), Route("/api/extra/{slot}", extra, methods=["GET", "POST"])]
    assert undocumented(router, document()) == {("/api/extra/{slot}", "get"), ("/api/extra/{slot}", "post")}


def test_a_declared_path_parameter_needs_a_schema() -> None:
    async def extra(request: Request) -> Response:
        return Response()

    with pytest.raises(KeyError, match="colour"):
        openapi.document([openapi.Endpoint("GET", "/api/{colour}", extra, "A colour", {200: ("Colour", None)})])


def test_the_document_is_valid_openapi() -> None:
    validate(document())


def test_every_route_that_takes_a_body_has_a_cap() -> None:
    for endpoint in routes.endpoints(SETTINGS):
        if endpoint.method in ("POST", "PUT", "PATCH"):
            assert endpoint.max_body is not None, (endpoint.method, endpoint.path)


def test_each_route_is_declared_once() -> None:
    declared = [(e.method, e.path) for e in routes.endpoints(SETTINGS)]
    assert len(declared) == len(set(declared))


def test_every_undocumented_route_is_a_dashboard_page() -> None:
    pages = [*dashboard.routes(), *teampages.routes(), *deliveries.routes()]
    dashboard_paths = {r.path for r in pages if isinstance(r, Route)}
    for route in build_routes(SETTINGS):
        assert isinstance(route, Route)
        if not route.path.startswith(DOCUMENTED_PREFIXES):
            assert route.path in dashboard_paths, route.path
    assert not any(path.startswith(DOCUMENTED_PREFIXES) for path in dashboard_paths)
