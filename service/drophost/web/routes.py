"""Every API route, declared once: the router and the OpenAPI document are both built from this list."""

from __future__ import annotations

from starlette.middleware import Middleware
from starlette.routing import Route

from drophost.gitops import manifest
from drophost.settings import Settings
from drophost.web import analytics, api, deliveries, gitops, health, team, uploads
from drophost.web.auth import guard
from drophost.web.bodylimit import JSON_MAX_BYTES, BodyLimit
from drophost.web.openapi import Endpoint, Query, Schema, ref, serve_document

OBJECT: Schema = {"type": "object"}
DEPLOYMENT = ref("Deployment")
VERSION = ref("ConfigVersion")
LIMIT = Query("limit", {"type": "integer", "minimum": 1, "maximum": 1000})
TTL_TEXT = (
    "seconds, or a number with s/m/h/d/w, from now; none removes the slot's TTL; absent: the slot keeps its expiry"
)
CHANGES: Schema = {
    "type": "array",
    "items": {
        "type": "object",
        "properties": {
            "action": {"type": "string", "enum": ["add", "change", "deploy", "remove", "keep", "drift"]},
            "slot": {"type": "string"},
            "detail": {"type": "string"},
        },
    },
}


# A site's rules (README, "Site rules"): the same keys as deploy.yaml's.
SITE: Schema = {
    "type": "object",
    "description": "spa, clean_urls, redirects [{from, to, status?, force?}], headers [{for, values, remove?}],"
    " access {basic_auth_env?, allow?}",
    "properties": {
        "spa": {"type": "boolean"},
        "clean_urls": {"type": "boolean"},
        "redirects": {"type": "array", "items": {"type": "object"}},
        "headers": {"type": "array", "items": {"type": "object"}},
        "access": {"type": "object"},
    },
}


def json_body(schema: Schema) -> dict[str, Schema]:
    return {"application/json": schema}


def obj(**properties: Schema) -> Schema:
    return {"type": "object", "properties": properties}


def array(items: Schema) -> Schema:
    return {"type": "array", "items": items}


STRING: Schema = {"type": "string"}
INTEGER: Schema = {"type": "integer"}
INTEGERS = array(INTEGER)
STRINGS = array(STRING)
BOOLEAN: Schema = {"type": "boolean"}


def endpoints(settings: Settings) -> list[Endpoint]:
    return [
        Endpoint(
            "GET",
            "/health",
            health.health,
            "Liveness of PostgreSQL and nginx",
            {200: ("Healthy", OBJECT)},
            (503,),
            auth="public",
        ),
        Endpoint(
            "GET",
            "/api/openapi.json",
            serve_document,
            "This document",
            {200: ("OpenAPI document", OBJECT)},
            auth="public",
        ),
        Endpoint(
            "GET",
            "/api/analytics",
            analytics.get_analytics,
            "Deployments and the requests nginx served over a range (default the last 7 days)",
            {200: ("Figures", ref("Analytics"))},
            (401, 422),
            auth="read",
            query=(
                Query("slot"),
                Query("from", description="a date (from its start) or an ISO date-time; UTC"),
                Query("to", description="a date (to its end) or an ISO date-time; UTC"),
            ),
        ),
        *_deployments(settings),
        *_slots(),
        *_uploads(settings),
        *_gitops(settings),
        *_team(),
        *_outbox(),
    ]


def starlette_route(endpoint: Endpoint) -> Route:
    """The guard and the body cap come from the declaration, so the document cannot promise others."""
    if endpoint.auth is None:
        raise TypeError(f"{endpoint.method} {endpoint.path} declares no auth")
    handler = guard(endpoint.handler, endpoint.auth)
    middleware = None if endpoint.max_body is None else [Middleware(BodyLimit, max_bytes=endpoint.max_body)]
    return Route(endpoint.path, handler, methods=[endpoint.method], middleware=middleware)


def _deployments(settings: Settings) -> list[Endpoint]:
    zip_form = {
        "type": "object",
        "required": ["file"],
        "properties": {
            "file": {"type": "string", "format": "binary"},
            "slot": STRING,
            "ttl": {"type": "string", "description": TTL_TEXT},
            "site": {"type": "string", "description": "the site's rules as JSON (see Site in PATCH /api/slots/{slot})"},
            "activate": {
                "type": "string",
                "enum": ["true", "false"],
                "description": "false: publish a draft (its permalink), the live site unchanged",
            },
        },
    }
    return [
        Endpoint(
            "POST",
            "/api/deployments",
            api.create_deployment,
            "Deploy a ZIP archive to a slot (multipart), or queue a git deploy (JSON)",
            {
                201: ("ZIP deployed and live", DEPLOYMENT),
                202: ("Git deploy queued; follow it at /api/deployments/{id}", DEPLOYMENT),
            },
            (400, 401, 403, 409, 413, 415, 422, 500),
            auth="deploy",
            body={"application/json": ref("GitDeploy"), "multipart/form-data": zip_form},
            max_body=settings.max_upload_bytes,  # the JSON branch lowers it (web/gitops.py)
        ),
        Endpoint(
            "GET",
            "/api/deployments",
            api.list_deployments,
            "Deployments, newest first",
            {200: ("List", obj(deployments=array(DEPLOYMENT)))},
            (401, 422),
            auth="read",
            query=(Query("slot"), LIMIT),
        ),
        Endpoint(
            "GET",
            "/api/deployments/{id}",
            api.get_deployment,
            "One deployment",
            {200: ("Deployment", DEPLOYMENT)},
            (401, 404),
            auth="read",
        ),
        Endpoint(
            "GET",
            "/api/deployments/{id}/log",
            api.get_deployment_log,
            "A deployment's build log (text, a time per line); ?follow=1 streams it until the deployment ends",
            {200: ("The log as text/plain (empty for a deployment without a build)", None)},
            (401, 404),
            auth="read",
            query=(Query("follow", {"type": "string", "enum": ["0", "1", "true"]}),),
        ),
    ]


def _slots() -> list[Endpoint]:
    event = obj(
        version={"type": ["integer", "null"]},
        action={"type": "string", "enum": ["deploy", "rollback", "offline", "expire", "promote"]},
        created_at={"type": "string", "format": "date-time"},
    )
    files = obj(
        added=STRINGS,
        removed=STRINGS,
        changed=STRINGS,
        unchanged=INTEGER,
        text_diffs={"type": "object", "additionalProperties": STRING},
    )
    ttl = {
        "type": "object",
        "properties": {
            "ttl": {
                "type": ["string", "integer", "null"],
                "description": "seconds, or a number with s/m/h/d/w; null: never",
            },
            "site": SITE,
        },
    }
    return [
        Endpoint(
            "GET",
            "/api/slots",
            api.list_slots,
            "Every slot and its active version",
            {200: ("Slots", obj(slots=array(ref("Slot"))))},
            (401,),
            auth="read",
        ),
        Endpoint(
            "DELETE",
            "/api/slots/{slot}",
            api.delete_slot,
            "Take a slot offline (its history stays); with purge=true and confirm=<the slot>, delete it for good:"
            " offline through the same switch, then its versions, deployments, switches and releases (the"
            " artifact store's gc reclaims files no other version uses; the audit log keeps the deletion)",
            {
                200: (
                    "Offline, or deleted",
                    obj(
                        slot=STRING,
                        status={"type": "string", "enum": ["offline", "expired", "deleted"]},
                        deployments={"type": "integer", "description": "with purge: how many were deleted"},
                    ),
                )
            },
            (401, 404, 409, 422, 500),
            auth="deploy",
            query=(
                Query("purge", {"type": "string", "enum": ["true", "false", "1", "0"]}),
                Query("confirm", description="with purge: the slot's name again"),
            ),
        ),
        Endpoint(
            "PATCH",
            "/api/slots/{slot}",
            api.update_slot,
            "Set a live slot's time to live (from now) and/or its rules (a new config version, same files)",
            {
                200: (
                    "New expiry and/or version",
                    obj(
                        slot=STRING,
                        expires_at={"type": ["string", "null"], "format": "date-time"},
                        active=INTEGER,
                    ),
                )
            },
            (400, 401, 404, 409, 422),
            auth="deploy",
            body=json_body(ttl),
            max_body=JSON_MAX_BYTES,
        ),
        Endpoint(
            "GET",
            "/api/slots/{slot}/events",
            api.list_events,
            "A slot's switches (deploy, rollback, offline, expire, promote), newest first",
            {200: ("Events", obj(slot=STRING, events=array(event)))},
            (401, 404, 422),
            auth="read",
            query=(LIMIT,),
        ),
        Endpoint(
            "GET",
            "/api/slots/{slot}/diff",
            api.diff_versions,
            "What changed between two config versions: the nginx config and the published files",
            {
                200: (
                    "Diff",
                    obj(
                        slot=STRING,
                        a=INTEGER,
                        b=INTEGER,
                        config={"type": "string", "description": "unified diff"},
                        files=files,
                    ),
                )
            },
            (401, 404, 422),
            auth="read",
            query=(Query("a", INTEGER, required=True), Query("b", INTEGER, required=True)),
        ),
        Endpoint(
            "GET",
            "/api/slots/{slot}/versions",
            api.list_versions,
            "A slot's config versions, newest first",
            {200: ("Versions", obj(slot=STRING, active={"type": ["integer", "null"]}, versions=array(VERSION)))},
            (401, 404, 422),
            auth="read",
        ),
        Endpoint(
            "GET",
            "/api/slots/{slot}/versions/{version}",
            api.get_version,
            "One config version with its nginx text",
            {200: ("Version", {"allOf": [VERSION, obj(config=STRING)]})},
            (401, 404, 422),
            auth="read",
        ),
        Endpoint(
            "POST",
            "/api/slots/{slot}/rollback",
            api.rollback,
            "Make a stored config version live again",
            {200: ("Rolled back", obj(slot=STRING, active=INTEGER))},
            (400, 401, 404, 409, 422, 500),
            auth="deploy",
            body=json_body(obj(version={"type": "integer", "minimum": 1})),
            body_required=False,
            max_body=JSON_MAX_BYTES,
        ),
        Endpoint(
            "POST",
            "/api/slots/{slot}/promote",
            api.promote,
            "Make a deployment of the slot live (a draft, or an earlier one), through the same switch as a rollback",
            {200: ("Promoted", obj(slot=STRING, active=INTEGER, deployment_id=INTEGER))},
            (400, 401, 404, 409, 422, 500),
            auth="deploy",
            body=json_body(obj(deployment_id={"type": "integer", "minimum": 1})),
            max_body=JSON_MAX_BYTES,
        ),
        Endpoint(
            "POST",
            "/api/slots/{slot}/versions/{version}/pin",
            uploads.pin_version,
            "Pin or unpin a config version (retention always keeps pinned versions' files)",
            {200: ("Pinned", OBJECT)},
            (400, 401, 404, 422),
            auth="deploy",
            body=json_body(obj(pinned={"type": "boolean"})),
            body_required=False,
            max_body=JSON_MAX_BYTES,
        ),
    ]


def _uploads(settings: Settings) -> list[Endpoint]:
    start = {
        "type": "object",
        "required": ["slot", "files"],
        "properties": {
            "slot": STRING,
            "ttl": {"type": ["string", "integer"], "description": TTL_TEXT},
            "name": {"type": "string", "description": "shown as the source"},
            "site": SITE,
            "files": {"type": "object", "additionalProperties": STRING},
        },
    }
    return [
        Endpoint(
            "POST",
            "/api/uploads",
            uploads.create_upload,
            "Start a digest upload: send path -> sha256, get back the digests the server lacks",
            {201: ("Upload started", obj(upload_id=STRING, missing=STRINGS))},
            (400, 401, 413, 422),
            auth="deploy",
            body=json_body(start),
            max_body=32 * 1024 * 1024,  # the file list of a large site
        ),
        Endpoint(
            "POST",
            "/api/uploads/deploy",
            uploads.deploy_upload,
            "Start a digest upload, send files and deploy in one body: the JSON of POST /api/uploads (plus"
            ' "activate") on the first line, then files framed as in a batch. 202 when the store still lacks'
            " files: send them in batches, then finalize",
            {
                201: ("Live, or a draft", DEPLOYMENT),
                202: ("Files still missing", obj(upload_id=STRING, slot=STRING, files=INTEGER, missing=STRINGS)),
            },
            (400, 401, 409, 413, 422, 500),
            auth="deploy",
            body={"application/octet-stream": {"type": "string", "format": "binary"}},
            max_body=settings.max_upload_bytes,
        ),
        Endpoint(
            "PUT",
            "/api/uploads/{upload_id}/blobs/{digest}",
            uploads.put_blob,
            "Upload the bytes of one file named by its sha256",
            {200: ("Already stored", OBJECT), 201: ("Stored", OBJECT)},
            (401, 404, 409, 413, 422),
            auth="deploy",
            body={"application/octet-stream": {"type": "string", "format": "binary"}},
            max_body=settings.max_unpacked_bytes,
        ),
        Endpoint(
            "GET",
            "/api/uploads/{upload_id}",
            uploads.get_upload,
            "An open digest upload and the digests still missing (resume after a broken connection)",
            {200: ("Upload", obj(upload_id=STRING, slot=STRING, files=INTEGER, missing=STRINGS))},
            (401, 404, 409),
            auth="deploy",
        ),
        Endpoint(
            "POST",
            "/api/uploads/{upload_id}/batch",
            uploads.post_batch,
            "Upload many files in one body: for each, a line '<sha256 hex> <size>' and a newline, then its"
            " bytes. Each file is checked and stored as it arrives; a batch cut short keeps the files it"
            " completed",
            {200: ("Every file of the batch is in the store", obj(blobs=INTEGER, stored=INTEGER, bytes=INTEGER))},
            (400, 401, 404, 409, 413, 422),
            auth="deploy",
            body={"application/octet-stream": {"type": "string", "format": "binary"}},
            max_body=settings.max_upload_bytes,  # per batch; a client sends a large site in several
        ),
        Endpoint(
            "POST",
            "/api/uploads/{upload_id}/finalize",
            uploads.finalize_upload,
            'Deploy a digest upload ({"activate": false}: as a draft, the live site unchanged)',
            {201: ("Live, or a draft", DEPLOYMENT)},
            (400, 401, 404, 409, 422, 500),
            auth="deploy",
            body=json_body(obj(activate={"type": "boolean", "default": True})),
            body_required=False,
            max_body=JSON_MAX_BYTES,
        ),
        Endpoint(
            "POST",
            "/api/gc",
            uploads.collect_garbage,
            "Apply retention and remove files nothing needs (dry_run only reports)",
            {200: ("Report", OBJECT)},
            (400, 401, 422),
            auth="admin",
            body=json_body(obj(dry_run={"type": "boolean"})),
            body_required=False,
            max_body=JSON_MAX_BYTES,
        ),
    ]


def _gitops(settings: Settings) -> list[Endpoint]:
    """Webhooks, deploy.yaml reload and plan, the post-receive hook, and git's smart HTTP."""
    queued = obj(queued=INTEGERS, removed=STRINGS, ignored=STRING, refused=STRINGS)
    git_summary = (
        "git's smart HTTP protocol for `repo: hosted:NAME` sites (basic auth, password = API token);"
        " only info/refs, git-upload-pack and git-receive-pack"
    )
    git_answers: dict[int, tuple[str, Schema | None]] = {
        200: ("git protocol data", None),
        401: ("Missing or wrong password (text/plain)", None),
        404: ("NAME is not declared in deploy.yaml (text/plain, shown by git)", None),
    }
    return [
        Endpoint(
            "POST",
            "/api/webhooks/{provider}",
            gitops.webhook,
            "A push (branches, tags) or pull-request webhook, verified over the raw body (GitHub"
            " X-Hub-Signature-256, Gitea X-Gitea-Signature, Bitbucket X-Hub-Signature, GitLab X-Gitlab-Token,"
            " generic X-Signature: sha256=<hex>)",
            {
                200: ("Ping or test event", OBJECT),
                202: (
                    "Queued deployments, removed preview slots, why the delivery was ignored, or why a pull"
                    " request was refused (a fork)",
                    queued,
                ),
            },
            (400, 401, 403, 404, 409, 413),
            auth="webhook",  # each webhook is verified by its signature instead
            body=json_body(OBJECT),
            max_body=settings.webhook_max_bytes,
        ),
        Endpoint(
            "POST",
            "/api/reload",
            gitops.reload,
            "Read deploy.yaml again and apply it (an invalid file changes nothing)",
            {200: ("Applied", obj(changes=CHANGES, queued=INTEGERS, errors=STRINGS))},
            (401, 422),
            auth="admin",
            max_body=JSON_MAX_BYTES,
        ),
        Endpoint(
            "POST",
            "/api/plan",
            gitops.plan,
            "What applying the deploy.yaml in the body would change against what is live",
            {200: ("Plan", obj(changes=CHANGES, text=STRING))},
            (401, 413, 422),
            auth="read",
            body={"application/yaml": STRING},
            max_body=manifest.MAX_BYTES,
        ),
        Endpoint(
            "POST",
            "/api/git/hook",
            gitops.git_hook,
            "Called by the hooks of a hosted repository (stage: paths, pre-receive, result, post-receive):"
            " deploy the pushed commits before the branches move, report, accept or refuse the push",
            {
                200: (
                    "One line per deploy, printed by git push",
                    obj(messages=STRINGS, deployments=INTEGERS, accepted=BOOLEAN, paths={"type": "object"}),
                )
            },
            (400, 401, 422),
            auth="admin",
            max_body=1024 * 1024,
        ),
        *(
            Endpoint(
                method,
                "/git/{name}.git/{rest:path}",
                gitops.git_http,
                git_summary,
                git_answers,
                auth="basic",
                max_body=settings.max_upload_bytes,
            )
            for method in ("GET", "POST")
        ),
    ]


def _team() -> list[Endpoint]:
    """Users, API tokens, the audit log and deploy locks."""
    user = obj(name=STRING, role=STRING, slots=STRINGS, created_at=STRING)
    token = obj(
        id=INTEGER,
        user=STRING,
        name=STRING,
        scopes=STRINGS,
        expires_at={"type": ["string", "null"]},
        last_used_at={"type": ["string", "null"]},
        revoked_at={"type": ["string", "null"]},
    )
    lock = obj(slot=STRING, locked=BOOLEAN, reason=STRING, locked_by=STRING)
    return [
        Endpoint(
            "POST",
            "/api/users",
            team.create_user,
            "Add a user: role admin, deployer (with slot patterns like docs-*) or viewer",
            {201: ("The user", user)},
            (401, 403, 409, 422),
            auth="admin",
            body=json_body(obj(name=STRING, role=STRING, slots=STRINGS, password=STRING)),
            max_body=JSON_MAX_BYTES,
        ),
        Endpoint(
            "GET",
            "/api/users",
            team.list_users,
            "Every user",
            {200: ("Users", obj(users=array(user)))},
            (401, 403),
            auth="admin",
        ),
        Endpoint(
            "GET",
            "/api/whoami",
            team.whoami,
            "Who the caller is: user, role, the scopes in force (a token's, cut to its user's rights) and how"
            " the caller was recognised",
            {
                200: (
                    "The caller",
                    obj(
                        user=STRING,
                        role=STRING,
                        scopes=STRINGS,
                        token_id={"type": ["integer", "null"]},
                        via={"type": "string", "enum": ["bootstrap token", "token", "session"]},
                    ),
                )
            },
            (401,),
            auth="read",
        ),
        Endpoint(
            "DELETE",
            "/api/users/{name}",
            team.delete_user,
            "Remove a user and their tokens",
            {200: ("Removed", OBJECT)},
            (401, 403, 404, 422),
            auth="admin",
        ),
        Endpoint(
            "POST",
            "/api/tokens",
            team.create_token,
            "Make an API token (shown once) with scopes no wider than its user's: read, deploy:<slot pattern>, admin",
            {201: ("The token, shown only now", {"allOf": [token, obj(token=STRING)]})},
            (401, 403, 404, 422),
            auth="read",
            body=json_body(obj(name=STRING, scopes=STRINGS, expires=STRING, user=STRING)),
            max_body=JSON_MAX_BYTES,
        ),
        Endpoint(
            "GET",
            "/api/tokens",
            team.list_tokens,
            "Your tokens (an admin's: everyone's), with their last use",
            {200: ("Tokens", obj(tokens=array(token)))},
            (401,),
            auth="read",
        ),
        Endpoint(
            "DELETE",
            "/api/tokens/{id}",
            team.revoke_token,
            "Revoke a token at once",
            {200: ("Revoked", token)},
            (401, 404),
            auth="read",
        ),
        Endpoint(
            "GET",
            "/api/audit",
            team.list_audit,
            "The audit log, newest first",
            {200: ("Entries", obj(entries=array(OBJECT)))},
            (401, 422),
            auth="read",
            query=(Query("actor"), Query("action"), Query("target"), Query("since"), LIMIT),
        ),
        Endpoint(
            "POST",
            "/api/slots/{slot}/lock",
            team.lock_slot,
            "Lock a slot: pushes are still built, nothing new goes live until it is unlocked",
            {200: ("Locked", lock)},
            (401, 403, 422),
            auth="deploy",
            body=json_body(obj(reason=STRING)),
            body_required=False,
            max_body=JSON_MAX_BYTES,
        ),
        Endpoint(
            "POST",
            "/api/slots/{slot}/unlock",
            team.unlock_slot,
            "Unlock a slot",
            {200: ("Unlocked", lock)},
            (401, 403, 422),
            auth="deploy",
            max_body=JSON_MAX_BYTES,
        ),
    ]


def _outbox() -> list[Endpoint]:
    """Commit statuses and notifications: what was sent, what is retried, what failed (issue 17)."""
    delivery = obj(
        id=INTEGER,
        idempotency_key=STRING,
        kind={"type": "string", "enum": ["status", "notification"]},
        target={"type": "string", "description": "github, gitlab, gitea, bitbucket; or json, slack, matrix, teams"},
        host={"type": "string", "description": "the destination's host (never its path, which may be a secret)"},
        event=STRING,
        slot=STRING,
        deployment_id={"type": ["integer", "null"]},
        state={"type": "string", "enum": ["pending", "sent", "failed"]},
        attempts=INTEGER,
        last_error={"type": ["string", "null"]},
        response_status={"type": ["integer", "null"]},
        next_attempt_at={"type": ["string", "null"]},
        created_at=STRING,
        sent_at={"type": ["string", "null"]},
    )
    return [
        Endpoint(
            "GET",
            "/api/outbox",
            deliveries.list_outbox,
            "Outgoing calls (commit statuses, notifications), newest first: sent, pending with their next attempt,"
            " or failed with the reason",
            {200: ("Deliveries", obj(deliveries=array(delivery)))},
            (401, 422),
            auth="read",
            query=(Query("state", {"type": "string", "enum": ["pending", "sent", "failed"]}), Query("slot"), LIMIT),
        ),
    ]
