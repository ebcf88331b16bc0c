"""HTTP handlers for GitOps: webhooks, reload, plan, repo-URL deploys, and git push over smart HTTP."""

from __future__ import annotations

import base64
import binascii
import tempfile
from typing import IO, Any

from starlette.background import BackgroundTask
from starlette.concurrency import iterate_in_threadpool, run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse

from drophost import access
from drophost.access import Principal
from drophost.errors import ConflictError, ManifestError, ValidationError
from drophost.gitops import manifest
from drophost.gitops.controller import GitOps
from drophost.gitops.declared import config_lines
from drophost.gitops.hosted import SERVICES, SMART_PATHS
from drophost.gitops.intake import push_timeouts
from drophost.gitops.manifest import BRANCH_FIELD, SiteSpec
from drophost.names import validate_slot
from drophost.settings import Settings
from drophost.web import views
from drophost.web.auth import (
    authorize_slot,
    limit_signin,
    principal_for_token,
    principal_of,
    record,
    signin_failed,
)
from drophost.web.bodylimit import JSON_MAX_BYTES, lower_body_limit
from drophost.web.common import deployer_of, pool_of, read_json, settings_of


def gitops_of(request: Request) -> GitOps:
    gitops: GitOps = request.app.state.gitops
    return gitops


def refuse_drift(request: Request, slot: str, force: bool) -> None:
    """An upload to a slot deploy.yaml deploys from git: 409 naming the repository, unless forced."""
    repo = gitops_of(request).managing_repo(slot)
    if repo is not None and not force:
        raise ConflictError(
            f'slot "{slot}" is deployed from {repo} by deploy.yaml; push there, or force the upload'
            " (drophost deploy --force; it then shows as drift in drophost plan)",
            repository=repo,
        )


# -- webhooks ----------------------------------------------------------------------------------
async def webhook(request: Request) -> Response:
    """A push webhook from GitHub, GitLab, Gitea/Forgejo/Gogs, Bitbucket or a generic sender."""
    provider = request.path_params["provider"]
    body = await request.body()
    status, answer = await run_in_threadpool(gitops_of(request).webhook, provider, request.headers, body)
    return JSONResponse(answer, status_code=status)


# -- declared state ----------------------------------------------------------------------------
async def reload(request: Request) -> Response:
    """Read deploy.yaml again and apply it; an invalid file changes nothing (422)."""
    result = await run_in_threadpool(gitops_of(request).reload)
    return JSONResponse(result)


async def plan(request: Request) -> Response:
    """What applying the deploy.yaml in the body would change against what is live.

    Both answers carry `config`: whether the service's own deploy.yaml is invalid and which one is in force.
    """
    body = await request.body()
    gitops = gitops_of(request)
    config = gitops.config_status()
    try:
        declared = await run_in_threadpool(manifest.parse, body, _file_name(request))
    except ManifestError as exc:
        return JSONResponse({**exc.to_json(), "config": config}, status_code=exc.status_code)
    result = await run_in_threadpool(gitops.current_plan, declared)
    text = result.render() + "".join(f"\n{line}" for line in config_lines(config))
    return JSONResponse({"changes": result.to_json(), "text": text, "config": config})


def _file_name(request: Request) -> str:
    """The name errors give the file: printable, short (it is echoed in the answer)."""
    name = request.query_params.get("file", "deploy.yaml")[:100]
    return name if name.isprintable() and name.strip() else "deploy.yaml"


async def create_git_deployment(request: Request) -> Response:
    """POST /api/deployments with JSON {repo, branch, path, slot}: 202 and the queued deployment."""
    lower_body_limit(request, JSON_MAX_BYTES)  # the route's own cap is for ZIP uploads
    body = await read_json(request)
    if isinstance(body.get("slot"), str):
        authorize_slot(request, validate_slot(body["slot"]))
    gitops = gitops_of(request)
    deployment_id = await run_in_threadpool(gitops.deploy_from_api, body, principal_of(request).actor)
    row = await run_in_threadpool(deployer_of(request).deployment, deployment_id)
    return JSONResponse(views.deployment(settings_of(request), row), status_code=202)


# -- git push ----------------------------------------------------------------------------------
async def git_hook(request: Request) -> Response:
    """Called by a hosted repository's hooks. paths: the folder of each pushed branch the tree caps
    apply to; pre-receive: queue a draft of each pushed commit (the hook then follows their logs);
    result: wait for them, report each, accept or refuse the push; post-receive: make the drafts of
    the refs git moved live, take deleted branches' previews offline. Without a stage (a hook
    installed before pre-receive deployed): queue the pushed branches, wait, report."""
    body = await read_json(request)
    name = body.get("repository")
    updates = body.get("updates")
    pusher = body.get("pusher")
    stage = body.get("stage")
    gitops = gitops_of(request)
    settings = settings_of(request)
    if stage == "result":
        ids = body.get("deployments")
        if not isinstance(ids, list) or not all(isinstance(i, int) and not isinstance(i, bool) for i in ids):
            raise ValidationError("the hook must send the deployments of its push")
        rows = await run_in_threadpool(gitops.settle_push, ids[:100])
        accepted = all(row["state"] in ("ready", "unchanged") for row in rows)
        # The hook has printed each build's log already: an error's log tail is not repeated.
        messages = _outcome_lines(
            settings, [{**row, "error": (row["error"] or "").split("\n")[0]} for row in rows], held=True
        )
        if not ids:
            messages.append("DropHost: no site in deploy.yaml deploys the pushed branch(es)")
        elif not accepted:
            messages.append("DropHost: the push was refused, so its branch did not move; what was live stays live")
        return JSONResponse({"messages": messages, "accepted": accepted})
    if not isinstance(name, str) or not isinstance(updates, list):
        raise ValidationError("the hook must send repository and updates")
    refs = [tuple(u) for u in updates if isinstance(u, list) and len(u) == 3 and all(isinstance(x, str) for x in u)]
    who = pusher[:100] if isinstance(pusher, str) else None
    if stage == "paths":
        return JSONResponse({"paths": await run_in_threadpool(gitops.hosted_paths, name, refs)})
    if stage == "pre-receive":
        queued = await run_in_threadpool(gitops.hosted_pre_receive, name, refs, who, body.get("quarantine"))
        return JSONResponse({"deployments": queued})
    if stage == "post-receive":
        return JSONResponse({"messages": await run_in_threadpool(gitops.hosted_post_receive, name, refs, who)})
    queued = await run_in_threadpool(gitops.hosted_push, name, refs, who)
    rows = await run_in_threadpool(gitops.wait_for, queued, settings.git_timeout)
    messages = _outcome_lines(settings, rows)
    if not queued:
        messages.append("DropHost: no site in deploy.yaml deploys the pushed branch(es)")
    return JSONResponse({"messages": messages, "deployments": queued})


def _outcome_lines(settings: Settings, rows: list[dict[str, Any]], *, held: bool = False) -> list[str]:
    """`held`: pre-receive's drafts, which post-receive makes live once git moved their branch."""
    messages = []
    for row in rows:
        # The path form: a push often comes from a machine whose resolver knows no *.localhost name.
        url = views.slot_path_url(settings, row["slot"])
        if row["state"] == "ready" and held:
            ready = f"DropHost: {row['slot']} version {row['version']} is ready (deployment {row['id']})"
            messages.append(f"{ready}: live once git moves the ref")
        elif row["state"] == "ready" and row["error"]:
            messages.append(f"DropHost: {row['slot']} was not made live: {row['error']}")  # a locked slot's draft
        elif row["state"] == "ready":
            messages.append(f"live at {url} (version {row['version']})")
        elif row["state"] == "unchanged":
            messages.append(f"DropHost: {row['slot']} unchanged: {url} serves this already (no new version)")
        elif row["state"] == "failed":
            messages.append(f"DropHost: deploy of {row['slot']} failed: {row['error']}")
        else:
            messages.append(f"DropHost: deploy of {row['slot']} is still {row['state']} (deployment {row['id']})")
    return messages


async def git_http(request: Request) -> Response:
    """git's smart HTTP protocol for hosted repositories: basic auth, password = the API token."""
    settings = settings_of(request)
    gitops = gitops_of(request)
    name = request.path_params["name"]
    rest = request.path_params["rest"]
    user, password = _basic_credentials(request)
    await run_in_threadpool(limit_signin, request, user)
    principal = await run_in_threadpool(principal_for_token, pool_of(request), settings, password) if password else None
    if principal is None:
        if password:
            await run_in_threadpool(signin_failed, request, user, "wrong git password")
        return PlainTextResponse(
            "DropHost: sign in with your user name and one of your API tokens as the password\n",
            status_code=401,
            headers={"WWW-Authenticate": 'Basic realm="DropHost git"'},
        )
    if name not in gitops.manifest.hosted_names():
        return PlainTextResponse(
            f'DropHost: no site in deploy.yaml uses "hosted:{name[:60]}"; declare it there to push to it\n',
            status_code=404,
        )
    service = request.query_params.get("service", "")
    if (request.method, rest) not in SMART_PATHS or (rest == "info/refs" and service not in SERVICES):
        return PlainTextResponse("DropHost: only git's smart HTTP protocol is served here\n", status_code=404)
    pushing = rest == "git-receive-pack" or service == "git-receive-pack"
    sites = [site for site in gitops.manifest.sites if site.repo.hosted_name == name]
    if not _may_use(principal, sites, pushing):
        request.state.principal = principal
        await run_in_threadpool(record, request, "git_push" if pushing else "git_fetch", "403", target=f"hosted:{name}")
        wanted = "deploy rights on every slot it deploys" if pushing else "read rights"
        return PlainTextResponse(f"DropHost: {principal.user} may not use this repository: it needs {wanted}\n", 403)
    spool = await _spool_body(request)
    token = settings.api_token
    _, push_wait = push_timeouts(settings)
    # pre-receive waits for the push's deploy (a build can take minutes): so do the hook and git.
    hook_env = {"DROPHOST_HOOK_TOKEN": token, "DROPHOST_HOOK_TIMEOUT": str(push_wait + 30)}
    if settings.service_socket.startswith("/"):
        hook_env["DROPHOST_HOOK_SOCKET"] = settings.service_socket
    else:
        # Through nginx; where nginx runs elsewhere (Docker Compose), straight to the service's address.
        hook_env["DROPHOST_HOOK_HOST"] = settings.service_socket or settings.local_api_address
    env = gitops.hosted.cgi_environment(
        name=name,
        rest=rest,
        method=request.method,
        query=request.url.query,
        headers=request.headers,
        user=principal.user,  # the pusher recorded: the token's owner, not what was typed into the URL
        hook_env=hook_env,
    )
    timeout = settings.git_timeout + (push_wait + 60 if pushing else 0)
    result = await run_in_threadpool(gitops.hosted.run_backend, env, spool, timeout)
    return StreamingResponse(
        iterate_in_threadpool(result.body),
        status_code=result.status,
        headers={k: v for k, v in result.headers.items() if k.lower() not in ("content-length",)},
        background=BackgroundTask(spool.close),
    )


def _basic_credentials(request: Request) -> tuple[str | None, str]:
    scheme, _, value = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "basic":
        return None, ""
    try:
        decoded = base64.b64decode(value.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None, ""
    user, _, password = decoded.partition(":")
    return user[:64] or None, password


def _may_use(principal: Principal, sites: list[SiteSpec], pushing: bool) -> bool:
    """Fetching needs read; pushing needs deploy on each slot the repository deploys (for previews,
    on every slot the template can make: "docs-{branch}" needs deploy:docs-*)."""
    if not pushing:
        return access.permits(principal.scopes, "read")
    for site in sites:
        if site.is_preview:
            pattern = site.slot.split(BRANCH_FIELD, 1)[0] + "*"
            if not access.scope_within(f"deploy:{pattern}", principal.scopes):
                return False
        elif not access.permits(principal.scopes, "deploy", site.slot):
            return False
    return True


async def _spool_body(request: Request) -> IO[bytes]:
    """The request body in an unnamed temporary file (git http-backend reads it as stdin)."""
    spool = tempfile.TemporaryFile()
    try:
        async for chunk in request.stream():
            spool.write(chunk)
    except BaseException:
        spool.close()
        raise
    spool.seek(0)
    return spool
