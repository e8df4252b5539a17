"""The console's security, in process: only an admin token opens it, every action is
a POST carrying the session's CSRF token, every response carries the strict headers,
and no page has a script or shows a secret."""

from __future__ import annotations

import asyncio
import contextlib
import re
import ssl
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import quote

import aiohttp
import pytest
from aiohttp.test_utils import TestServer

from adapters.http_api import build_app
from adapters.http_api.console.guard import CSP
from adapters.http_api.server import server_tls_context
from broker.config import load_settings
from broker.keys.files import SDK_MASTER_KEY
from broker.runtime import Runtime
from tests.conftest import backend_env
from tests.console.conftest import AGENCY, Console
from tests.credentials import runtime_system
from tests.edxml_samples import document
from tests.pki import install_keys

# The console keeps SQLite and rendering of large files off the loop.
pytestmark = pytest.mark.usefixtures("no_blocking_loop")

DOC = "000.00.00.H35,2026/12/01,7/UBND-VP"

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
    root = await console.client.get("/console", allow_redirects=False)
    assert root.status == 303 and root.headers["Location"] == "/console/"
    assert_strict_headers(root.headers)
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


async def known_secrets(console: Console) -> list[str]:
    """Every secret the test knows: the admin and agency tokens (whole and their secret
    part), the agency token's stored hash, an SDK system's secret, the SDK master key and
    the broker's private key."""
    runtime = console.runtime
    _, sdk_secret = await runtime_system(runtime, AGENCY)
    agency = runtime.directory.current.find(AGENCY)
    assert agency is not None
    keys = runtime.settings.data_path / "keys"
    private_key = (keys / "broker.key.pem").read_text().splitlines()[1]
    return [
        console.admin_token,
        console.agency_token,
        console.agency_token.rsplit("_", 1)[1],
        *(t.sha256 for t in agency.tokens),
        *(s.salt for s in agency.systems),
        sdk_secret,
        (keys / SDK_MASTER_KEY).read_text().strip(),
        private_key,
    ]


async def test_pages_have_no_script_no_inline_style_and_no_secret(console: Console) -> None:
    secrets = await known_secrets(console)
    resp = await console.client.post(
        "/v1/envelopes",
        data=document(AGENCY, ("000.00.01.H35",), DOC),
        headers={"Authorization": f"Bearer {console.agency_token}"},
    )
    assert resp.status == 202
    await wait_for_document(console)
    assert (await console.login()).status == 303
    agency = f"/console/agencies/{AGENCY}"
    timeline = f"/console/documents/{quote(DOC, safe='')}"
    for path in (*PAGES, agency, timeline, "/console/login", "/console/nowhere"):
        resp = await console.client.get(path)
        html = await resp.text()
        assert_strict_headers(resp.headers)
        assert not re.search(r"<script|\son[a-z]+=|style=|javascript:", html, re.I), path
        leaked = [s for s in secrets if s in html]
        assert not leaked, (path, leaked)
    assert "sys-" in await (await console.client.get(agency)).text(), "the system, by id"


async def wait_for_document(console: Console) -> None:
    for _ in range(100):
        state = await console.runtime.documents.state(DOC)
        if state is not None and state.recipients and state.recipients[0].routed_at_ms:
            return
        await asyncio.sleep(0.1)
    raise AssertionError("the document did not reach the view")


async def test_a_changed_event_shows_where_the_chain_breaks(console: Console) -> None:
    """The verdict reads the events the documents view keeps: one changed there (as if
    the log had been tampered with) is found, intact before."""
    resp = await console.client.post(
        "/v1/envelopes",
        data=document(AGENCY, ("000.00.01.H35",), DOC),
        headers={"Authorization": f"Bearer {console.agency_token}"},
    )
    assert resp.status == 202
    await wait_for_document(console)
    assert (await console.login()).status == 303
    timeline = f"/console/documents/{quote(DOC, safe='')}"
    assert 'class="good" id="chain-verdict"' in await (await console.client.get(timeline)).text()
    view = console.runtime.documents

    def tamper() -> None:
        conn = view._store_or_fail()._conn
        conn.execute(
            "UPDATE events SET body = replace(body, '\"routed\"', '\"routed \"') "
            "WHERE document_id = ? AND type = 'routed'",
            (DOC,),
        )
        conn.commit()

    await view._thread.run(tamper)
    html = await (await console.client.get(timeline)).text()
    assert 'class="bad" id="chain-verdict"' in html
    problem = re.search(r'class="link-problem"><span class="mono">[^#<]+#2</span>: ([^<]+)<', html)
    assert problem, html
    assert problem.group(1) == (
        "đầu chuỗi đã ghi không khớp mã băm của sự kiện này: sự kiện này đã bị sửa"
    ), "the last event of its chain: its hash is checked against the chain's head"


@contextlib.asynccontextmanager
async def tls_console(
    tmp_path: Path, unique_prefix: str, **env: str
) -> AsyncIterator[tuple[TestServer, ssl.SSLContext]]:
    """The app over HTTPS (with these extra settings) and a client context trusting it."""
    install_keys(tmp_path / "data")
    settings = load_settings(
        None,
        {
            **backend_env("embedded", tmp_path / "data", unique_prefix, None),
            "DOCBROKER_HTTP_TLS": "true",
            **env,
        },
    )
    server = TestServer(build_app(Runtime.build(settings)))
    await server.start_server(ssl=server_tls_context(settings))
    try:
        yield (
            server,
            ssl.create_default_context(cafile=str(tmp_path / "data" / "keys" / "ca.cert.pem")),
        )
    finally:
        await server.close()


async def test_a_tls_listener_marks_the_cookie_secure(tmp_path: Path, unique_prefix: str) -> None:
    async with (
        tls_console(tmp_path, unique_prefix) as (server, tls),
        aiohttp.ClientSession() as session,
        session.get(server.make_url("/console/login"), ssl=tls) as resp,
    ):
        assert resp.status == 200
        cookie = resp.cookies["docbroker_console"]
        assert cookie["secure"] and cookie["httponly"]
        assert cookie["samesite"] == "Strict"


@pytest.mark.parametrize(
    ("max_age", "expected"), [("", "max-age=31536000"), ("600", "max-age=600"), ("0", None)]
)
async def test_over_tls_the_console_sends_strict_transport_security(
    tmp_path: Path, unique_prefix: str, max_age: str, expected: str | None
) -> None:
    """On pages, redirects, the style sheet and errors; `http.hsts_max_age` sets it
    (0: none); never on the API's own answers."""
    env = {"DOCBROKER_HTTP_HSTS_MAX_AGE": max_age} if max_age else {}
    async with (
        tls_console(tmp_path, unique_prefix, **env) as (server, tls),
        aiohttp.ClientSession() as session,
    ):
        for method, path, status in (
            ("GET", "/console", 303),
            ("GET", "/console/", 303),
            ("GET", "/console/login", 200),
            ("GET", "/console/static/console.css", 200),
            ("POST", "/console/logout", 403),  # an error page: no CSRF token
        ):
            async with session.request(
                method, server.make_url(path), ssl=tls, allow_redirects=False
            ) as resp:
                assert resp.status == status, path
                assert resp.headers.get("Strict-Transport-Security") == expected, path
        async with session.get(server.make_url("/healthz"), ssl=tls) as resp:
            assert "Strict-Transport-Security" not in resp.headers


async def test_on_plain_http_the_console_never_sends_strict_transport_security(
    console: Console,
) -> None:
    for path in ("/console", "/console/login", "/console/static/console.css"):
        resp = await console.client.get(path, allow_redirects=False)
        assert resp.status in (200, 303)
        assert "Strict-Transport-Security" not in resp.headers, path
    assert (await console.login()).status == 303
    resp = await console.client.get("/console/")
    assert resp.status == 200 and "Strict-Transport-Security" not in resp.headers


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
