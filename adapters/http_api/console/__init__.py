"""The administrators' web console, served under /console by the HTTP adapter.

Server-rendered pages (jinja2 through aiohttp-jinja2, autoescaped), one style
sheet, charts drawn as SVG by the server, and no JavaScript at all. A sub-app of
the API's application: it has its own middleware (`guard.console_guard`: session,
CSRF, security headers) and reads the runtime from the parent app.
"""

from __future__ import annotations

from importlib import resources

from aiohttp import web

from adapters.http_api.console import (
    agencies,
    dead_letters,
    documents,
    login,
    overview,
    reports,
)
from adapters.http_api.console.dead_letter_cache import DeadLetterCache
from adapters.http_api.console.guard import console_guard, secure_headers, see_other
from adapters.http_api.console.keys import DEAD_LETTERS, SESSIONS
from adapters.http_api.console.render import setup_templates
from adapters.http_api.console.sessions import Sessions

PREFIX = "/console"


def _style_sheet() -> bytes:
    return (resources.files(__package__) / "static" / "console.css").read_bytes()


def console_app() -> web.Application:
    app = web.Application(middlewares=[console_guard])
    app[SESSIONS] = Sessions()
    app[DEAD_LETTERS] = DeadLetterCache()
    setup_templates(app)
    css = _style_sheet()

    async def style_sheet(request: web.Request) -> web.StreamResponse:
        return web.Response(body=css, content_type="text/css", charset="utf-8")

    r = app.router
    r.add_get("/static/console.css", style_sheet, name="console-css")
    r.add_get("/login", login.login_form, name="console-login")
    r.add_post("/login", login.login, name="console-login-post")
    r.add_post("/logout", login.logout)
    r.add_get("/", overview.overview)
    r.add_get("/documents", documents.search)
    r.add_get("/documents/{document_id}", documents.timeline)
    r.add_get("/agencies", agencies.agency_list)
    r.add_get("/agencies/{code}", agencies.agency_page)
    r.add_get("/dead-letters", dead_letters.dead_letter_list)
    r.add_get("/dead-letters/{message_id}", dead_letters.dead_letter_page)
    r.add_post("/dead-letters/{message_id}/replay", dead_letters.replay)
    r.add_get("/reports", reports.reports_page)
    r.add_get("/reports/chart.svg", reports.chart)
    r.add_get("/reports/report.csv", reports.csv_download)
    r.add_get("/reports/report.xlsx", reports.xlsx_download)
    return app


def mount(app: web.Application) -> None:
    """The console under /console (and /console itself sends to /console/)."""

    async def to_console(request: web.Request) -> web.StreamResponse:
        response = see_other(f"{PREFIX}/")
        secure_headers(request, response)
        return response

    app.router.add_get(PREFIX, to_console)
    app.add_subapp(PREFIX, console_app())
