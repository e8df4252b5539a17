"""The console's security, in process: only an admin token opens it, every action is
a POST carrying the session's CSRF token, every response carries the strict headers,
and no page has a script or shows a secret."""

from __future__ import annotations

import re

from adapters.http_api.console.guard import CSP
from tests.console.conftest import AGENCY, Console

PAGES = (
    "/console/",
    "/console/documents",
    "/console/documents?code=12/UBND-VP",
    "/console/agencies",
    "/console/dead-letters",
    "/console/reports",
)
FILES = (
    "/console/reports/chart.svg",
    "/console/reports/report.csv",
    "/console/reports/report.xlsx",
)


def assert_strict_headers(headers: object) -> None:
    h = dict(headers)  # type: ignore[call-overload]
    assert h["Content-Security-Policy"] == CSP
    assert "script-src" not in CSP and "'unsafe-inline'" not in CSP
    assert h["X-Content-Type-Options"] == "nosniff"
    assert h["Referrer-Policy"] == "no-referrer"
    assert h["Cache-Control"] == "no-store"


async def test_without_a_session_a_page_sends_to_the_login_page(console: Console) -> None:
    for path in PAGES:
        resp = await console.client.get(path, allow_redirects=False)
        assert resp.status == 303, path
        assert resp.headers["Location"].startswith("/console/login?next=")
        assert_strict_headers(resp.headers)


async def test_an_admin_token_logs_in_with_a_new_session_and_a_strict_cookie(
    console: Console,
) -> None:
    """The login form's session is replaced: an id known before login is worthless after."""
    await console.csrf()
    before = console.client.session.cookie_jar.filter_cookies(console.client.make_url("/console/"))
    resp = await console.login()
    assert resp.status == 303 and resp.headers["Location"] == "/console/"
    cookie = resp.cookies["docbroker_console"]
    assert cookie.value != before["docbroker_console"].value
    assert cookie["httponly"] and cookie["samesite"] == "Strict" and cookie["path"] == "/console"
    assert not cookie["secure"], "plain HTTP listener: Secure would lose the cookie"
    overview = await console.client.get("/console/")
    assert overview.status == 200
    assert_strict_headers(overview.headers)


async def test_an_agency_token_does_not_open_the_console(console: Console) -> None:
    resp = await console.login(console.agency_token)
    assert resp.status == 401
    assert 'id="login-failed"' in await resp.text()
    page = await console.client.get("/console/", allow_redirects=False)
    assert page.status == 303, "still not logged in"


async def test_a_wrong_token_is_refused(console: Console) -> None:
    resp = await console.login("dbk_admin_not-the-token")
    assert resp.status == 401
    assert (await console.client.get("/console/", allow_redirects=False)).status == 303


async def test_a_post_without_the_csrf_token_is_refused(console: Console) -> None:
    """Login, logout: a form without the session's token (or with another) is 403."""
    await console.csrf()
    no_token = await console.client.post(
        "/console/login", data={"token": console.admin_token}, allow_redirects=False
    )
    assert no_token.status == 403
    assert_strict_headers(no_token.headers)
    assert (await console.login()).status == 303
    for data in ({}, {"csrf": "forged"}):
        for action in ("/console/logout", "/console/dead-letters/some-id/replay"):
            resp = await console.client.post(action, data=data, allow_redirects=False)
            assert resp.status == 403, action
    assert (await console.client.get("/console/", allow_redirects=False)).status == 200
    csrf = await console.csrf("/console/")
    out = await console.client.post("/console/logout", data={"csrf": csrf}, allow_redirects=False)
    assert out.status == 303
    assert (await console.client.get("/console/", allow_redirects=False)).status == 303


async def test_pages_have_no_script_no_inline_style_and_no_secret(console: Console) -> None:
    assert (await console.login()).status == 303
    agency = f"/console/agencies/{AGENCY}"
    for path in (*PAGES, agency, "/console/login", "/console/nowhere"):
        resp = await console.client.get(path)
        html = await resp.text()
        assert_strict_headers(resp.headers)
        assert not re.search(r"<script|\son[a-z]+=|style=|javascript:", html, re.I), path
        assert console.admin_token not in html and console.agency_token not in html, path
        secret = console.agency_token.rsplit("_", 1)[1]
        assert secret not in html, path


async def test_the_style_sheet_and_errors_carry_the_headers_too(console: Console) -> None:
    css = await console.client.get("/console/static/console.css")
    assert css.status == 200 and css.content_type == "text/css"
    assert_strict_headers(css.headers)
    assert (await console.login()).status == 303
    missing = await console.client.get("/console/documents/no-such-document")
    assert missing.status == 404 and missing.content_type == "text/html"
    assert_strict_headers(missing.headers)


async def test_every_page_renders_in_both_languages(console: Console) -> None:
    """A missing message would raise: each page in Vietnamese and in English."""
    assert (await console.login()).status == 303
    for lang in ("vi", "en"):
        for path in (*PAGES, f"/console/agencies/{AGENCY}"):
            sep = "&" if "?" in path else "?"
            resp = await console.client.get(f"{path}{sep}lang={lang}")
            assert resp.status == 200, (path, lang)
            assert f'<html lang="{lang}">' in await resp.text()


async def test_the_chart_and_the_downloads_carry_the_headers(console: Console) -> None:
    for path in FILES:
        assert (await console.client.get(path, allow_redirects=False)).status == 303
    assert (await console.login()).status == 303
    for path, kind in zip(
        FILES, ("image/svg+xml", "text/csv", "application/vnd.openxml"), strict=True
    ):
        resp = await console.client.get(path)
        assert resp.status == 200 and resp.content_type.startswith(kind), path
        assert_strict_headers(resp.headers)
    svg = await (await console.client.get(FILES[0])).text()
    assert not re.search(r"<script|\son[a-z]+=|javascript:", svg, re.I)
