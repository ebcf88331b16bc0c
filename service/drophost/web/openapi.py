"""The OpenAPI document, rendered from the route declarations that also build the router (web/routes.py).

A route is declared once, as an `Endpoint`: its method, path, handler, summary, answers, request
body, body cap and authentication. The router and this document are both made from that one list,
so neither can describe a route the other lacks.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Literal

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from drophost import __version__
from drophost.web.auth import Auth
from drophost.web.common import Handler

Schema = dict[str, Any]
Method = Literal["GET", "POST", "PUT", "PATCH", "DELETE"]
# read, deploy, admin: Bearer <API token> or a dashboard session with that right (web/auth.py);
# public: none; webhook: the body's signature; basic: HTTP basic auth with a personal token as the
# password (git's smart HTTP).


@dataclass(frozen=True)
class Query:
    name: str
    schema: Schema | None = None  # default: a string
    required: bool = False
    description: str = ""


@dataclass(frozen=True)
class Endpoint:
    method: Method
    path: str
    handler: Handler
    summary: str
    # Answers other than the JSON errors: status -> (description, JSON schema, or None for another media type).
    answers: dict[int, tuple[str, Schema | None]]
    errors: tuple[int, ...] = ()
    auth: Auth | None = None  # every route must say; routes.starlette_route refuses one that does not
    query: tuple[Query, ...] = ()
    body: dict[str, Schema] | None = None  # media type -> schema
    body_required: bool = True
    max_body: int | None = None  # bytes; past it, a JSON 413 (web/bodylimit.py)


SLOT = {"type": "string", "pattern": "^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$"}
# Every path parameter any route uses: a route with a new one fails to render until it is added here.
PATH_PARAMETERS: dict[str, Schema] = {
    "slot": SLOT,
    "id": {"type": "integer"},
    "version": {"type": "integer"},
    "upload_id": {"type": "string"},
    "digest": {"type": "string"},
    "provider": {"type": "string", "enum": ["github", "gitlab", "gitea", "bitbucket", "generic"]},
    "name": {"type": "string"},
    "rest": {"type": "string"},
}
ERROR_TEXTS = {
    400: "Malformed request",
    401: "Missing or wrong token",
    403: "Not allowed",
    404: "Not found",
    409: "Conflict",
    413: "Too large",
    415: "Unsupported media type",
    422: "Invalid input",
    429: "Too many failed sign-ins",
    500: "Deploy failed on the server",
    503: "A part is down",
}
_SECURITY: dict[Auth | None, list[dict[str, list[str]]] | None] = {
    None: None,
    "read": None,
    "deploy": None,
    "admin": None,
    "public": [],
    "webhook": [],
    "basic": [{"basic": []}],
}


def ref(name: str) -> Schema:
    return {"$ref": f"#/components/schemas/{name}"}


def openapi_path(path: str) -> str:
    """Starlette's {rest:path} is OpenAPI's {rest}."""
    return re.sub(r"\{(\w+):\w+\}", r"{\1}", path)


def document(endpoints: Iterable[Endpoint]) -> dict[str, Any]:
    paths: dict[str, dict[str, Any]] = {}
    for endpoint in endpoints:
        path = openapi_path(endpoint.path)
        operations = paths.setdefault(path, {})
        assert endpoint.method.lower() not in operations, f"{endpoint.method} {path} is declared twice"
        operations[endpoint.method.lower()] = operation(endpoint)
    return {
        "openapi": "3.1.0",
        "info": {"title": "DropHost", "version": __version__},
        "security": [{"bearer": []}],
        "paths": paths,
        "components": {
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer"},
                "basic": {"type": "http", "scheme": "basic"},
            },
            "schemas": SCHEMAS,
        },
    }


def operation(endpoint: Endpoint) -> dict[str, Any]:
    answers = {str(status): _answer(text, schema) for status, (text, schema) in endpoint.answers.items()}
    errors = {str(status): _answer(ERROR_TEXTS[status], ref("Error")) for status in endpoint.errors}
    op: dict[str, Any] = {"summary": endpoint.summary, "responses": {**answers, **errors}}
    parameters = [
        {"name": name, "in": "path", "required": True, "schema": PATH_PARAMETERS[name]}
        for name in re.findall(r"\{(\w+)", endpoint.path)
    ]
    parameters += [_query(q) for q in endpoint.query]
    if parameters:
        op["parameters"] = parameters
    if endpoint.body is not None:
        content = {media: {"schema": schema} for media, schema in endpoint.body.items()}
        op["requestBody"] = {"required": endpoint.body_required, "content": content}
    security = _SECURITY[endpoint.auth]
    if security is not None:
        op["security"] = security
    return op


async def serve_document(request: Request) -> Response:
    """The document create_app rendered once from the declarations."""
    return JSONResponse(request.app.state.openapi)


def _answer(description: str, schema: Schema | None) -> dict[str, Any]:
    if schema is None:
        return {"description": description}
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _query(query: Query) -> dict[str, Any]:
    parameter: dict[str, Any] = {"name": query.name, "in": "query"}
    if query.required:
        parameter["required"] = True
    if query.description:
        parameter["description"] = query.description
    parameter["schema"] = query.schema or {"type": "string"}
    return parameter


SCHEMAS: dict[str, Schema] = {
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
                    "unchanged",
                    "draft",
                ],
            },
            "source": {"type": "string", "enum": ["zip", "git", "upload"]},
            "url": {"type": "string", "description": "the slot at the root of its host name, <slot>.<sites domain>"},
            "path_url": {"type": "string", "description": "the slot under /d/<slot>/ on the sites origin"},
            "permalink": {
                "type": "string",
                "description": "this deployment's files at <id>--<slot>.<sites domain>, live or not, while kept",
            },
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
            "ttl": {
                "type": "string",
                "description": "seconds, or a number with s/m/h/d/w, from now; none removes the slot's TTL;"
                " absent: the slot keeps its expiry",
            },
            "activate": {
                "type": "boolean",
                "default": True,
                "description": "false: publish a draft (its permalink), the live site unchanged until a promote",
            },
        },
    },
    "Slot": {
        "type": "object",
        "properties": {
            "slot": {"type": "string"},
            "status": {"type": "string"},
            "active_version": {"type": ["integer", "null"]},
            "deployment_id": {"type": ["integer", "null"]},
            "url": {"type": "string", "description": "the slot at the root of its host name, <slot>.<sites domain>"},
            "path_url": {"type": "string", "description": "the slot under /d/<slot>/ on the sites origin"},
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
                "properties": {name: {"type": "integer"} for name in ("requests", "bytes", "status_4xx", "status_5xx")},
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
}
