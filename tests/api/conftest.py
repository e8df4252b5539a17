"""An in-process docbroker (HTTP app + runtime) on the parametrised backend."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient, TestServer

from adapters.http_api import build_app
from broker.config import Settings, load_settings
from broker.runtime import Runtime


def settings_for(
    backend: str, tmp_path: Path, prefix: str, request: pytest.FixtureRequest, **extra: str
) -> Settings:
    env = {
        "DOCBROKER_DATA_DIR": str(tmp_path / "data"),
        "DOCBROKER_BACKEND_TYPE": backend,
        "DOCBROKER_BACKEND_TOPIC_PREFIX": prefix,
        "DOCBROKER_BACKEND_PARTITIONS": "3",
        "DOCBROKER_BACKEND_EMBEDDED_SESSION_TIMEOUT": "3",
        **extra,
    }
    if backend == "kafka":
        env["DOCBROKER_BACKEND_KAFKA_BOOTSTRAP_SERVERS"] = request.getfixturevalue(
            "kafka_broker"
        ).bootstrap
        env["DOCBROKER_BACKEND_KAFKA_SESSION_TIMEOUT_MS"] = "6000"
    return load_settings(None, env)


@pytest.fixture
async def api(
    backend: str, tmp_path: Path, unique_prefix: str, request: pytest.FixtureRequest
) -> AsyncIterator[TestClient]:
    settings = settings_for(
        backend, tmp_path, unique_prefix, request, DOCBROKER_LIMITS_MAX_ENVELOPE_BYTES="64 KiB"
    )
    runtime = Runtime.build(settings)
    client = TestClient(TestServer(build_app(runtime)))
    await client.start_server()
    yield client
    await client.close()
