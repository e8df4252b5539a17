"""Rendering a console page: the template environment, the words, times as officials
read them (Vietnam's time, UTC+7, which has no daylight saving)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any
from urllib.parse import urlencode

import aiohttp_jinja2
import jinja2
from aiohttp import web

from adapters.http_api.console import i18n
from adapters.http_api.console.keys import SESSION

LANG_COOKIE = "docbroker_console_lang"
VIETNAM = timezone(timedelta(hours=7), "UTC+7")


def setup_templates(app: web.Application) -> None:
    """jinja2 with autoescape on, and an error for any name a template does not get."""
    aiohttp_jinja2.setup(
        app,
        loader=jinja2.PackageLoader("adapters.http_api.console", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        default_helpers=False,
        filters={"at": at_text, "ms": ms_text, "number": number_text},
    )


def ms_text(at_ms: int | None) -> str:
    """An epoch-milliseconds time in Vietnam's time."""
    if at_ms is None:
        return "—"
    return datetime.fromtimestamp(at_ms / 1000, VIETNAM).strftime("%Y-%m-%d %H:%M:%S")


def at_text(value: str | float | datetime | None) -> str:
    """An ISO 8601 time, epoch seconds or a datetime, in Vietnam's time."""
    if value is None or value == "":
        return "—"
    if isinstance(value, int | float):
        when = datetime.fromtimestamp(value, VIETNAM)
    elif isinstance(value, datetime):
        when = value
    else:
        try:
            when = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return value
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return when.astimezone(VIETNAM).strftime("%Y-%m-%d %H:%M:%S")


def number_text(value: int | float | None) -> str:
    """Thousands grouped with a thin space: readable in both languages."""
    if value is None:
        return "—"
    return f"{value:,}".replace(",", "\u202f")


def language(request: web.Request) -> str:
    return i18n.choose(request.query.get("lang"), request.cookies.get(LANG_COOKIE))


def page_url(request: web.Request, **changes: str | None) -> str:
    """This page's address with some query parameters changed (None drops one)."""
    query = {k: v for k, v in request.query.items() if k not in changes}
    query.update({k: v for k, v in changes.items() if v is not None})
    return f"{request.path}?{urlencode(query)}" if query else request.path


def render(
    request: web.Request, template: str, context: dict[str, Any], *, status: int = 200
) -> web.Response:
    lang = language(request)
    session = request.get(SESSION)
    base = {
        "t": i18n.Translator(lang),
        "lang": lang,
        "other_langs": [(code, page_url(request, lang=code)) for code in i18n.LANGUAGES],
        "csrf": session.csrf if session is not None else "",
        "logged_in": session is not None and session.admin,
        "section": "",
    }
    response = aiohttp_jinja2.render_template(template, request, {**base, **context}, status=status)
    remember_language(request, response)
    return response


def remember_language(request: web.Request, response: web.StreamResponse) -> None:
    """`?lang=` is remembered for the next pages."""
    chosen = request.query.get("lang")
    if chosen in i18n.LANGUAGES and chosen != request.cookies.get(LANG_COOKIE):
        response.set_cookie(
            LANG_COOKIE,
            chosen,
            path="/console",
            max_age=365 * 86400,
            httponly=True,
            samesite="Strict",
            secure=request.secure,
        )
