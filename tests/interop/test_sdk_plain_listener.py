"""The plain-HTTP SDK listener (`http.sdk_plain_host`) against VNPT's unchanged SDK jars.

The daemon serves HTTPS on its API listener and, beside it, plain HTTP for the SDK
surface only. A system an administrator allowed plain HTTP (`--plain-http --network
127.0.0.1/32`) sends and receives through it with the real SDK; a system served over
HTTPS only is refused there in the SDK's own form (FAIL, `insecure-transport`, the
reason in ErrorDesc; HTTP 403) and works on the HTTPS listener; every other path of
the plain listener is 404 problem+json, tokens or not.
"""

from __future__ import annotations

import asyncio
import json
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import aiohttp
import pytest

from tests.conftest import backend_env
from tests.e2e.daemon import Daemon, free_port
from tests.interop.java_sdk import JavaSdk
from tests.interop.test_sdk_daemon import (
    EDOC,
    OFFICE,
    PROVINCE,
    World,
    built_package,
    connected,
    ok,
    refused,
    wait_listed,
)
from tests.pki import install_keys
from tests.sdk_client import SdkClient

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


@pytest.fixture
def world(tmp_path: Path, unique_prefix: str) -> Iterator[tuple[World, str]]:
    """A daemon over HTTPS with a plain SDK listener on loopback: (world, its URL)."""
    data_dir = tmp_path / "data"
    keys = install_keys(data_dir)
    plain_port = free_port()
    env = {
        **backend_env("embedded", data_dir, unique_prefix, None),
        "DOCBROKER_HTTP_TLS": "true",
        "DOCBROKER_HTTP_SDK_PLAIN_HOST": "127.0.0.1",
        "DOCBROKER_HTTP_SDK_PLAIN_PORT": str(plain_port),
    }
    daemon = Daemon(tmp_path / "daemon", env, ca_file=keys / "ca.cert.pem").start()
    try:
        yield World(daemon, env, tmp_path, True), f"http://127.0.0.1:{plain_port}"
    finally:
        assert daemon.stop() == 0


def plain_sdk(java_sdk: Callable[..., JavaSdk], url: str, system: tuple[str, str], store: Path):
    sdk = java_sdk(None)
    sdk.connect(f"{url}/vdxp", system[0], system[1], store)
    return sdk


def get(url: str, **headers: str) -> tuple[int, str, dict]:
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=10) as r:
            return r.status, r.headers.get_content_type(), json.loads(r.read() or b"{}")
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers.get_content_type(), json.loads(exc.read() or b"{}")


async def signed_status(url: str, system: tuple[str, str]) -> tuple[int, dict]:
    async with aiohttp.ClientSession() as session:
        return await SdkClient(session, f"{url}/vdxp", *system, ssl=False).count()


def test_the_plain_listener_serves_allowed_sdk_systems_only(
    world: tuple[World, str], java_sdk: Callable[..., JavaSdk]
) -> None:
    w, plain_url = world
    plain_system = w.cli("agencies", "system", "create", PROVINCE, "--plain-http",
                         "--network", "127.0.0.1/32")  # fmt: skip
    https_system = w.cli("agencies", "system", "create", OFFICE)
    plain = (plain_system["systemid"], plain_system["secret"])
    https_only = (https_system["systemid"], https_system["secret"])

    # the system allowed plain HTTP: the real SDK sends through the plain listener
    province = plain_sdk(java_sdk, plain_url, plain, w.workdir / "province")
    package, _ = built_package(province, w, f"{PROVINCE},2026/12/02,17/QĐ-UBND")
    sent = ok(province.params("sendEdoc", {"from": PROVINCE, "to": [OFFICE], **EDOC},
                              file=str(package)))  # fmt: skip
    assert sent["docID"]
    ok(province.params("getReceivedEdocList", EDOC))

    # a system served over HTTPS only: refused on the plain listener, as the SDK reads it
    office_plain = plain_sdk(java_sdk, plain_url, https_only, w.workdir / "office-plain")
    found = refused(office_plain.params("getReceivedEdocList", EDOC), "insecure-transport")
    assert "HTTPS only" in found["errorDesc"], found
    status, body = asyncio.run(signed_status(plain_url, https_only))
    assert status == 403 and body["ErrorCode"] == "insecure-transport", body
    # ... and served on the HTTPS listener
    office = connected(java_sdk, w, https_only, "office")
    (entry,) = wait_listed(office, EDOC, 1)
    assert entry["id"] == sent["docID"]

    # nothing but /vdxp on the plain listener, with a valid token or without
    token = w.daemon.tokens.token(OFFICE)
    for path in ("/v1/agencies", "/console/", "/metrics", "/healthz", "/readyz", "/openapi.yaml"):
        status, kind, problem = get(plain_url + path, Authorization=f"Bearer {token}")
        assert (status, kind, problem.get("code")) == (
            404, "application/problem+json", "not-found"), path  # fmt: skip
        assert "SDK surface" in problem["detail"], problem

    # named in a warning at start, counted in the gauge
    with urllib.request.urlopen(f"{w.daemon.url}/metrics", timeout=10, context=w.daemon.tls) as r:
        metrics = r.read().decode()
    assert 'docbroker_http_plain_listener{listener="sdk"} 1.0' in metrics
    assert 'docbroker_http_plain_listener{listener="api"} 0.0' in metrics
    warned = [e for e in w.daemon.log_events() if "http.sdk_plain_host" in e.get("event", "")]
    assert warned and warned[0]["url"] == plain_url
