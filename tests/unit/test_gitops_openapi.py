from __future__ import annotations

from pathlib import Path

from drophost.settings import Settings
from drophost.web.app import build_routes
from drophost.web.openapi import document
from drophost.web.routes import endpoints


def test_every_gitops_route_is_documented() -> None:
    paths = document(endpoints(Settings(data_dir=Path("/tmp"))))["paths"]
    routes = [r for r in build_routes(Settings(data_dir=Path("/tmp"))) if "git" in r.path or "reload" in r.path]
    routes += [r for r in build_routes(Settings(data_dir=Path("/tmp"))) if r.path in ("/api/plan", "/api/deployments")]
    assert len(routes) >= 6
    for route in routes:
        path = route.path.replace("{rest:path}", "{rest}")  # type: ignore[attr-defined]
        for method in route.methods - {"HEAD"}:  # type: ignore[attr-defined]
            assert method.lower() in paths[path], (method, path)
    body = paths["/api/deployments"]["post"]["requestBody"]["content"]
    assert set(body) == {"application/json", "multipart/form-data"}
