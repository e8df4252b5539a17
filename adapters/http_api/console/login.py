"""Logging in with an admin token, and out.

Only an admin token opens the console (`check_admin_token` against the admin
tokens file, as the /v1 API checks it); an agency's token, however valid, does
not. The token is read from a POSTed form, checked, and forgotten: the browser
keeps only the new session's id.
"""

from __future__ import annotations

import time

import structlog
from aiohttp import web

from adapters.http_api.access import ACCESS
from adapters.http_api.console.guard import (
    clear_session_cookie,
    refused,
    safe_next,
    see_other,
    set_session_cookie,
)
from adapters.http_api.console.keys import SESSION, SESSIONS
from adapters.http_api.console.render import render
from broker.directory.auth import check_admin_token

log = structlog.get_logger(__name__)


async def login_form(request: web.Request) -> web.StreamResponse:
    """The form, with a CSRF token of a session made for it when there is none."""
    session = request.get(SESSION)
    if session is not None and session.admin:
        return see_other(safe_next(request.query.get("next")))
    fresh = session is None
    if fresh:
        session = request.app[SESSIONS].start(time.time())
        request[SESSION] = session
    response = render(
        request,
        "login.html",
        {"next": safe_next(request.query.get("next")), "failed": False},
    )
    if fresh:
        set_session_cookie(request, response, session)
    return response


async def login(request: web.Request) -> web.StreamResponse:
    """The guard has checked the form's CSRF token against the login form's session."""
    form = await request.post()
    token = form.get("token")
    admin_hashes = request.config_dict[ACCESS].admin_hashes.get()
    principal = check_admin_token(token.strip(), admin_hashes) if isinstance(token, str) else None
    anonymous = request[SESSION]
    next_page = safe_next(form.get("next") if isinstance(form.get("next"), str) else None)
    if principal is None or not principal.admin:
        refused(request, "unauthenticated")
        return render(request, "login.html", {"next": next_page, "failed": True}, status=401)
    session = request.app[SESSIONS].login(anonymous, time.time(), label="admin")
    log.info("console: administrator logged in", remote=request.remote)
    response = see_other(next_page)
    set_session_cookie(request, response, session)
    return response


async def logout(request: web.Request) -> web.StreamResponse:
    request.app[SESSIONS].end(request[SESSION].id)
    log.info("console: administrator logged out", remote=request.remote)
    response = see_other("/console/login")
    clear_session_cookie(request, response)
    return response
