"""Resends and who owns a DocumentId, on each backend, through the HTTP API.

A QLVB that did not see an answer sends again, at once or after a timeout, to the
same instance or another. Each resend must be answered with the first message id,
and the output must hold exactly one delivery per recipient and no status 02 about a
document that was delivered (tests/ledger.py counts every record). A document is
(sender, DocumentId): another agency using the same DocumentId first does not make
it its own.
"""

from __future__ import annotations

import asyncio
import shutil
import urllib.parse
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient, TestServer

from adapters.http_api import build_app
from broker.config import load_settings
from broker.core.records import idempotency_key
from broker.runtime import Runtime
from tests.api.conftest import AgencyClient
from tests.api.test_envelope_flow import wait_for_mailbox
from tests.e2e.faults import EVERY_BACKEND
from tests.edxml_samples import document
from tests.ledger import Expected, Ledger, audit_verifies

pytestmark = [pytest.mark.usefixtures("no_blocking_loop"), EVERY_BACKEND]

XML = {"Content-Type": "application/xml"}
SENDER, RECIPIENTS = "000.00.00.H35", ("000.00.01.H35", "000.00.02.H35")
DELIVERED_TO = ("H35.S01", "H35.S02")


async def wait_settled(env: dict[str, str], expected: Expected, timeout: float = 30) -> Ledger:
    """The ledger once the expected deliveries are there (or the time is up)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        ledger = await asyncio.to_thread(Ledger.read, env)
        if not ledger.discrepancies(expected) or loop.time() > deadline:
            return ledger
        await asyncio.sleep(0.2)


async def test_a_resend_right_after_is_answered_with_the_first_message_id(
    api: AgencyClient, api_settings_env: dict[str, str]
) -> None:
    """Two curls in a row: the second arrives before the pipeline committed the first."""
    doc_id = f"{SENDER},2026/12/01,1/RESEND"
    data = document(sender=SENDER, recipients=RECIPIENTS, document_id=doc_id)
    first = await api.post("/v1/envelopes", data=data, headers=XML)
    again = await api.post("/v1/envelopes", data=data, headers=XML)
    assert first.status == 202 and again.status == 200, await again.text()
    a, b = await first.json(), await again.json()
    assert b["message_id"] == a["message_id"] and b["duplicate"] is True
    expected = Expected("H35", {doc_id: DELIVERED_TO}, resent={doc_id: 2})
    ledger = await wait_settled(api_settings_env, expected)
    assert ledger.discrepancies(expected) == []


async def test_concurrent_resends_of_the_same_bytes(
    api: AgencyClient, api_settings_env: dict[str, str]
) -> None:
    """Eight documents, each sent four times at once (32 requests: as many as an agency
    may have under way, http.agency_max_requests): every answer names the first
    message id, each document is delivered once per recipient, no false 02."""
    docs = {f"{SENDER},2026/12/01,{n}/BURST": DELIVERED_TO for n in range(8)}

    async def send(doc_id: str) -> tuple[int, str]:
        data = document(sender=SENDER, recipients=RECIPIENTS, document_id=doc_id)
        resp = await api.post("/v1/envelopes", data=data, headers=XML)
        body = await resp.json()
        assert "message_id" in body, (resp.status, body)
        return resp.status, body["message_id"]

    await api.token(SENDER)  # made once, before the burst
    answers = await asyncio.gather(*(send(d) for d in docs for _ in range(4)))
    for i, doc_id in enumerate(docs):
        mine = answers[4 * i : 4 * i + 4]
        assert sorted(s for s, _ in mine) == [200, 200, 200, 202], (doc_id, mine)
        assert len({m for _, m in mine}) == 1, (doc_id, mine)
    expected = Expected("H35", docs, resent=dict.fromkeys(docs, 4))
    ledger = await wait_settled(api_settings_env, expected)
    assert ledger.discrepancies(expected) == [], ledger.summary()
    assert ledger.summary()["statuses_02"] == 0
    assert (await asyncio.to_thread(audit_verifies, api_settings_env))[0]


@pytest.fixture
async def second(
    api_settings_env: dict[str, str], api: AgencyClient, tmp_path: Path
) -> AsyncIterator[AgencyClient]:
    """Another instance of the same deployment: the same log (and keys), its own views,
    door and memory."""
    data = Path(api_settings_env["DOCBROKER_DATA_DIR"])
    shutil.copytree(data / "keys", tmp_path / "second" / "keys")
    env = {
        **api_settings_env,
        "DOCBROKER_DATA_DIR": str(tmp_path / "second"),
        "DOCBROKER_BACKEND_EMBEDDED_PATH": str(data / "log.sqlite"),
        "DOCBROKER_INSTANCE": "second",
    }
    settings = load_settings(None, env)
    runtime = Runtime.build(settings)
    client = TestClient(TestServer(build_app(runtime)))
    await client.start_server()
    other = AgencyClient(client)
    for code in (SENDER, "000.00.01.H35"):
        other.tokens[code] = await api.token(code)
    await runtime.directory.follower.caught_up()
    yield other
    await client.close()


async def test_a_resend_to_another_instance(
    api: AgencyClient, second: AgencyClient, api_settings_env: dict[str, str]
) -> None:
    """Resent to the other instance, at once and later: answered with the first id once
    the other instance has followed the claim; before that, taken in and recorded by
    the pipeline as a duplicate. Either way one delivery per recipient, no 02."""
    docs = {f"{SENDER},2026/12/01,{n}/OTHER": DELIVERED_TO for n in range(10)}
    ids = {}
    for doc_id in docs:
        data = document(sender=SENDER, recipients=RECIPIENTS, document_id=doc_id)
        first = await api.post("/v1/envelopes", data=data, headers=XML)
        assert first.status == 202
        ids[doc_id] = (await first.json())["message_id"]
        quick = await second.post("/v1/envelopes", data=data, headers=XML)
        assert quick.status in (200, 202), await quick.text()
    expected = Expected("H35", docs, resent=dict.fromkeys(docs, 2))
    ledger = await wait_settled(api_settings_env, expected)
    assert ledger.discrepancies(expected) == [], ledger.summary()
    for doc_id in docs:  # by now the other instance knows each claim
        data = document(sender=SENDER, recipients=RECIPIENTS, document_id=doc_id)
        late = await second.post("/v1/envelopes", data=data, headers=XML)
        body = await late.json()
        assert late.status == 200 and body["message_id"] == ids[doc_id], body


async def test_an_idempotency_key_is_known_to_every_instance(
    api: AgencyClient, second: AgencyClient, api_settings_env: dict[str, str]
) -> None:
    """A status (no DocumentId of its own to recognise it by) retried with its key at the
    other instance: at once, it may be taken in again and the pipeline records it as a
    duplicate (delivered once); once that instance knows the key, the first answer;
    another body under the key is refused."""
    from tests.edxml_samples import status

    answer = status(sender="000.00.01.H35", answers=SENDER, document_id=f"{SENDER},x,1/S")
    key = {"Idempotency-Key": "retry-me-1", **XML}
    first = await api.post("/v1/envelopes", data=answer, headers=key)
    assert first.status == 202
    message_id = (await first.json())["message_id"]
    quick = await second.post("/v1/envelopes", data=answer, headers=key)
    assert quick.status in (200, 202)
    later = status(sender="000.00.01.H35", answers=SENDER, document_id=f"{SENDER},x,3/S")
    key = {"Idempotency-Key": "retry-me-2", **XML}
    first = await api.post("/v1/envelopes", data=later, headers=key)
    assert first.status == 202
    message_id = (await first.json())["message_id"]
    slot = idempotency_key("H35.S01", "retry-me-2")
    for _ in range(200):
        if second.runtime.dedup.lookup(*slot) is not None:
            break
        await asyncio.sleep(0.05)
    again = await second.post("/v1/envelopes", data=later, headers=key)
    assert again.status == 200 and (await again.json())["message_id"] == message_id
    await asyncio.sleep(1)
    statuses = await asyncio.to_thread(lambda: Ledger.read(api_settings_env).statuses())
    assert statuses[("03", f"{SENDER},x,1/S", "H35")] == 1, statuses
    assert statuses[("03", f"{SENDER},x,3/S", "H35")] == 1, statuses
    other = status(sender="000.00.01.H35", answers=SENDER, document_id=f"{SENDER},x,2/S")
    reused = await second.post("/v1/envelopes", data=other, headers=key)
    assert reused.status == 422 and (await reused.json())["code"] == "idempotency-key-reused"


async def test_a_slow_append_is_answered_503_and_its_resend_recognised(
    api: AgencyClient, api_settings_env: dict[str, str]
) -> None:
    """The log takes longer than http.append_timeout: 503 with Retry-After instead of
    holding the client; a resend while it is still being written is told to retry; once
    it landed, the resend gets its message id."""
    runtime = api.runtime
    real_append = runtime.log.append
    release = asyncio.Event()

    async def slow(records):  # type: ignore[no-untyped-def]
        if any(r.topic == runtime.topics.inbound for r in records):
            await release.wait()
        return await real_append(records)

    doc_id = f"{SENDER},2026/12/01,1/SLOW"
    data = document(sender=SENDER, recipients=RECIPIENTS, document_id=doc_id)
    runtime.settings = replace(
        runtime.settings, http=replace(runtime.settings.http, append_timeout=0.5)
    )
    runtime.log.append = slow  # type: ignore[method-assign]
    try:
        first = await api.post("/v1/envelopes", data=data, headers=XML)
        assert first.status == 503 and first.headers["Retry-After"], await first.text()
        pending = await api.post("/v1/envelopes", data=data, headers=XML)
        assert pending.status == 503 and "still being written" in (await pending.json())["detail"]
        waiting = asyncio.ensure_future(api.post("/v1/envelopes", data=data, headers=XML))
        await asyncio.sleep(0.1)
        release.set()
        waited = await waiting  # held while the first lands, then answered with its id
        assert waited.status == 200 and (await waited.json())["duplicate"] is True
        posts = 3
        for _ in range(100):
            posts += 1
            landed = await api.post("/v1/envelopes", data=data, headers=XML)
            if landed.status != 503:
                break
            await asyncio.sleep(0.05)
    finally:
        runtime.log.append = real_append  # type: ignore[method-assign]
    assert landed.status == 200 and (await landed.json())["duplicate"] is True
    expected = Expected("H35", {doc_id: DELIVERED_TO}, resent={doc_id: posts})
    ledger = await wait_settled(api_settings_env, expected)
    assert ledger.discrepancies(expected) == []


async def test_a_document_is_its_senders_whoever_used_the_id_first(api: AgencyClient) -> None:
    """Another agency submits the province's (predictable) DocumentId first: the
    province still sees its document and its recipients; the other sees only its own."""
    doc_id = f"{SENDER},2026/12/01,9/UBND-VP"
    squat = document(sender="000.00.02.H35", recipients=("000.00.01.H35",), document_id=doc_id)
    assert (await api.post("/v1/envelopes", data=squat, headers=XML)).status == 202
    await wait_for_mailbox(api, "000.00.01.H35")
    real = document(sender=SENDER, recipients=("000.00.03.H35",), document_id=doc_id)
    assert (await api.post("/v1/envelopes", data=real, headers=XML)).status == 202
    await wait_for_mailbox(api, "000.00.03.H35")
    path = "/v1/documents/" + urllib.parse.quote(doc_id, safe="")
    state = None
    for _ in range(100):
        resp = await api.get(path, headers=await api.auth(SENDER))
        if resp.status == 200:
            state = await resp.json()
            if state["recipients"]:
                break
        await asyncio.sleep(0.05)
    assert state is not None and state["sender"] == SENDER
    assert [r["agency"] for r in state["recipients"]] == ["H35.S03"]
    theirs = await (await api.get(path, headers=await api.auth("000.00.02.H35"))).json()
    assert theirs["sender"] == "000.00.02.H35"
    assert [r["agency"] for r in theirs["recipients"]] == ["H35.S01"]
    trace = await (await api.get(path + "/trace", headers=await api.auth(SENDER))).json()
    assert {e["sender"] for e in trace["events"] if e["type"] == "accepted"} == {SENDER}
