"""The dashboard: server-rendered pages behind a session cookie; JavaScript only where it helps."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from importlib import resources
from typing import Any
from urllib.parse import quote

import jinja2
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from drophost import access
from drophost.errors import DrophostError, InvalidSlotError, NotFoundError, TooManyRequestsError, ValidationError
from drophost.names import parse_ttl, slot_from_filename, validate_slot
from drophost.pipeline.buildlog import read_log
from drophost.store import slots, users
from drophost.text import format_bytes
from drophost.web import analytics, auth, charts, pagedata, sessions, views
from drophost.web.api import get_deployment_log
from drophost.web.common import deployer_of, pool_of, settings_of
from drophost.web.gitops import gitops_of

Page = Callable[[Request], Awaitable[Response]]
_STATIC = {
    "dashboard.js": "text/javascript",
    "dashboard.css": "text/css",
    "zip.js": "text/javascript",
    "buildlog.js": "text/javascript",
    "favicon.svg": "image/svg+xml",
}
_SECURITY_HEADERS = {
    # No inline script, nothing from elsewhere, never framed (a tenant site cannot overlay it).
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
    ),
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}

templates = jinja2.Environment(
    loader=jinja2.PackageLoader("drophost.web", "templates"),
    autoescape=True,
    undefined=jinja2.StrictUndefined,
)
templates.globals.update(iso=views.iso, utc_label=views.utc_label)


def routes() -> list[BaseRoute]:
    return [
        Route("/", overview, methods=["GET"]),
        Route("/ui/overview", overview_part, methods=["GET"]),
        Route("/deploy", deploy_page, methods=["GET"]),
        Route("/ui/deploy-target", deploy_target, methods=["GET"]),
        Route("/slots/{slot}", slot_page, methods=["GET"]),
        Route("/ui/slots/{slot}", slot_part, methods=["GET"]),
        Route("/deployments/{id}", deployment_page, methods=["GET"]),
        Route("/ui/deployments/{id}/log", deployment_log, methods=["GET"]),
        Route("/slots/{slot}/rollback", rollback, methods=["POST"]),
        Route("/slots/{slot}/promote", promote, methods=["POST"]),
        Route("/slots/{slot}/ttl", set_ttl, methods=["POST"]),
        Route("/slots/{slot}/offline", take_offline, methods=["POST"]),
        Route("/slots/{slot}/delete", delete_slot, methods=["POST"]),
        Route("/analytics", analytics_page, methods=["GET"]),
        Route("/signin", signin_page, methods=["GET"]),
        Route("/signin", signin, methods=["POST"]),
        Route("/signout", signout, methods=["POST"]),
        Route("/static/{name}", static, methods=["GET"]),
    ]


def render(request: Request, name: str, status_code: int = 200, **context: Any) -> HTMLResponse:
    session = sessions.current(request)
    text = templates.get_template(name).render(
        csrf=session.csrf if session else "",
        signed_in=session is not None,
        admin=getattr(request.state, "admin", False),
        path=request.url.path,
        sites_url=settings_of(request).site_base_url,
        **context,
    )
    return HTMLResponse(text, status_code=status_code, headers=_SECURITY_HEADERS)


def signed_in(page: Page) -> Page:
    """Pages need a session (else: to the sign-in page); posts also need the CSRF token."""

    async def guarded(request: Request) -> Response:
        session = sessions.current(request)
        if session is None:
            if request.method != "GET" or request.url.path.startswith("/ui/"):
                return render(request, "signin.html", 401, error="Your session has ended; sign in again.", next="/")
            return RedirectResponse(f"/signin?next={quote(request.url.path)}", status_code=303)
        if request.method == "POST":
            async with request.form(max_files=0, max_fields=8, max_part_size=4096) as form:
                given = form.get("csrf")
                fields = {k: v for k, v in form.items() if isinstance(v, str)}
            if not isinstance(given, str) or not sessions.csrf_ok(request, session, given):
                return render(request, "error.html", 403, message="The form expired or came from another site.")
            request.state.form = fields
        principal = await run_in_threadpool(auth.principal_for_session, pool_of(request), session)
        request.state.admin = principal is not None and "admin" in principal.scopes  # the Users link
        return await page(request)

    guarded.__name__ = page.__name__
    return guarded


# -- sign in and out ---------------------------------------------------------------------------
async def signin_page(request: Request) -> Response:
    return render(request, "signin.html", error="", next=_local_path(request.query_params.get("next")))


async def signin(request: Request) -> Response:
    """A user name and password, or (no name) the bootstrap token; rate-limited per address and name."""
    async with request.form(max_files=0, max_fields=5, max_part_size=4096) as form:
        token = form.get("token")
        name = form.get("name")
        password = form.get("password")
        target = _local_path(str(form.get("next") or "/"))
    settings = settings_of(request)
    user = name.strip() if isinstance(name, str) and name.strip() else None
    try:
        await run_in_threadpool(auth.limit_signin, request, user)
    except TooManyRequestsError as exc:
        return render(request, "signin.html", 429, error=exc.message[0].upper() + exc.message[1:] + ".", next=target)
    if user is not None:
        good = isinstance(password, str) and await run_in_threadpool(_password_ok, request, user, password)
        wrong = "That user name and password do not match."
    else:
        secret = token if isinstance(token, str) else password if isinstance(password, str) else ""
        good = access.same_secret(secret.strip(), settings.api_token)
        wrong = "That is not the API token."
    if not good or not sessions.same_origin(request):
        await run_in_threadpool(auth.signin_failed, request, user, "wrong password" if user else "wrong token")
        return render(request, "signin.html", 401, error=wrong, next=target)
    response = RedirectResponse(target, status_code=303)
    session = sessions.new_session(settings.session_max_age, user or "")
    sessions.set_cookie(request, response, session, settings.session_max_age)
    return response


def _password_ok(request: Request, name: str, password: str) -> bool:
    with pool_of(request).connection() as conn:
        row = users.get_user(conn, name)
    # scrypt runs for an unknown name too, so the answer's time does not tell which names exist.
    return access.verify_password(password, row["password_hash"] if row else None)


@signed_in
async def signout(request: Request) -> Response:
    response = RedirectResponse("/signin", status_code=303)
    sessions.clear_cookie(response)
    return response


# -- slots and deployments -------------------------------------------------------------------------
@signed_in
async def overview(request: Request) -> Response:
    return render(request, "overview.html", **await run_in_threadpool(pagedata.overview, request))


@signed_in
async def overview_part(request: Request) -> Response:
    return render(request, "_overview.html", **await run_in_threadpool(pagedata.overview, request))


@signed_in
async def deploy_page(request: Request) -> Response:
    settings = settings_of(request)
    return render(request, "deploy.html", max_upload_bytes=settings.max_upload_bytes)


@signed_in
async def deploy_target(request: Request) -> Response:
    """Before an upload starts: the slot it would go to (checked, as the API will), its TTL checked,
    and what is live there now, so the page can ask before replacing it."""
    settings = settings_of(request)
    raw = request.query_params.get("slot", "").strip()
    try:
        slot = validate_slot(raw) if raw else slot_from_filename(request.query_params.get("name", ""))
        parse_ttl(request.query_params.get("ttl", "").strip(), maximum=settings.max_ttl_seconds)
    except DrophostError as exc:
        return JSONResponse(exc.to_json(), status_code=exc.status_code, headers=_SECURITY_HEADERS)
    return JSONResponse(
        {"slot": slot, "live": await run_in_threadpool(pagedata.live_there, request, slot)}, headers=_SECURITY_HEADERS
    )


@signed_in
async def slot_page(request: Request) -> Response:
    try:
        context = await run_in_threadpool(pagedata.slot, request)
    except (NotFoundError, InvalidSlotError) as exc:
        return render(request, "error.html", exc.status_code, message=exc.message)
    notice = {
        "rolled-back": "Rolled back.",
        "promoted": "Promoted: it is live.",
        "ttl": "Time to live set.",
        "offline": "Taken offline.",
    }
    context["notice"] = notice.get(request.query_params.get("done", ""), "")
    return render(request, "slot.html", **context)


@signed_in
async def slot_part(request: Request) -> Response:
    try:
        context = await run_in_threadpool(pagedata.slot, request, False)
    except (NotFoundError, InvalidSlotError) as exc:
        return render(request, "error.html", exc.status_code, message=exc.message)
    return render(request, "_slot_status.html", **context)


@signed_in
async def rollback(request: Request) -> Response:
    slot = validate_slot(request.path_params["slot"])
    raw = request.state.form.get("version", "")
    version = int(raw) if raw.isascii() and raw.isdigit() and 0 < int(raw) < 2**31 else None
    response = await _act(request, slot, "rolled-back", deployer_of(request).rollback, slot, version)
    principal = getattr(request.state, "principal", None)
    if response.status_code == 303 and principal is not None:
        await run_in_threadpool(_lock_if_git_managed, request, slot, principal.actor)
    return response


def _lock_if_git_managed(request: Request, slot: str, actor: str) -> None:
    with pool_of(request).connection() as conn:
        current = slots.get_slot(conn, slot)
    if current is not None and current["active_version"] is not None:
        gitops_of(request).lock_after_rollback(slot, current["active_version"], actor)


@signed_in
async def promote(request: Request) -> Response:
    slot = validate_slot(request.path_params["slot"])
    raw = request.state.form.get("deployment_id", "")
    if not (raw.isascii() and raw.isdigit() and 0 < int(raw) < 2**63):
        return await _failed(request, slot, ValidationError("deployment_id must be a positive integer"))
    return await _act(request, slot, "promoted", deployer_of(request).promote, slot, int(raw))


@signed_in
async def set_ttl(request: Request) -> Response:
    slot = validate_slot(request.path_params["slot"])
    try:
        ttl = parse_ttl(request.state.form.get("ttl", ""), maximum=settings_of(request).max_ttl_seconds)
    except DrophostError as exc:
        return await _failed(request, slot, exc)
    return await _act(request, slot, "ttl", deployer_of(request).set_ttl, slot, ttl)


@signed_in
async def take_offline(request: Request) -> Response:
    slot = validate_slot(request.path_params["slot"])
    return await _act(request, slot, "offline", deployer_of(request).take_offline, slot)


@signed_in
async def delete_slot(request: Request) -> Response:
    """Delete for good: the form must repeat the slot's name (typed, so it works without JavaScript too)."""
    slot = validate_slot(request.path_params["slot"])
    if request.state.form.get("confirm", "") != slot:
        refused = ValidationError(f'type the slot\'s name, "{slot}", to delete it for good', field="confirm")
        return await _failed(request, slot, refused)
    return await _act(request, slot, "delete", deployer_of(request).delete_slot, slot, redirect="/")


async def _act(
    request: Request, slot: str, done: str, action: Callable[..., Any], *args: Any, redirect: str | None = None
) -> Response:
    """A change made from the dashboard: the signed-in user needs deploy rights on the slot; audited."""
    session = sessions.current(request)
    assert session is not None  # signed_in let the request through
    principal = await run_in_threadpool(auth.principal_for_session, pool_of(request), session)
    request.state.principal = principal
    request.state.audit_target = slot
    name = f"dashboard_{done.replace('-', '_')}"
    if principal is None or not access.permits(principal.scopes, "deploy", slot):
        await run_in_threadpool(auth.record, request, name, "403 no deploy right")
        return render(request, "error.html", 403, message=f'You have no deploy right on slot "{slot}".')
    try:
        await run_in_threadpool(action, *args)
    except DrophostError as exc:
        await run_in_threadpool(auth.record, request, name, f"{exc.status_code} {exc.message}")
        if exc.status_code >= 500 or isinstance(exc, NotFoundError):
            raise
        return await _failed(request, slot, exc)
    await run_in_threadpool(auth.record, request, name, "303")
    return RedirectResponse(redirect or f"/slots/{slot}?done={done}", status_code=303)


async def _failed(request: Request, slot: str, exc: DrophostError) -> Response:
    context = await run_in_threadpool(pagedata.slot, request, False)
    context.update(error=exc.message, notice="")
    return render(request, "slot.html", exc.status_code, **context)


# -- analytics -------------------------------------------------------------------------------------
@signed_in
async def analytics_page(request: Request) -> Response:
    params = {k: request.query_params[k] for k in ("slot", "from", "to") if request.query_params.get(k)}
    try:
        report = await run_in_threadpool(analytics.build_page_report, request, params)
    except DrophostError as exc:
        if exc.status_code not in (404, 422):
            raise
        message = exc.message[0].upper() + exc.message[1:] + "."
        return render(
            request, "analytics.html", exc.status_code, error=message, report=None, params=params, charts=None
        )
    drawn = {
        "visitors": charts.daily_lines(report, "visitors_per_day", "visitors"),
        "requests": charts.daily_bars(report, "requests"),
        "bytes": charts.daily_bars(report, "bytes"),
        "errors": charts.daily_errors(report),
    }
    return render(
        request,
        "analytics.html",
        error="",
        report=report,
        params=params,
        charts=drawn,
        shown_from=report["from"][:10],
        shown_to=_day_before(report["to"]),
        size=format_bytes,
    )


def _day_before(moment: str) -> str:
    parsed = datetime.fromisoformat(moment)
    if parsed.hour == parsed.minute == parsed.second == 0:
        parsed = parsed.fromordinal(parsed.toordinal() - 1).replace(tzinfo=UTC)
    return parsed.date().isoformat()


# -- a deployment and its build log ---------------------------------------------------------------
@signed_in
async def deployment_page(request: Request) -> Response:
    """One deployment and its build log, followed live (static/buildlog.js) while it is queued or building."""
    raw = request.path_params["id"]
    if not (raw.isascii() and raw.isdigit() and 0 < int(raw) < 2**63):
        return render(request, "error.html", 404, message="there is nothing at this address")
    settings = settings_of(request)
    try:
        row = await run_in_threadpool(deployer_of(request).deployment, int(raw))
    except NotFoundError as exc:
        return render(request, "error.html", exc.status_code, message=exc.message)
    running = row["state"] in ("queued", "building")
    # While it runs the script streams the log from its start, so the page holds none of it yet.
    log = b"" if running else await run_in_threadpool(read_log, settings.builds_dir, int(raw))
    return render(
        request,
        "deployment.html",
        d=views.deployment(settings, row),
        running=running,
        log=log.decode("utf-8", "replace"),
    )


@signed_in
async def deployment_log(request: Request) -> Response:
    """The build log for the deployment page: GET /api/deployments/{id}/log's answer, to a session."""
    return await get_deployment_log(request)


# -- static files ----------------------------------------------------------------------------------
async def static(request: Request) -> Response:
    name = request.path_params["name"]
    if name not in _STATIC:
        raise NotFoundError("there is nothing at this address")
    body = resources.files("drophost.web").joinpath("static", name).read_bytes()
    return Response(
        body,
        media_type=_STATIC[name],
        headers={"Cache-Control": "no-cache", "X-Content-Type-Options": "nosniff"},
    )


def _local_path(target: str | None) -> str:
    """Only a path on this site (never //elsewhere or a URL) is a place to return to."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/"
    return target


__all__ = ["routes"]
