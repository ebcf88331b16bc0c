"""The OpenAPI description of every route; a test keeps it in step with the router."""

from __future__ import annotations

from typing import Any

from drophost import __version__

_ERROR = {"$ref": "#/components/schemas/Error"}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _errors(*codes: int) -> dict[str, Any]:
    texts = {
        400: "Malformed request",
        401: "Missing or wrong token",
        403: "Not allowed",
        404: "Not found",
        409: "Conflict",
        413: "Too large",
        415: "Unsupported media type",
        422: "Invalid input",
        500: "Deploy failed on the server",
        503: "A part is down",
    }
    return {str(code): _json(_ERROR, texts[code]) for code in codes}


_SLOT_PARAM = {
    "name": "slot",
    "in": "path",
    "required": True,
    "schema": {"type": "string", "pattern": "^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$"},
}


def _op(summary: str, responses: dict[str, Any], *, auth: bool = True, **extra: Any) -> dict[str, Any]:
    op: dict[str, Any] = {"summary": summary, "responses": responses, **extra}
    if not auth:
        op["security"] = []
    return op


def document() -> dict[str, Any]:
    deployment = {"$ref": "#/components/schemas/Deployment"}
    version = {"$ref": "#/components/schemas/ConfigVersion"}
    return {
        "openapi": "3.1.0",
        "info": {"title": "DropHost", "version": __version__},
        "security": [{"bearer": []}],
        "paths": {
            "/health": {
                "get": _op(
                    "Liveness of PostgreSQL and nginx",
                    {"200": _json({"type": "object"}, "Healthy"), **_errors(503)},
                    auth=False,
                )
            },
            "/api/openapi.json": {
                "get": _op(
                    "This document",
                    {"200": _json({"type": "object"}, "OpenAPI document")},
                    auth=False,
                )
            },
            "/api/analytics": {
                "get": _op(
                    "Deployments and the requests nginx served over a range (default the last 7 days)",
                    {"200": _json({"$ref": "#/components/schemas/Analytics"}, "Figures"), **_errors(401, 422)},
                    parameters=[
                        {"name": "slot", "in": "query", "schema": {"type": "string"}},
                        {
                            "name": "from",
                            "in": "query",
                            "description": "a date (from its start) or an ISO date-time; UTC",
                            "schema": {"type": "string"},
                        },
                        {
                            "name": "to",
                            "in": "query",
                            "description": "a date (to its end) or an ISO date-time; UTC",
                            "schema": {"type": "string"},
                        },
                    ],
                )
            },
            "/api/deployments": {
                "post": _op(
                    "Deploy a ZIP archive to a slot (multipart), or queue a git deploy (JSON)",
                    {
                        "201": _json(deployment, "ZIP deployed and live"),
                        "202": _json(deployment, "Git deploy queued; follow it at /api/deployments/{id}"),
                        **_errors(400, 401, 403, 409, 413, 415, 422, 500),
                    },
                    requestBody={
                        "required": True,
                        "content": {
                            "application/json": {"schema": {"$ref": "#/components/schemas/GitDeploy"}},
                            "multipart/form-data": {
                                "schema": {
                                    "type": "object",
                                    "required": ["file"],
                                    "properties": {
                                        "file": {"type": "string", "format": "binary"},
                                        "slot": {"type": "string"},
                                        "ttl": {
                                            "type": "string",
                                            "description": "seconds, or a number with s/m/h/d/w",
                                        },
                                    },
                                }
                            },
                        },
                    },
                ),
                "get": _op(
                    "Deployments, newest first",
                    {
                        "200": _json(
                            {
                                "type": "object",
                                "properties": {"deployments": {"type": "array", "items": deployment}},
                            },
                            "List",
                        ),
                        **_errors(401, 422),
                    },
                    parameters=[
                        {"name": "slot", "in": "query", "schema": {"type": "string"}},
                        {
                            "name": "limit",
                            "in": "query",
                            "schema": {"type": "integer", "minimum": 1, "maximum": 1000},
                        },
                    ],
                ),
            },
            "/api/deployments/{id}": {
                "get": _op(
                    "One deployment",
                    {"200": _json(deployment, "Deployment"), **_errors(401, 404)},
                    parameters=[{"name": "id", "in": "path", "required": True, "schema": {"type": "integer"}}],
                )
            },
            "/api/slots": {
                "get": _op(
                    "Every slot and its active version",
                    {
                        "200": _json(
                            {
                                "type": "object",
                                "properties": {
                                    "slots": {"type": "array", "items": {"$ref": "#/components/schemas/Slot"}}
                                },
                            },
                            "Slots",
                        ),
                        **_errors(401),
                    },
                )
            },
            "/api/slots/{slot}": {
                "delete": _op(
                    "Take a slot offline (its history stays)",
                    {"200": _json({"type": "object"}, "Offline"), **_errors(401, 404, 422, 500)},
                    parameters=[_SLOT_PARAM],
                ),
                "patch": _op(
                    "Set a live slot's time to live, counted from now",
                    {
                        "200": _json(
                            {
                                "type": "object",
                                "properties": {
                                    "slot": {"type": "string"},
                                    "expires_at": {"type": ["string", "null"], "format": "date-time"},
                                },
                            },
                            "New expiry",
                        ),
                        **_errors(400, 401, 404, 409, 422),
                    },
                    parameters=[_SLOT_PARAM],
                    requestBody={
                        "required": True,
                        "content": {
                            "application/json": {
                                "schema": {
                                    "type": "object",
                                    "required": ["ttl"],
                                    "properties": {
                                        "ttl": {
                                            "type": ["string", "integer", "null"],
                                            "description": "seconds, or a number with s/m/h/d/w; null: never",
                                        }
                                    },
                                }
                            }
                        },
                    },
                ),
            },
            "/api/slots/{slot}/diff": {
                "get": _op(
                    "What changed between two config versions: the nginx config and the published files",
                    {
                        "200": _json(
                            {
                                "type": "object",
                                "properties": {
                                    "slot": {"type": "string"},
                                    "a": {"type": "integer"},
                                    "b": {"type": "integer"},
                                    "config": {"type": "string", "description": "unified diff"},
                                    "files": {
                                        "type": "object",
                                        "properties": {
                                            "added": {"type": "array", "items": {"type": "string"}},
                                            "removed": {"type": "array", "items": {"type": "string"}},
                                            "changed": {"type": "array", "items": {"type": "string"}},
                                            "unchanged": {"type": "integer"},
                                            "text_diffs": {
                                                "type": "object",
                                                "additionalProperties": {"type": "string"},
                                            },
                                        },
                                    },
                                },
                            },
                            "Diff",
                        ),
                        **_errors(401, 404, 422),
                    },
                    parameters=[
                        _SLOT_PARAM,
                        {"name": "a", "in": "query", "required": True, "schema": {"type": "integer"}},
                        {"name": "b", "in": "query", "required": True, "schema": {"type": "integer"}},
                    ],
                )
            },
            "/api/slots/{slot}/events": {
                "get": _op(
                    "A slot's switches (deploy, rollback, delete, expire), newest first",
                    {
                        "200": _json(
                            {
                                "type": "object",
                                "properties": {
                                    "slot": {"type": "string"},
                                    "events": {
                                        "type": "array",
                                        "items": {
                                            "type": "object",
                                            "properties": {
                                                "version": {"type": ["integer", "null"]},
                                                "action": {
                                                    "type": "string",
                                                    "enum": ["deploy", "rollback", "delete", "expire"],
                                                },
                                                "created_at": {"type": "string", "format": "date-time"},
                                            },
                                        },
                                    },
                                },
                            },
                            "Events",
                        ),
                        **_errors(401, 422),
                    },
                    parameters=[
                        _SLOT_PARAM,
                        {
                            "name": "limit",
                            "in": "query",
                            "schema": {"type": "integer", "minimum": 1, "maximum": 1000},
                        },
                    ],
                )
            },
            "/api/slots/{slot}/versions": {
                "get": _op(
                    "A slot's config versions, newest first",
                    {
                        "200": _json(
                            {
                                "type": "object",
                                "properties": {
                                    "slot": {"type": "string"},
                                    "active": {"type": ["integer", "null"]},
                                    "versions": {"type": "array", "items": version},
                                },
                            },
                            "Versions",
                        ),
                        **_errors(401, 404, 422),
                    },
                    parameters=[_SLOT_PARAM],
                )
            },
            "/api/slots/{slot}/versions/{version}": {
                "get": _op(
                    "One config version with its nginx text",
                    {
                        "200": _json(
                            {
                                "allOf": [
                                    version,
                                    {"type": "object", "properties": {"config": {"type": "string"}}},
                                ]
                            },
                            "Version",
                        ),
                        **_errors(401, 404, 422),
                    },
                    parameters=[
                        _SLOT_PARAM,
                        {"name": "version", "in": "path", "required": True, "schema": {"type": "integer"}},
                    ],
                )
            },
            **_gitops_paths(),
            "/api/slots/{slot}/rollback": {
                "post": _op(
                    "Make a stored config version live again",
                    {
                        "200": _json(
                            {
                                "type": "object",
                                "properties": {"slot": {"type": "string"}, "active": {"type": "integer"}},
                            },
                            "Rolled back",
                        ),
                        **_errors(400, 401, 404, 409, 422, 500),
                    },
                    parameters=[_SLOT_PARAM],
                    requestBody={
                        "required": False,
                        "content": {
                            "application/json": {
                                "schema": {
                                    "type": "object",
                                    "properties": {"version": {"type": "integer", "minimum": 1}},
                                }
                            }
                        },
                    },
                )
            },
            "/api/slots/{slot}/versions/{version}/pin": {
                "post": _op(
                    "Pin or unpin a config version (retention always keeps pinned versions' files)",
                    {
                        "200": _json({"type": "object"}, "Pinned"),
                        **_errors(400, 401, 404, 422),
                    },
                    parameters=[
                        _SLOT_PARAM,
                        {"name": "version", "in": "path", "required": True, "schema": {"type": "integer"}},
                    ],
                    requestBody={
                        "required": False,
                        "content": {
                            "application/json": {
                                "schema": {"type": "object", "properties": {"pinned": {"type": "boolean"}}}
                            }
                        },
                    },
                )
            },
            "/api/uploads": {
                "post": _op(
                    "Start a digest upload: send path -> sha256, get back the digests the server lacks",
                    {
                        "201": _json(
                            {
                                "type": "object",
                                "properties": {
                                    "upload_id": {"type": "string"},
                                    "missing": {"type": "array", "items": {"type": "string"}},
                                },
                            },
                            "Upload started",
                        ),
                        **_errors(400, 401, 413, 422),
                    },
                    requestBody={
                        "required": True,
                        "content": {
                            "application/json": {
                                "schema": {
                                    "type": "object",
                                    "required": ["slot", "files"],
                                    "properties": {
                                        "slot": {"type": "string"},
                                        "ttl": {"type": ["string", "integer"]},
                                        "name": {"type": "string", "description": "shown as the source"},
                                        "files": {"type": "object", "additionalProperties": {"type": "string"}},
                                    },
                                }
                            }
                        },
                    },
                )
            },
            "/api/uploads/{upload_id}/blobs/{digest}": {
                "put": _op(
                    "Upload the bytes of one file named by its sha256",
                    {
                        "200": _json({"type": "object"}, "Already stored"),
                        "201": _json({"type": "object"}, "Stored"),
                        **_errors(401, 404, 409, 413, 422),
                    },
                    parameters=[
                        {"name": "upload_id", "in": "path", "required": True, "schema": {"type": "string"}},
                        {"name": "digest", "in": "path", "required": True, "schema": {"type": "string"}},
                    ],
                    requestBody={
                        "required": True,
                        "content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}},
                    },
                )
            },
            "/api/uploads/{upload_id}/finalize": {
                "post": _op(
                    "Deploy a digest upload",
                    {"201": _json(deployment, "Live"), **_errors(401, 404, 409, 422, 500)},
                    parameters=[{"name": "upload_id", "in": "path", "required": True, "schema": {"type": "string"}}],
                )
            },
            "/api/gc": {
                "post": _op(
                    "Apply retention and remove files nothing needs (dry_run only reports)",
                    {"200": _json({"type": "object"}, "Report"), **_errors(400, 401, 422)},
                    requestBody={
                        "required": False,
                        "content": {
                            "application/json": {
                                "schema": {"type": "object", "properties": {"dry_run": {"type": "boolean"}}}
                            }
                        },
                    },
                )
            },
        },
        "components": {
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer"},
                "basic": {"type": "http", "scheme": "basic"},
            },
            "schemas": {
                "Error": {
                    "type": "object",
                    "required": ["error"],
                    "properties": {"error": {"type": "string"}},
                },
                "Deployment": {
                    "type": "object",
                    "required": ["id", "slot", "status", "source", "created_at", "error", "url"],
                    "properties": {
                        "id": {"type": "integer"},
                        "slot": {"type": "string"},
                        "status": {
                            "type": "string",
                            "enum": [
                                "queued",
                                "building",
                                "live",
                                "superseded",
                                "failed",
                                "offline",
                                "expired",
                            ],
                        },
                        "source": {"type": "string", "enum": ["zip", "git", "upload"]},
                        "url": {"type": "string"},
                        "config_version": {"type": ["integer", "null"]},
                        "files": {"type": ["integer", "null"]},
                        "bytes": {"type": ["integer", "null"]},
                        "error": {"type": ["string", "null"]},
                        "created_at": {"type": "string", "format": "date-time"},
                    },
                },
                "GitDeploy": {
                    "type": "object",
                    "required": ["repo", "slot"],
                    "description": "a repository declared in deploy.yaml or matching its sources.allow patterns",
                    "properties": {
                        "repo": {"type": "string", "description": "https://, http://, ssh:// URL or hosted:NAME"},
                        "branch": {"type": "string", "default": "main"},
                        "path": {"type": "string", "description": "publish this folder (default: the root)"},
                        "slot": {"type": "string"},
                        "ttl": {"type": "string", "description": "seconds, or a number with s/m/h/d/w"},
                    },
                },
                "Slot": {
                    "type": "object",
                    "properties": {
                        "slot": {"type": "string"},
                        "status": {"type": "string"},
                        "active_version": {"type": ["integer", "null"]},
                        "deployment_id": {"type": ["integer", "null"]},
                        "url": {"type": "string"},
                    },
                },
                "Analytics": {
                    "type": "object",
                    "properties": {
                        "from": {"type": "string", "format": "date-time"},
                        "to": {"type": "string", "format": "date-time"},
                        "slot": {"type": ["string", "null"]},
                        "deployments": {
                            "type": "object",
                            "description": "deployments created in the range, by their status now",
                            "properties": {
                                name: {"type": "integer"}
                                for name in ("total", "live", "expired", "offline", "failed", "superseded")
                            },
                        },
                        "requests": {
                            "type": "object",
                            "properties": {
                                name: {"type": "integer"} for name in ("requests", "bytes", "status_4xx", "status_5xx")
                            },
                        },
                        "per_day": {
                            "type": "array",
                            "items": {
                                "type": "object",
                                "properties": {
                                    "day": {"type": "string", "format": "date"},
                                    "slot": {"type": "string"},
                                    "requests": {"type": "integer"},
                                    "bytes": {"type": "integer"},
                                    "status_4xx": {"type": "integer"},
                                    "status_5xx": {"type": "integer"},
                                },
                            },
                        },
                        "top_paths": {
                            "type": "array",
                            "items": {
                                "type": "object",
                                "properties": {
                                    "path": {"type": "string"},
                                    "slot": {"type": "string"},
                                    "requests": {"type": "integer"},
                                    "bytes": {"type": "integer"},
                                },
                            },
                        },
                    },
                },
                "ConfigVersion": {
                    "type": "object",
                    "properties": {
                        "version": {"type": "integer"},
                        "sha256": {"type": "string"},
                        "status": {"type": "string", "enum": ["pending", "active", "inactive", "failed", "pruned"]},
                        "deployment_id": {"type": "integer"},
                        "created_at": {"type": "string", "format": "date-time"},
                    },
                },
            },
        },
    }


def _gitops_paths() -> dict[str, Any]:
    """Webhooks, deploy.yaml reload and plan, the post-receive hook, and git's smart HTTP."""
    changes = {
        "type": "array",
        "items": {
            "type": "object",
            "properties": {
                "action": {"type": "string", "enum": ["add", "change", "deploy", "remove", "keep"]},
                "slot": {"type": "string"},
                "detail": {"type": "string"},
            },
        },
    }
    basic: list[dict[str, list[str]]] = [{"basic": []}]
    return {
        "/api/webhooks/{provider}": {
            "post": _op(
                "A push webhook, verified over the raw body (GitHub X-Hub-Signature-256, Gitea X-Gitea-Signature,"
                " Bitbucket X-Hub-Signature, GitLab X-Gitlab-Token, generic X-Signature: sha256=<hex>)",
                {
                    "200": _json({"type": "object"}, "Ping or test event"),
                    "202": _json(
                        {
                            "type": "object",
                            "properties": {
                                "queued": {"type": "array", "items": {"type": "integer"}},
                                "removed": {"type": "array", "items": {"type": "string"}},
                                "ignored": {"type": "string"},
                            },
                        },
                        "Queued deployments, removed preview slots, or why the push was ignored",
                    ),
                    **_errors(400, 401, 403, 404, 409, 413),
                },
                auth=False,
                parameters=[
                    {
                        "name": "provider",
                        "in": "path",
                        "required": True,
                        "schema": {"type": "string", "enum": ["github", "gitlab", "gitea", "bitbucket", "generic"]},
                    }
                ],
                requestBody={"required": True, "content": {"application/json": {"schema": {"type": "object"}}}},
            )
        },
        "/api/reload": {
            "post": _op(
                "Read deploy.yaml again and apply it (an invalid file changes nothing)",
                {
                    "200": _json(
                        {
                            "type": "object",
                            "properties": {
                                "changes": changes,
                                "queued": {"type": "array", "items": {"type": "integer"}},
                                "errors": {"type": "array", "items": {"type": "string"}},
                            },
                        },
                        "Applied",
                    ),
                    **_errors(401, 422),
                },
            )
        },
        "/api/plan": {
            "post": _op(
                "What applying the deploy.yaml in the body would change against what is live",
                {
                    "200": _json(
                        {"type": "object", "properties": {"changes": changes, "text": {"type": "string"}}}, "Plan"
                    ),
                    **_errors(401, 413, 422),
                },
                requestBody={"required": True, "content": {"application/yaml": {"schema": {"type": "string"}}}},
            )
        },
        "/api/git/hook": {
            "post": _op(
                "Called by the post-receive hook of a hosted repository: deploy the pushed branches, report",
                {
                    "200": _json(
                        {
                            "type": "object",
                            "properties": {
                                "messages": {"type": "array", "items": {"type": "string"}},
                                "deployments": {"type": "array", "items": {"type": "integer"}},
                            },
                        },
                        "One line per deploy, printed by git push",
                    ),
                    **_errors(400, 401, 422),
                },
            )
        },
        "/git/{name}.git/{rest}": {
            method: _op(
                "git's smart HTTP protocol for `repo: hosted:NAME` sites (basic auth, password = API token);"
                " only info/refs, git-upload-pack and git-receive-pack",
                {
                    "200": {"description": "git protocol data"},
                    "401": {"description": "Missing or wrong password (text/plain)"},
                    "404": {"description": "NAME is not declared in deploy.yaml (text/plain, shown by git)"},
                },
                security=basic,
                parameters=[
                    {"name": "name", "in": "path", "required": True, "schema": {"type": "string"}},
                    {"name": "rest", "in": "path", "required": True, "schema": {"type": "string"}},
                ],
            )
            for method in ("get", "post")
        },
    }
