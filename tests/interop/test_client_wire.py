"""docbroker's national-axis client sends what VNPT's SDK sends, request for request.

A capture server records each request as it arrives (method, path, the raw header
list in order, the body bytes). For every operation AxisClient uses, the real SDK
(a fresh service object each time: no left-overs) makes the call, then AxisClient
makes it, stamped with the timestamp the SDK's request carried; the two requests
must be the same, but for the headers the HTTP libraries add for transport.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from adapters.national_axis.client import AxisClient
from broker import vdxp
from tests.interop.java_sdk import JavaSdk

SYSTEM, SECRET = "vdxp-h35", "secret-of-lai-chau"
# Added by HttpURLConnection or Apache HttpClient (the SDK) or aiohttp (docbroker) for
# the connection, not by the protocol; everything else must match, User-Agent too.
TRANSPORT_HEADERS = frozenset(
    ("host", "connection", "content-length", "accept", "accept-encoding", "cache-control",
     "pragma", "expect")
)  # fmt: skip
PACKAGE = "<?xml version='1.0' encoding='UTF-8'?><edXML><Subject>Về việc</Subject></edXML>"


@dataclass
class Captured:
    method: str
    path: str
    headers: list[tuple[str, str]]
    body: bytes

    def protocol_headers(self) -> list[tuple[str, str]]:
        return [(k, v) for k, v in self.headers if k.lower() not in TRANSPORT_HEADERS]


@dataclass
class Capture:
    url: str
    requests: list[Captured] = field(default_factory=list)


def _answer(operation: str) -> web.Response:
    """An answer both the SDK and AxisClient read without complaint."""
    if operation == "downloadEdoc":
        return web.Response(body=PACKAGE.encode())
    fields: dict[str, object] = {"DocId": "d-1"} if operation == "sendEdoc" else {}
    if operation == "getEdoc":
        fields["data"] = base64.b64encode(PACKAGE.encode()).decode()
    body = vdxp.answer_bytes(vdxp.answer_ok(operation, **fields))
    return web.Response(body=body, content_type="application/json")


@pytest.fixture
async def capture() -> AsyncIterator[Capture]:
    seen = Capture("")

    async def record(request: web.Request) -> web.Response:
        raw = [(k.decode("latin-1"), v.decode("utf-8")) for k, v in request.raw_headers]
        seen.requests.append(Captured(request.method, request.path, raw, await request.read()))
        return _answer(request.match_info["operation"])

    app = web.Application(client_max_size=16 * 1024 * 1024)
    app.router.add_route("*", "/{operation}", record)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    seen.url = str(server.make_url("")).rstrip("/")
    yield seen
    await server.close()


@pytest.fixture(scope="module")
def sdk(java_sdk_build: Path) -> Iterator[JavaSdk]:
    """One JVM for the module; each case connects afresh."""
    with JavaSdk(java_sdk_build, java_sdk_build / "wire.log") as running:
        yield running


def _package(tmp_path: Path) -> Path:
    """A package whose SHA-256 has a byte below 0x10, so that hash-file is the SDK's
    lossy hex (fewer than 64 digits)."""
    for i in range(256):
        data = (PACKAGE + f"<!-- {i} -->").encode()
        if len(vdxp.sdk_hash_file(data)) < 64:
            path = tmp_path / "package.edxml"
            path.write_bytes(data)
            return path
    raise AssertionError("no such package")


ClientCall = Callable[[AxisClient, Path], Awaitable[Any]]
TO = ["000.00.05.H36", "000.00.00.H36"]
# (operation, the SDK's parameter JSON, AxisClient's method doing the same)
CASES: list[tuple[str, dict[str, Any], ClientCall]] = [
    ("sendEdoc", {"from": "000.00.01.H35", "to": TO, "servicetype": "eDoc", "messagetype": "edoc"},
     lambda c, p: c.send_edoc(p.read_bytes(), "000.00.01.H35", TO, "edoc")),
    ("sendEdoc", {"from": "000.00.01.H35", "to": TO[:1], "servicetype": "eDoc",
                  "messagetype": "status"},
     lambda c, p: c.send_edoc(p.read_bytes(), "000.00.01.H35", TO[:1], "status")),
    ("getReceivedEdocList", {"servicetype": "eDoc", "messagetype": "edoc"},
     lambda c, p: c.received("edoc")),
    ("getReceivedEdocList", {"servicetype": "eDoc", "messagetype": "status"},
     lambda c, p: c.received("status")),
    ("getEdoc", {"docId": "6f1c3e2a-0b7d-4d43-9d0e-4d3c2b1a0f9e"},
     lambda c, p: c.get_edoc("6f1c3e2a-0b7d-4d43-9d0e-4d3c2b1a0f9e")),
    ("updateStatus", {"docId": "6f1c3e2a-0b7d-4d43-9d0e-4d3c2b1a0f9e", "status": "done"},
     lambda c, p: c.update_status("6f1c3e2a-0b7d-4d43-9d0e-4d3c2b1a0f9e", "done")),
    ("updateStatus", {"docId": "d-2", "status": "fail"},
     lambda c, p: c.update_status("d-2", "fail")),
    ("getSentEdocList", {"servicetype": "eDoc"}, lambda c, p: c.sent()),
    ("countReceiveEdoc", {}, lambda c, p: c.count("edoc")),
    ("countReceiveStatus", {}, lambda c, p: c.count("status")),
    ("getAgenciesList", {}, lambda c, p: c.agencies(qd20=False)),
    ("getAgenciesListQD20", {}, lambda c, p: c.agencies(qd20=True)),
    ("getSynchronizeUnit", {}, lambda c, p: c.synchronize_units()),
]  # fmt: skip


@pytest.mark.parametrize(
    ("operation", "params", "ours"),
    CASES,
    ids=[f"{op}-{i}" for i, (op, _, _) in enumerate(CASES)],
)
async def test_the_client_sends_what_the_sdk_sends(
    operation: str,
    params: dict[str, Any],
    ours: ClientCall,
    capture: Capture,
    sdk: JavaSdk,
    tmp_path: Path,
) -> None:
    package = _package(tmp_path)
    sdk.connect(capture.url, SYSTEM, SECRET, tmp_path / "store")
    extra = {"file": str(package)} if operation == "sendEdoc" else {}
    result = await asyncio.to_thread(sdk.params, operation, params, **extra)
    assert result is not None and result["status"] == "OK", result
    (theirs,) = capture.requests
    stamp = dict(theirs.headers)["XroadVnpt-timestamp"]
    at = vdxp.parse_sdk_timestamp(stamp)
    assert at is not None and vdxp.sdk_timestamp(at) == stamp

    client = AxisClient(capture.url, SYSTEM, SECRET, clock=lambda: at)
    try:
        await ours(client, package)
    finally:
        await client.close()
    mine = capture.requests[1]
    assert (
        (mine.method, mine.path)
        == (theirs.method, theirs.path)
        == (
            "POST",
            f"/{operation}",
        )
    )
    assert mine.protocol_headers() == theirs.protocol_headers()
    assert mine.body == theirs.body


async def test_what_the_comparison_ignores_is_transport_only(
    capture: Capture, sdk: JavaSdk, tmp_path: Path
) -> None:
    """The SDK's sendEdoc (HttpURLConnection) and getEdoc (Apache HttpClient) carry the
    protocol's headers with only transport headers besides; the body of sendEdoc is
    the file and CRLF, its hash-file the lossy hex."""
    package = _package(tmp_path)
    sdk.connect(capture.url, SYSTEM, SECRET, tmp_path / "store")
    params = {"from": "000.00.01.H35", "to": TO, "servicetype": "eDoc", "messagetype": "edoc"}
    await asyncio.to_thread(sdk.params, "sendEdoc", params, file=str(package))
    await asyncio.to_thread(sdk.params, "getEdoc", {"docId": "d-1"})
    send, get = capture.requests
    assert send.body == package.read_bytes() + b"\r\n"
    declared = dict(send.headers)["XroadVnpt-hash-file"]
    assert (
        declared
        == vdxp.sdk_hash_file(package.read_bytes())
        != hashlib.sha256(package.read_bytes()).hexdigest()
    )
    for request in (send, get):
        names = [k for k, _ in request.protocol_headers()]
        assert names[-5:] == [
            vdxp.SIGNED_KEYS_HEADER, vdxp.SIGNED_HEADER, vdxp.HASH_HEADER, "User-Agent",
            vdxp.VERSION_HEADER,
        ]  # fmt: skip
        assert all(n == "Content-Type" or n.startswith(vdxp.PREFIX) for n in names[:-5])
    assert send.headers[0] == ("Content-Type", vdxp.OCTET_STREAM), "set first, by MultipartUtility"
    assert get.body == b"{}"
