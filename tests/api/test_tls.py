"""The HTTPS listener as real TLS clients meet it: the `openssl s_client` binary for the
protocol versions and ciphers (TLS 1.2 only ECDHE with AES-GCM or ChaCha20-Poly1305;
TLS 1.3 with its suites), and Python's ssl for client certificates, optional or
required (`http.client_certificates`), with the development PKI."""

from __future__ import annotations

import asyncio
import re
import shutil
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import aiohttp
import pytest
from aiohttp.test_utils import TestServer

from adapters.http_api import RUNTIME, build_app
from adapters.http_api.server import server_tls_context
from broker.config import load_settings
from broker.keys.devpki import cert_pem, issue, key_pem
from broker.runtime import Runtime
from tests import pki
from tests.conftest import backend_env
from tests.credentials import runtime_tokens

AGENCY = "000.00.00.H35"
Serve = Callable[..., Awaitable[TestServer]]

pytestmark = pytest.mark.skipif(shutil.which("openssl") is None, reason="no openssl binary")


@pytest.fixture
def backend() -> str:
    return "embedded"


@pytest.fixture
def agency_cert(tmp_path: Path) -> tuple[Path, Path]:
    """The agency's client certificate from the development CA (subject UID: its code)."""
    material = pki.agency(AGENCY)
    cert, key = tmp_path / "agency.cert.pem", tmp_path / "agency.key.pem"
    cert.write_bytes(cert_pem(material.certificate))
    key.write_bytes(key_pem(material.key))
    return cert, key


@pytest.fixture
async def serve(tmp_path: Path, unique_prefix: str) -> AsyncIterator[Serve]:
    """Start the app over HTTPS with these extra DOCBROKER_HTTP_* settings."""
    pki.install_keys(tmp_path / "data")
    servers: list[TestServer] = []

    async def start(**http: str) -> TestServer:
        env = {
            **backend_env("embedded", tmp_path / "data", unique_prefix, None),
            "DOCBROKER_HTTP_TLS": "true",
            **{f"DOCBROKER_HTTP_{k.upper()}": v for k, v in http.items()},
        }
        settings = load_settings(None, env)
        server = TestServer(build_app(Runtime.build(settings)))
        await server.start_server(ssl=server_tls_context(settings))
        servers.append(server)
        return server

    yield start
    for server in servers:
        await server.close()


def ca_file(tmp_path: Path) -> Path:
    return tmp_path / "data" / "keys" / "ca.cert.pem"


async def s_client(server: TestServer, tmp_path: Path, *args: str) -> tuple[int, str]:
    """`openssl s_client` to the server (its CA trusted, the chain checked), stdin
    closed: status 0 once a handshake completed; and what it printed."""
    proc = await asyncio.create_subprocess_exec(
        "openssl", "s_client", "-connect", f"127.0.0.1:{server.port}",
        "-servername", "localhost", "-CAfile", str(ca_file(tmp_path)), "-verify_return_error",
        # the client's own floor off: what is refused is refused by the server
        "-cipher", "ALL:@SECLEVEL=0", *args,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    out, _ = await asyncio.wait_for(proc.communicate(), 30)
    return proc.returncode or 0, out.decode(errors="replace")


def assert_refused_by_the_server(status: int, out: str) -> None:
    """The client sent its hello (it did not refuse its own offer) and the server
    hung up without a word of TLS: no certificate, no cipher."""
    assert status != 0, out
    assert "CONNECTED" in out, out
    assert re.search(r"SSL handshake has read 0 bytes and written [1-9][0-9]* bytes", out), out
    assert "Cipher is (NONE)" in out, out


async def test_tls_1_1_is_refused(serve: Serve, tmp_path: Path) -> None:
    status, out = await s_client(await serve(), tmp_path, "-tls1_1")
    assert_refused_by_the_server(status, out)


@pytest.mark.parametrize(
    "cipher",
    [
        "AES128-SHA",  # RSA key exchange, CBC, SHA-1
        "AES128-GCM-SHA256",  # RSA key exchange
        "ECDHE-RSA-AES128-SHA",  # CBC, SHA-1
        "ECDHE-RSA-AES256-SHA384",  # CBC
        "DHE-RSA-AES128-GCM-SHA256",  # finite-field DH
    ],
)
async def test_tls_1_2_without_ecdhe_and_aead_is_refused(
    serve: Serve, tmp_path: Path, cipher: str
) -> None:
    status, out = await s_client(await serve(), tmp_path, "-tls1_2", "-cipher", cipher)
    assert_refused_by_the_server(status, out)


@pytest.mark.parametrize(
    "cipher",
    ["ECDHE-RSA-AES128-GCM-SHA256", "ECDHE-RSA-AES256-GCM-SHA384", "ECDHE-RSA-CHACHA20-POLY1305"],
)
async def test_tls_1_2_with_ecdhe_and_aead_is_accepted(
    serve: Serve, tmp_path: Path, cipher: str
) -> None:
    status, out = await s_client(await serve(), tmp_path, "-tls1_2", "-cipher", cipher)
    assert status == 0, out
    assert f"Cipher is {cipher}" in out, out
    assert "Verify return code: 0 (ok)" in out, out


async def test_tls_1_3_is_accepted(serve: Serve, tmp_path: Path) -> None:
    status, out = await s_client(await serve(), tmp_path, "-tls1_3")
    assert status == 0, out
    assert "TLSv1.3" in out and "Verify return code: 0 (ok)" in out, out


def client(tmp_path: Path, cert: tuple[Path, Path] | None = None) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(ca_file(tmp_path)))
    if cert is not None:
        context.load_cert_chain(*cert)
    return context


async def get(server: TestServer, tls: ssl.SSLContext, **headers: str) -> tuple[int, str]:
    async with (
        aiohttp.ClientSession() as session,
        session.get(server.make_url("/v1/agencies"), ssl=tls, headers=headers) as resp,
    ):
        return resp.status, await resp.text()


@pytest.mark.parametrize(
    "version", [ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3], ids=["tls1.2", "tls1.3"]
)
async def test_required_client_certificates_keep_a_client_without_one_out(
    serve: Serve, tmp_path: Path, agency_cert: tuple[Path, Path], version: ssl.TLSVersion
) -> None:
    """The handshake demands the certificate: without one there is no HTTP at all, not
    even with a valid token; with the agency's, the certificate authenticates."""
    server = await serve(client_certificates="required")
    token = (await runtime_tokens(server.app[RUNTIME], [AGENCY]))[AGENCY]
    bare = client(tmp_path)
    bare.maximum_version = version
    with pytest.raises(aiohttp.ClientError):
        await get(server, bare, Authorization=f"Bearer {token}")
    status, body = await get(server, client(tmp_path, agency_cert))
    assert status == 200, body
    status, body = await get(server, client(tmp_path, agency_cert), Authorization=f"Bearer {token}")
    assert status == 200, body


async def test_required_client_certificates_must_chain_to_the_trusted_cas(
    serve: Serve, tmp_path: Path
) -> None:
    forged = issue(pki.other_ca(), f"forged {AGENCY}", uid=AGENCY)
    cert, key = tmp_path / "forged.cert.pem", tmp_path / "forged.key.pem"
    cert.write_bytes(cert_pem(forged.certificate))
    key.write_bytes(key_pem(forged.key))
    server = await serve(client_certificates="required")
    with pytest.raises(aiohttp.ClientError):
        await get(server, client(tmp_path, (cert, key)))


async def test_optional_client_certificates_let_a_token_in_too(
    serve: Serve, tmp_path: Path, agency_cert: tuple[Path, Path]
) -> None:
    server = await serve()  # optional is the default
    token = (await runtime_tokens(server.app[RUNTIME], [AGENCY]))[AGENCY]
    assert (await get(server, client(tmp_path), Authorization=f"Bearer {token}"))[0] == 200
    assert (await get(server, client(tmp_path, agency_cert)))[0] == 200
    status, body = await get(server, client(tmp_path))
    assert status == 401 and "unauthenticated" in body
