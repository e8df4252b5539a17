"""What every console request goes through: the session, the CSRF check, the
security headers, and errors as pages.

- Every response (pages, redirects, errors, the style sheet, downloads) carries a
  strict Content-Security-Policy (no script at all, styles and images from the
  console only, no framing), nosniff, no referrer and no caching; over HTTPS,
  Strict-Transport-Security too.
- A page needs a logged-in session; without one a GET is sent to the login page and
  anything else is refused.
- Every POST must carry the session's CSRF token in its form (`csrf`), compared in
  constant time: without it, 403. SameSite=Strict on the cookie is the second line.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from urllib.parse import quote

import structlog
from aiohttp import web

from adapters.http_api.console.keys import SESSION, SESSIONS
from adapters.http_api.console.render import render
from adapters.http_api.console.sessions import COOKIE, IDLE_SECONDS, LIFETIME_SECONDS, Session
from adapters.http_api.keys import RUNTIME
from broker.core.errors import DocbrokerError

log = structlog.get_logger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

CSP = (
    "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; "
    "frame-ancestors 'none'; base-uri 'none'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
    "X-Frame-Options": "DENY",
}
PUBLIC = frozenset(
    {"console-login", "console-login-post", "console-css"}
)  # route names open without login
LOGIN = "/console/login"


@web.middleware
async def console_guard(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        response = await _checked(request, handler)
    except web.HTTPException as exc:
        response = error_page(request, exc.status, exc.reason)
    except DocbrokerError as exc:
        response = error_page(request, exc.http_status, str(exc))
    except Exception:
        log.exception("console: unexpected error", path=request.path)
        response = error_page(request, 500, "unexpected error; see the broker log")
    secure_headers(request, response)
    return response


def secure_headers(request: web.Request, response: web.StreamResponse) -> None:
    """The strict headers, and on HTTPS Strict-Transport-Security (`http.hsts_max_age`):
    browsers then refuse plain HTTP to this host; never sent on plain HTTP, where it
    means nothing and would only mislead."""
    response.headers.update(SECURITY_HEADERS)
    max_age = request.config_dict[RUNTIME].settings.http.hsts_max_age
    if request.secure and max_age:
        response.headers["Strict-Transport-Security"] = f"max-age={max_age}"


async def _checked(request: web.Request, handler: Handler) -> web.StreamResponse:
    session = request.app[SESSIONS].get(request.cookies.get(COOKIE), time.time())
    if session is not None:
        request[SESSION] = session
    if request.method not in ("GET", "HEAD"):
        form = await request.post()
        if session is None or not session.csrf_ok(_text(form.get("csrf"))):
            refused(request, "csrf")
            raise web.HTTPForbidden(reason="the form's CSRF token is missing or wrong")
    if request.match_info.route.name not in PUBLIC and (session is None or not session.admin):
        if request.method not in ("GET", "HEAD"):
            refused(request, "unauthenticated")
            raise web.HTTPForbidden(reason="log in first")
        return see_other(f"{LOGIN}?next={quote(request.path_qs, safe='')}")
    return await handler(request)


def _text(value: object) -> str | None:
    return value if isinstance(value, str) else None


def refused(request: web.Request, code: str) -> None:
    request.config_dict[RUNTIME].metrics.access_refused("console", code)
    log.info("console: refused", code=code, path=request.path, method=request.method)


def see_other(location: str) -> web.Response:
    """A redirect after a POST or to the login page (303: the next request is a GET)."""
    return web.Response(status=303, headers={"Location": location})


def safe_next(value: str | None) -> str:
    """Where to go after login: a console page of this server, nowhere else."""
    if value and value.startswith("/console/") and not value.startswith("/console//"):
        return value
    return "/console/"


def set_session_cookie(request: web.Request, response: web.StreamResponse, s: Session) -> None:
    """The opaque id, for the console's paths only, never readable by a script, never
    sent from another site, over HTTPS only when the listener is HTTPS."""
    response.set_cookie(
        COOKIE,
        s.id,
        path="/console",
        httponly=True,
        samesite="Strict",
        secure=request.secure,
        max_age=LIFETIME_SECONDS if s.admin else IDLE_SECONDS,
    )


def clear_session_cookie(request: web.Request, response: web.StreamResponse) -> None:
    response.del_cookie(COOKIE, path="/console", secure=request.secure, samesite="Strict")


def error_page(request: web.Request, status: int, reason: str) -> web.Response:
    """An error as a console page (never a traceback, never a secret)."""
    try:
        return render(request, "error.html", {"status": status, "reason": reason}, status=status)
    except Exception:
        log.exception("console: the error page failed")
        return web.Response(status=status, text=f"{status} {reason}")
