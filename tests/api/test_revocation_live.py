"""A running docbroker (HTTP app, runtime, worker processes) takes a new CRL without a
restart: the certificate it revokes signs nothing more, and an unusable CRL file keeps
the last good one, saying so in /readyz and the metrics."""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient, TestServer

from adapters.http_api import build_app
from broker.config import load_settings
from broker.keys.devpki import crl_pem, issue, revoke
from broker.runtime import Runtime
from broker.trust.certs import KeyMaterial
from tests import pki
from tests.api.conftest import AgencyClient
from tests.api.test_envelope_flow import XML, wait_for_mailbox
from tests.edxml_samples import document
from tests.trust.signing import sign_as_sender

pytestmark = pytest.mark.parametrize("backend", ["embedded"])

SENDER, RECIPIENT = "000.00.00.H35", "000.00.01.H35"
INTERVAL = 0.3  # trust.crl_check_interval


@pytest.fixture
def signer() -> KeyMaterial:
    """The sender's certificate, made outside the event loop (an RSA key)."""
    return issue(pki.ca(), "to be revoked", uid=SENDER)


@pytest.fixture
async def api(api_settings_env: dict[str, str]) -> AsyncIterator[AgencyClient]:
    env = {
        **api_settings_env,
        "DOCBROKER_TRUST_DEFAULT_POLICY": "required",
        "DOCBROKER_TRUST_CRL_CHECK_INTERVAL": str(INTERVAL),
        "DOCBROKER_PIPELINE_PROCESSES": "1",  # the check runs in a worker process
    }
    client = TestClient(TestServer(build_app(Runtime.build(load_settings(None, env)))))
    await client.start_server()
    yield AgencyClient(client)
    await client.close()


def replace_file(path: Path, data: bytes) -> None:
    tmp = path.with_suffix(".new")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def signed(signer: KeyMaterial, n: int) -> bytes:
    doc = document(SENDER, (RECIPIENT,), document_id=f"{SENDER},2026/12/02,{n}/UBND-VP")
    return sign_as_sender(doc, signer)


async def refusal(runtime: Runtime, message_id: str, timeout: float = 20) -> dict:
    """The one problem of `message_id`'s dead letter, once the pipeline wrote it."""
    async with runtime.log.tailer([runtime.topics.rejected], {}) as tailer:
        deadline = asyncio.get_running_loop().time() + timeout
        while asyncio.get_running_loop().time() < deadline:
            for record in await tailer.poll(0.5, 10):
                if record.header_str("message-id") == message_id:
                    (problem,) = json.loads(record.header_str("problems"))
                    return problem
    raise AssertionError(f"{message_id} was not refused")


async def readiness(api: AgencyClient) -> str:
    return (await (await api.get("/readyz")).json())["checks"]["revocation"]


async def test_a_new_crl_refuses_the_next_signature_without_a_restart(
    api: AgencyClient, signer: KeyMaterial
) -> None:
    runtime = api.runtime
    crl = runtime.settings.keys_dir / "ca.crl.pem"
    assert (await api.post("/v1/envelopes", data=signed(signer, 1), headers=XML)).status == 202
    (delivered,) = await wait_for_mailbox(api, RECIPIENT)
    assert await readiness(api) == "ok"

    replace_file(crl, crl_pem(revoke(pki.ca(), [signer.certificate])))
    await asyncio.sleep(INTERVAL * 2)
    resp = await api.post("/v1/envelopes", data=signed(signer, 2), headers=XML)
    assert resp.status == 202  # the door does not verify signatures: the pipeline does
    problem = await refusal(runtime, (await resp.json())["message_id"])
    assert problem["code"] == "signer-untrusted" and "was revoked" in problem["message"]

    replace_file(crl, b"not a CRL at all")  # unusable: the revoking CRL stays in force
    await asyncio.sleep(INTERVAL * 2)
    check = await readiness(api)
    assert check.startswith(f"ok; {crl}: not a CRL") and "is kept" in check
    metrics = await (await api.get("/metrics")).text()
    assert f'docbroker_crl_file_failing{{file="{crl}"}} 1.0' in metrics
    resp = await api.post("/v1/envelopes", data=signed(signer, 3), headers=XML)
    assert "was revoked" in (await refusal(runtime, (await resp.json())["message_id"]))["message"]
    listing = await (await api.get(f"/v1/mailboxes/{RECIPIENT}/envelopes")).json()
    assert [e["message_id"] for e in listing["envelopes"]] == [delivered["message_id"]]
