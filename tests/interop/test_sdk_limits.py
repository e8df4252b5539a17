"""The fair limits as VNPT's unchanged SDK (SDKVXP 2.0.1) sees them, against a live
`docbroker serve`: an agency with as many requests under way as it may is answered 429
too-many-concurrent-requests, a server holding as many request bytes as it may 503
too-many-bytes-in-flight, each read by the SDK (FAIL, the problem code, a reason);
once the requests are over, the same calls succeed."""

from __future__ import annotations

import socket
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.conftest import backend_env
from tests.credentials import daemon_tokens
from tests.e2e.daemon import Daemon
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
)
from tests.pki import install_keys

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

ENVELOPE_LIMIT = 8 * 1024 * 1024  # the built package (5 MB attachment, base64) fits


@pytest.fixture
def backend() -> str:
    return "embedded"


@pytest.fixture
def world(tmp_path: Path, unique_prefix: str) -> Iterator[World]:
    data_dir = tmp_path / "data"
    install_keys(data_dir)
    env = {
        **backend_env("embedded", data_dir, unique_prefix, None),
        "DOCBROKER_LIMITS_MAX_ENVELOPE_BYTES": str(ENVELOPE_LIMIT),
        "DOCBROKER_HTTP_MAX_BYTES_IN_FLIGHT": str(ENVELOPE_LIMIT),
        "DOCBROKER_HTTP_AGENCY_MAX_REQUESTS": "2",
    }
    daemon = Daemon(tmp_path / "daemon", env).start()
    try:
        yield World(daemon, env, tmp_path, secure=False)
    finally:
        daemon.stop()


def held(world: World, token: str, length: int) -> socket.socket:
    """A submission whose body never comes in full: under way, its length reserved."""
    sock = socket.create_connection(("127.0.0.1", world.daemon.port))
    sock.sendall(
        b"POST /v1/envelopes HTTP/1.1\r\nHost: x\r\nContent-Type: application/xml\r\n"
        b"Authorization: Bearer %s\r\nContent-Length: %d\r\n\r\n<edXML" % (token.encode(), length)
    )
    return sock


def until_refused(world: World, token: str, status: int) -> None:
    """Until a probe of the agency is refused with `status`: the held requests are in."""
    probe = urllib.request.Request(  # a body, so that it needs bytes too
        f"{world.daemon.url}/v1/envelopes",
        data=b"<edXML/>",
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/xml"},
    )
    for _ in range(100):
        try:
            urllib.request.urlopen(probe, timeout=10).close()
        except urllib.error.HTTPError as exc:
            exc.close()
            if exc.code == status:
                return
        time.sleep(0.1)
    raise AssertionError(f"never refused with {status}")


def test_the_sdk_reads_the_fair_limits_refusals(
    world: World, java_sdk: Callable[..., JavaSdk]
) -> None:
    province_system = world.system(PROVINCE)
    province = connected(java_sdk, world, province_system, "province")
    tokens = daemon_tokens(world.env, [PROVINCE, OFFICE])
    package, _ = built_package(province, world, f"{PROVINCE},2026/12/02,1/QĐ-UBND")
    send = {"from": PROVINCE, "to": [OFFICE], **EDOC}

    # the province's own token holds both of its requests: its SDK system is refused
    sockets = [held(world, tokens[PROVINCE], 1000) for _ in range(2)]
    until_refused(world, tokens[PROVINCE], 429)
    refused(province.params("countReceiveEdoc", EDOC), "too-many-concurrent-requests")
    for sock in sockets:
        sock.close()
    time.sleep(1)

    # another agency's upload holds the server's bytes: the SDK's package does not fit
    sockets = [held(world, tokens[OFFICE], ENVELOPE_LIMIT)]
    until_refused(world, tokens[OFFICE], 503)
    refused(province.params("sendEdoc", send, file=str(package)), "too-many-bytes-in-flight")
    sockets[0].close()
    time.sleep(1)

    ok(province.params("countReceiveEdoc", EDOC))
    assert ok(province.params("sendEdoc", send, file=str(package)))["docID"]
