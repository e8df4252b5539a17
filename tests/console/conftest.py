"""The web console in process (security, pages) and in a real daemon driven by a real
headless Chromium (tests/console/test_browser.py). The console does not depend on
the log's backend: these tests run on the embedded one."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from aiohttp import ClientResponse
from aiohttp.test_utils import TestClient, TestServer

from adapters.http_api import RUNTIME, build_app
from broker.config import load_settings
from broker.keys.files import ADMIN_TOKENS, new_admin_token
from broker.runtime import Runtime
from tests.conftest import backend_env
from tests.console.browser import browser  # noqa: F401 - the fixture
from tests.credentials import runtime_tokens
from tests.pki import install_keys

CSRF = re.compile(r'name="csrf" value="([^"]+)"')
AGENCY = "000.00.00.H35"


@pytest.fixture(params=["embedded"])
def backend(request: pytest.FixtureRequest) -> str:
    return request.param


@dataclass
class Console:
    """An in-process docbroker with its console, an admin token and an agency token."""

    client: TestClient
    admin_token: str
    agency_token: str

    @property
    def runtime(self) -> Runtime:
        return self.client.server.app[RUNTIME]  # type: ignore[union-attr]

    async def csrf(self, path: str = "/console/login") -> str:
        """The CSRF token a page's forms carry (the login form's starts a session)."""
        resp = await self.client.get(path, allow_redirects=False)
        found = CSRF.search(await resp.text())
        assert found, f"no CSRF token on {path}"
        return found.group(1)

    async def login(self, token: str | None = None) -> ClientResponse:
        csrf = await self.csrf()
        return await self.client.post(
            "/console/login",
            data={"csrf": csrf, "token": token or self.admin_token, "next": "/console/"},
            allow_redirects=False,
        )


@pytest.fixture
def console_env() -> dict[str, str]:
    """Settings the test adds (parametrize it to change them)."""
    return {}


@pytest.fixture
async def console(
    backend: str,
    tmp_path: Path,
    unique_prefix: str,
    kafka_bootstrap: str | None,
    console_env: dict[str, str],
) -> AsyncIterator[Console]:
    install_keys(tmp_path / "data")
    env = {**backend_env(backend, tmp_path / "data", unique_prefix, None), **console_env}
    settings = load_settings(None, env)
    admin = new_admin_token(settings.key_file(settings.auth.admin_tokens_file, ADMIN_TOKENS))
    client = TestClient(TestServer(build_app(Runtime.build(settings))))
    await client.start_server()
    runtime = client.server.app[RUNTIME]  # type: ignore[union-attr]
    agency = (await runtime_tokens(runtime, [AGENCY]))[AGENCY]
    yield Console(client, admin, agency)
    await client.close()
