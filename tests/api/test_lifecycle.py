"""The runtime's parts start in dependency order and stop in reverse (STYLE 8)."""

from __future__ import annotations

from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient, TestServer

from adapters.http_api import build_app
from broker.config import load_settings
from broker.core.errors import BackendUnavailable
from broker.runtime import Runtime
from tests.pki import install_keys


async def test_start_and_stop_order(tmp_path: Path) -> None:
    install_keys(tmp_path)
    settings = load_settings(None, {"DOCBROKER_DATA_DIR": str(tmp_path)})
    runtime = Runtime.build(settings)
    client = TestClient(TestServer(build_app(runtime)))
    await client.start_server()
    assert runtime.events == [
        "log started",
        "state loaded",
        "mailbox view started",
        "documents view started",
        "statistics view started",
        "retention started",
        "pipeline started",
    ]
    checks = await runtime.readiness()
    assert checks["keys"] == "ok"
    assert runtime.pipeline.running and runtime.view.ready
    await client.close()
    assert runtime.events[7:] == [
        "pipeline stopped",
        "retention stopped",
        "statistics view stopped",
        "documents view stopped",
        "mailbox view stopped",
        "state closed",
        "log closed",
    ]
    assert not runtime.pipeline.running


async def test_a_backend_that_cannot_start_stops_nothing_else(tmp_path: Path) -> None:
    """If the log cannot open, no later part starts and the error says why."""
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    keys = install_keys(tmp_path / "k")
    settings = load_settings(
        None,
        {
            "DOCBROKER_DATA_DIR": str(blocker / "sub"),
            "DOCBROKER_KEYS_PRIVATE_KEY": str(keys / "broker.key.pem"),
            "DOCBROKER_KEYS_CERTIFICATE": str(keys / "broker.cert.pem"),
            "DOCBROKER_TRUST_CA_FILES": str(keys / "ca.cert.pem"),
        },
    )
    runtime = Runtime.build(settings)
    server = TestServer(build_app(runtime))
    try:
        with pytest.raises(BackendUnavailable, match="sub"):
            await server.start_server()
    finally:
        await server.close()
    assert runtime.events == []
