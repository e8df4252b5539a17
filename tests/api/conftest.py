"""An in-process docbroker (HTTP app + runtime) on the parametrised backend.

`api` is a client that acts as the rightful party of each request: it presents
the API token of the agency that sends the envelope it posts, or that owns the
mailbox it reads, unless the test sets Authorization itself. Who may do what
is tested with explicit credentials in test_access.py.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import ClientResponse
from aiohttp.test_utils import TestClient, TestServer

from adapters.http_api import RUNTIME, build_app
from broker.config import load_settings
from broker.runtime import Runtime
from tests.conftest import backend_env
from tests.credentials import runtime_tokens
from tests.edxml_samples import sender_of
from tests.pki import install_keys

MAILBOX = re.compile(r"^/v1/mailboxes/([^/]+)/")
DEFAULT_CALLER = "000.00.00.H35"


class AgencyClient:
    """A TestClient that authenticates each request as the agency it concerns."""

    def __init__(self, client: TestClient) -> None:
        self.client = client
        self.tokens: dict[str, str] = {}

    @property
    def server(self) -> TestServer:
        return self.client.server  # type: ignore[return-value]

    @property
    def runtime(self) -> Runtime:
        return self.server.app[RUNTIME]

    async def token(self, code: str) -> str:
        if code not in self.tokens:
            self.tokens.update(await runtime_tokens(self.runtime, [code]))
        return self.tokens[code]

    async def auth(self, code: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {await self.token(code)}"}

    async def _caller(self, path: str, data: Any) -> str:
        if isinstance(data, bytes) and (sender := sender_of(data)):
            return sender
        if found := MAILBOX.match(path):
            return found.group(1)
        return DEFAULT_CALLER

    async def request(self, method: str, path: str, **kw: Any) -> ClientResponse:
        headers = dict(kw.pop("headers", None) or {})
        if "Authorization" not in headers:
            caller = await self._caller(path, kw.get("data"))
            if self.runtime.directory.current.find(caller) is not None:
                headers.update(await self.auth(caller))
        return await self.client.request(method, path, headers=headers, **kw)

    async def get(self, path: str, **kw: Any) -> ClientResponse:
        return await self.request("GET", path, **kw)

    async def post(self, path: str, **kw: Any) -> ClientResponse:
        return await self.request("POST", path, **kw)

    async def delete(self, path: str, **kw: Any) -> ClientResponse:
        return await self.request("DELETE", path, **kw)


@pytest.fixture
def api_settings_env(
    backend: str, tmp_path: Path, unique_prefix: str, kafka_bootstrap: str | None
) -> dict[str, str]:
    install_keys(tmp_path / "data")
    env = backend_env(backend, tmp_path / "data", unique_prefix, kafka_bootstrap)
    return {**env, "DOCBROKER_LIMITS_MAX_ENVELOPE_BYTES": "64 KiB"}


@pytest.fixture
async def api(api_settings_env: dict[str, str]) -> AsyncIterator[AgencyClient]:
    settings = load_settings(None, api_settings_env)
    client = TestClient(TestServer(build_app(Runtime.build(settings))))
    await client.start_server()
    yield AgencyClient(client)
    await client.close()
