"""An in-process docbroker (HTTP app + runtime) on the parametrised backend."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient, TestServer

from adapters.http_api import build_app
from broker.config import load_settings
from broker.runtime import Runtime
from tests.conftest import backend_env
from tests.pki import install_keys


@pytest.fixture
async def api(
    backend: str, tmp_path: Path, unique_prefix: str, kafka_bootstrap: str | None
) -> AsyncIterator[TestClient]:
    env = backend_env(backend, tmp_path / "data", unique_prefix, kafka_bootstrap)
    install_keys(tmp_path / "data")
    settings = load_settings(None, {**env, "DOCBROKER_LIMITS_MAX_ENVELOPE_BYTES": "64 KiB"})
    client = TestClient(TestServer(build_app(Runtime.build(settings))))
    await client.start_server()
    yield client
    await client.close()
