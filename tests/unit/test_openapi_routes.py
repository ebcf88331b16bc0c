from __future__ import annotations

import re

from starlette.routing import Route

from drophost.settings import Settings
from drophost.web import dashboard, openapi
from drophost.web.app import build_routes

# The API is described by OpenAPI; the dashboard's HTML pages are not an API and stay out by prefix.
DOCUMENTED_PREFIXES = ("/api/", "/health", "/git/")


def _openapi_path(path: str) -> str:
    """Starlette's {rest:path} is OpenAPI's {rest}."""
    return re.sub(r":\w+}", "}", path)


def test_every_api_route_is_documented_with_its_methods(tmp_path: object) -> None:
    documented = openapi.document()["paths"]
    seen = set()
    for route in build_routes(Settings(data_dir=tmp_path)):  # type: ignore[arg-type]
        assert isinstance(route, Route)
        if not route.path.startswith(DOCUMENTED_PREFIXES):
            continue
        methods = {m.lower() for m in route.methods or ()} - {"head"}
        path = _openapi_path(route.path)
        assert path in documented, path
        assert methods <= set(documented[path]), (path, methods)
        seen.add(path)
    assert seen == set(documented)


def test_every_undocumented_route_is_a_dashboard_page(tmp_path: object) -> None:
    dashboard_paths = {r.path for r in dashboard.routes() if isinstance(r, Route)}
    for route in build_routes(Settings(data_dir=tmp_path)):  # type: ignore[arg-type]
        assert isinstance(route, Route)
        if not route.path.startswith(DOCUMENTED_PREFIXES):
            assert route.path in dashboard_paths, route.path
    assert not any(path.startswith(DOCUMENTED_PREFIXES) for path in dashboard_paths)
