"""Who may do what: the authorisation matrix over HTTPS, in process.

Two agencies, A (the province, H35 / 000.00.00.H35) and B (its office, H35.S01 /
000.00.01.H35); five operations (send as, list, fetch, acknowledge, delivery
state); three ways in (client certificate, API token, SDK HMAC signature); four
kinds of credential (valid, expired, revoked, wrong secret). A valid credential
does its own agency's business and nothing of the other's; any other credential
does nothing at all.
"""

from __future__ import annotations

import asyncio
import base64
import json
import ssl
import urllib.parse
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestServer
from cryptography.hazmat.primitives.serialization import Encoding

from adapters.http_api import build_app
from adapters.http_api.server import server_tls_context
from broker.clock import now_ms
from broker.config import load_settings
from broker.directory import credentials as creds
from broker.directory.auth import derive_secret, new_system, new_token
from broker.directory.book import Directory
from broker.directory.model import Agency
from broker.keys.devpki import cert_pem, issue, key_pem, revoke
from broker.keys.files import SDK_MASTER_KEY, parse_sdk_master_key
from broker.runtime import Runtime
from broker.state.directory import change_agencies
from broker.trust.certs import KeyMaterial
from tests import pki
from tests.conftest import backend_env
from tests.credentials import runtime_system
from tests.edxml_samples import document
from tests.sdk_client import SdkClient

A, A102 = "H35", "000.00.00.H35"
B, B102 = "H35.S01", "000.00.01.H35"
XML = {"Content-Type": "application/xml"}
DAY_MS = 86400_000

pytestmark = pytest.mark.usefixtures("no_blocking_loop")


@pytest.fixture
def backend() -> str:
    """Who may do what does not depend on the log: the embedded backend is enough."""
    return "embedded"


@dataclass
class Credential:
    """How one caller presents itself: headers, a TLS context, or an SDK client."""

    method: str
    headers: dict[str, str]
    tls: ssl.SSLContext
    sdk: tuple[str, str] | None = None  # (system id, secret)


@dataclass
class World:
    server: TestServer
    runtime: Runtime
    ca_file: Path
    cert_dir: Path
    creds: dict[tuple[str, str, str], Credential]  # (agency, method, state)
    master: bytes

    @property
    def url(self) -> str:
        return str(self.server.make_url(""))


def client_tls(ca_file: Path, cert: Path | None = None, key: Path | None = None) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(ca_file))
    if cert is not None:
        context.load_cert_chain(cert, key)
    return context


def write_pair(folder: Path, name: str, material: Any, chain: Any = ()) -> tuple[Path, Path]:
    cert, key = folder / f"{name}.cert.pem", folder / f"{name}.key.pem"
    cert.write_bytes(cert_pem(material.certificate, *chain))
    key.write_bytes(key_pem(material.key))
    return cert, key


@cache
def revoked_cert(code: str) -> KeyMaterial:
    return issue(pki.ca(), f"revoked {code}", uid=code)


@cache
def forged_cert(code: str) -> KeyMaterial:
    """The agency's code in a certificate from a CA docbroker does not trust."""
    return issue(pki.other_ca(), f"forged {code}", uid=code)


@pytest.fixture
def cert_files(tmp_path: Path) -> dict[tuple[str, str], tuple[Path, Path]]:
    """(agency 102 code, state) -> client certificate and key files; and the CRL.
    Made outside the event loop: key generation takes a while."""
    certs = tmp_path / "certs"
    certs.mkdir()
    out = {}
    for code in (A102, B102):
        out[(code, "valid")] = write_pair(certs, f"{code}-valid", pki.agency(code))
        out[(code, "expired")] = write_pair(certs, f"{code}-expired", pki.expired(code))
        out[(code, "revoked")] = write_pair(certs, f"{code}-revoked", revoked_cert(code))
        out[(code, "wrong secret")] = write_pair(certs, f"{code}-forged", forged_cert(code))
    crl = revoke(pki.ca(), [revoked_cert(c).certificate for c in (A102, B102)])
    (tmp_path / "ca.crl.pem").write_bytes(crl.public_bytes(Encoding.PEM))
    pki.install_keys(tmp_path / "data")
    return out


@pytest.fixture
async def world(
    tmp_path: Path, unique_prefix: str, cert_files: dict[tuple[str, str], tuple[Path, Path]]
) -> AsyncIterator[World]:
    data = tmp_path / "data"
    keys = data / "keys"
    certs = tmp_path / "certs"
    crl = tmp_path / "ca.crl.pem"
    env = {
        **backend_env("embedded", data, unique_prefix, None),
        "DOCBROKER_HTTP_TLS": "true",
        "DOCBROKER_TRUST_CRL_FILES": str(crl),
        "DOCBROKER_HTTP_RATE_LIMIT": "0",
    }
    settings = load_settings(None, env)
    runtime = Runtime.build(settings)
    server = TestServer(build_app(runtime))
    await server.start_server(ssl=server_tls_context(settings))
    master = parse_sdk_master_key((keys / SDK_MASTER_KEY).read_text())
    ca_file = keys / "ca.cert.pem"
    table: dict[tuple[str, str, str], Credential] = {}
    now = int(datetime.now(UTC).timestamp() * 1000)
    plans: dict[str, Callable[[Directory, Agency], Agency]] = {}

    for code, code102 in ((A, A102), (B, B102)):
        bearer: dict[str, str] = {}
        tokens = {
            "valid": new_token(now_ms=now_ms()),
            "expired": new_token(now_ms=now - 2 * DAY_MS, expires_days=1),
            "revoked": new_token(now_ms=now_ms()),
        }
        for state, (plain, _) in tokens.items():
            bearer[state] = plain
        bearer["wrong secret"] = tokens["valid"][0][:-6] + "xxxxxx"
        systems = {
            "valid": new_system(f"sys-{code}", now_ms=now_ms()),
            "expired": new_system(f"sys-{code}-old", now_ms=now - 2 * DAY_MS, expires_days=1),
            "revoked": new_system(f"sys-{code}-gone", now_ms=now_ms()),
        }
        for state in ("valid", "expired", "revoked", "wrong secret"):
            no_cert = client_tls(ca_file)
            table[(code, "token", state)] = Credential(
                "token", {"Authorization": f"Bearer {bearer[state]}"}, no_cert
            )
            table[(code, "mtls", state)] = Credential(
                "mtls", {}, client_tls(ca_file, *cert_files[(code102, state)])
            )
            system = systems.get(state, systems["valid"])
            secret = derive_secret(master, system)
            if state == "wrong secret":
                secret = base64.urlsafe_b64encode(b"\x00" * 32).decode().rstrip("=")
            table[(code, "hmac", state)] = Credential(
                "hmac", {}, no_cert, (system.system_id, secret)
            )

        def plan(d: Directory, agency: Agency, tokens=tokens, systems=systems) -> Agency:
            for _, token in tokens.values():
                agency = creds.add_token(agency, token)
            agency = creds.revoke_token(agency, tokens["revoked"][1].id)
            for system in systems.values():
                agency = creds.add_system(d, agency, system)
            return creds.revoke_system(agency, systems["revoked"].system_id)

        plans[code] = plan

    await change_agencies(
        runtime.log,
        runtime.topics.directory,
        lambda d: [plans[c](d, d.find(c)) for c in (A, B)],  # type: ignore[arg-type]
        "tests",
    )
    await runtime.directory.follower.caught_up()
    yield World(server, runtime, ca_file, certs, table, master)
    await server.close()


class Caller:
    """One credential doing the five operations; answers (HTTP status, code or "ok")."""

    def __init__(self, world: World, cred: Credential, session: aiohttp.ClientSession) -> None:
        self.world, self.cred, self.session = world, cred, session
        self.sdk = (
            SdkClient(session, f"{world.url}/vdxp", *cred.sdk, ssl=cred.tls)
            if cred.sdk is not None
            else None
        )

    async def _native(self, method: str, path: str, **kw: Any) -> tuple[int, Any]:
        headers = {**self.cred.headers, **kw.pop("headers", {})}
        try:
            async with self.session.request(
                method, self.world.url + path, headers=headers, ssl=self.cred.tls, **kw
            ) as resp:
                body = (
                    await resp.json(content_type=None)
                    if resp.content_type != "application/xml"
                    else {}
                )
                return resp.status, body
        except aiohttp.ClientConnectionError:
            return 0, {"code": "tls-handshake-refused"}

    async def send(self, sender: str, recipient: str, doc_id: str) -> tuple[int, Any]:
        data = document(sender=sender, recipients=(recipient,), document_id=doc_id)
        if self.sdk:
            return await self._sdk(self.sdk.send_edoc(data, sender, [recipient]))
        return await self._native("POST", "/v1/envelopes", data=data, headers=XML)

    async def listing(self, mailbox: str) -> tuple[int, Any]:
        if self.sdk:
            return await self._sdk(self.sdk.received())
        return await self._native("GET", f"/v1/mailboxes/{mailbox}/envelopes")

    async def fetch(self, mailbox: str, message_id: str) -> tuple[int, Any]:
        if self.sdk:
            return await self._sdk(self.sdk.get_edoc(message_id))
        return await self._native("GET", f"/v1/mailboxes/{mailbox}/envelopes/{message_id}")

    async def ack(self, mailbox: str, message_id: str) -> tuple[int, Any]:
        if self.sdk:
            return await self._sdk(self.sdk.update_status(message_id))
        return await self._native("POST", f"/v1/mailboxes/{mailbox}/envelopes/{message_id}/ack")

    async def state(self, document_id: str) -> tuple[int, Any]:
        if self.sdk:
            return await self._sdk(self.sdk.sent())
        return await self._native(
            "GET", "/v1/documents/" + urllib.parse.quote(document_id, safe="")
        )

    async def _sdk(self, call: Awaitable[tuple[int, dict[str, Any]]]) -> tuple[int, Any]:
        try:
            return await call
        except aiohttp.ClientConnectionError:
            return 0, {"code": "tls-handshake-refused"}


async def delivered(world: World, mailbox: str, message_id: str) -> None:
    for _ in range(200):
        if await world.runtime.view.get(mailbox, message_id) is not None:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"{message_id} never reached {mailbox}")


async def document_known(world: World, document_id: str) -> None:
    for _ in range(200):
        state = await world.runtime.documents.state(document_id)
        if state is not None and state.recipients:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"{document_id} never reached the documents view")


def refused(answer: tuple[int, Any]) -> bool:
    status, body = answer
    return status == 0 or (
        status == 401
        and body.get("code", body.get("ErrorCode")) in ("unauthenticated", "replayed-request")
    )


def code_of(answer: tuple[int, Any]) -> str:
    return str(answer[1].get("code") or answer[1].get("ErrorCode"))


@pytest.mark.parametrize("method", ["token", "mtls", "hmac"])
async def test_a_valid_credential_acts_for_its_agency_only(world: World, method: str) -> None:
    async with aiohttp.ClientSession() as session:
        a = Caller(world, world.creds[(A, method, "valid")], session)
        b = Caller(world, world.creds[(B, method, "valid")], session)
        doc = f"{A102},2026/11/24,{method}/MATRIX"

        # send as: A as A is taken in; A as B is refused, and so is B as A
        status, body = await a.send(A102, B102, doc)
        assert status in (200, 202), body
        message_id = body.get("message_id") or body["DocId"]
        assert code_of(await a.send(B102, A102, f"{B102},2026/11/24,1/FORGED")) == "sender-mismatch"
        assert code_of(await b.send(A102, B102, f"{A102},2026/11/24,2/FORGED")) == "sender-mismatch"
        await delivered(world, B, message_id)

        # list: B sees it; A sees nothing of B's mailbox
        status, body = await b.listing(B)
        assert status == 200
        entries = body.get("envelopes") or body.get("data")
        assert [e.get("message_id") or e.get("docId") for e in entries] == [message_id]
        status, body = await a.listing(B)
        if method == "hmac":  # the SDK names no mailbox: the caller's own is listed
            assert status == 200 and body["data"] == []
        else:
            assert (status, body["code"]) == (403, "forbidden")

        # fetch: only B
        assert (await b.fetch(B, message_id))[0] == 200
        assert (await a.fetch(B, message_id))[0] in (403, 404)

        # acknowledge: only B
        assert (await a.ack(B, message_id))[0] in (403, 404)
        status, body = await b.ack(B, message_id)
        assert status == 200, body

        # delivery state: the sender sees it, the recipient does not
        await document_known(world, doc)
        status, body = await a.state(doc)
        assert status == 200, body
        if method == "hmac":
            assert [d["senderDocId"] for d in body["data"]] == [message_id]
        else:
            (recipient,) = body["recipients"]
            assert recipient["agency"] == B and recipient["route"] == "mailbox"
            status, other = await b.state(doc)
            assert (status, other["code"]) == (404, "not-found")


@pytest.mark.parametrize("state", ["expired", "revoked", "wrong secret"])
@pytest.mark.parametrize("method", ["token", "mtls", "hmac"])
async def test_any_other_credential_does_nothing(world: World, method: str, state: str) -> None:
    async with aiohttp.ClientSession() as session:
        good = Caller(world, world.creds[(A, "token", "valid")], session)
        status, body = await good.send(A102, B102, f"{A102},2026/11/24,{method}-{state}/M")
        assert status == 202
        message_id = body["message_id"]
        await delivered(world, B, message_id)
        for agency, mailbox in ((A, A), (B, B)):
            bad = Caller(world, world.creds[(agency, method, state)], session)
            other = B102 if agency == A else A102
            own = A102 if agency == A else B102
            answers = {
                "send": await bad.send(own, other, f"{own},2026/11/24,9/{state}"),
                "list": await bad.listing(mailbox),
                "fetch": await bad.fetch(B, message_id),
                "ack": await bad.ack(B, message_id),
                "state": await bad.state(f"{A102},2026/11/24,{method}-{state}/M"),
            }
            assert all(refused(a) for a in answers.values()), (agency, answers)
        entry = await world.runtime.view.get(B, message_id)
        assert entry is not None and entry.fetched_at_ms is None and entry.acked_at_ms is None


async def test_a_401_names_the_scheme_and_a_request_without_credentials_is_refused(
    world: World,
) -> None:
    async with aiohttp.ClientSession() as session:
        async with session.get(
            f"{world.url}/v1/mailboxes/{B}/envelopes", ssl=client_tls(world.ca_file)
        ) as resp:
            assert resp.status == 401
            assert resp.headers["WWW-Authenticate"].startswith("Bearer")
            assert (await resp.json())["code"] == "unauthenticated"
        async with session.get(f"{world.url}/healthz", ssl=client_tls(world.ca_file)) as resp:
            assert resp.status == 200


async def test_an_admin_token_reads_any_mailbox_but_acts_for_none(world: World) -> None:
    from broker.keys.files import ADMIN_TOKENS, new_admin_token

    settings = world.runtime.settings
    admin = new_admin_token(settings.key_file(settings.auth.admin_tokens_file, ADMIN_TOKENS))
    cred = Credential("token", {"Authorization": f"Bearer {admin}"}, client_tls(world.ca_file))
    async with aiohttp.ClientSession() as session:
        good = Caller(world, world.creds[(A, "token", "valid")], session)
        doc = f"{A102},2026/11/24,1/ADMIN"
        message_id = (await good.send(A102, B102, doc))[1]["message_id"]
        await delivered(world, B, message_id)
        boss = Caller(world, cred, session)
        assert (await boss.listing(B))[0] == 200
        assert (await boss.fetch(B, message_id))[0] == 200
        entry = await world.runtime.view.get(B, message_id)
        assert entry is not None and entry.fetched_at_ms is None, "an admin read delivers nothing"
        assert code_of(await boss.ack(B, message_id)) == "forbidden"
        assert code_of(await boss.send(A102, B102, f"{A102},2026/11/24,2/ADMIN")) == "forbidden"
        await document_known(world, doc)
        assert (await boss.state(doc))[0] == 200


async def test_an_sdk_system_is_served_over_https_and_may_register_its_sub_agencies(
    world: World,
) -> None:
    """The unchanged SDK signs no nonce: over TLS nobody can capture a request to replay
    it, and registerAgency's unsigned body cannot be swapped. A system allowed to manage
    agencies registers one, sends as it and reads its mailbox; others are refused."""
    system_id, secret = await runtime_system(
        world.runtime, A, system_id="qlvb-manager", manage_agencies=True
    )
    async with aiohttp.ClientSession() as session:
        sdk = SdkClient(
            session, f"{world.url}/vdxp", system_id, secret, ssl=client_tls(world.ca_file)
        )
        code, body = await sdk.received()
        assert code == 200 and body["status"] == "OK", body
        sub = {"code": "H35.S01.T1", "name": "Tổ liên thông", "pid": A}
        code, body = await sdk.call("registerAgency", body=json.dumps(sub).encode())
        assert code == 200 and body["status"] == "OK" and body["id"] == "H35.S01.T1", body
        # the system now sends as the sub-agency, and lists the sub-agency's mailbox
        package = document(
            sender="H35.S01.T1", recipients=(B102,), document_id="H35.S01.T1,2026/12/01,1/T"
        )
        code, sent = await sdk.send_edoc(package, "H35.S01.T1", [B102])
        assert code == 200 and sent["status"] == "OK", sent
        to_sub = document(
            sender=A102, recipients=("H35.S01.T1",), document_id=f"{A102},2026/12/01,2/T"
        )
        code, sent = await sdk.send_edoc(to_sub, A102, ["H35.S01.T1"])
        assert code == 200, sent
        for _ in range(200):
            code, listed = await sdk.received()
            if listed["data"]:
                break
            await asyncio.sleep(0.05)
        (entry,) = listed["data"]
        assert entry["docId"] == f"{sent['DocId']}_H35.S01.T1" and entry["to"] == "H35.S01.T1"
        assert (await sdk.get_edoc(entry["docId"]))[1]["status"] == "OK"
        assert (await sdk.update_status(entry["docId"]))[1]["status"] == "OK"
        # a system that was not allowed to manage agencies is refused
        other = world.creds[(B, "hmac", "valid")].sdk
        assert other is not None
        plain = SdkClient(session, f"{world.url}/vdxp", *other, ssl=client_tls(world.ca_file))
        code, body = await plain.call("deleteAgency", code="H35.S01.T1")
        assert code == 403 and body["ErrorCode"] == "forbidden", body
        code, body = await sdk.call("deleteAgency", code="H35.S01.T1")
        assert code == 200 and body["status"] == "OK", body
