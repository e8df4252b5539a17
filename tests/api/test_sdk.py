"""The national axis's SDK operations under /vdxp, driven by a client written from the
protocol notes (tests/sdk_client.py): a document and a status go through docbroker,
and each recipient receives them the way it would from the national axis."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from tests.api.conftest import AgencyClient
from tests.credentials import runtime_system
from tests.edxml_samples import document, status
from tests.forwarded import assert_forwarded
from tests.sdk_client import SdkClient

PROVINCE, OFFICE = "000.00.00.H35", "000.00.01.H35"

pytestmark = pytest.mark.usefixtures("no_blocking_loop")


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


async def sdk_for(
    api: AgencyClient, session: aiohttp.ClientSession, code: str, **kw: Any
) -> SdkClient:
    system_id, secret = await runtime_system(api.runtime, code, legacy=not kw.get("fresh", True))
    return SdkClient(session, str(api.server.make_url("/vdxp")), system_id, secret, **kw)


async def wait_received(sdk: SdkClient, messagetype: str, count: int = 1) -> list[dict]:
    for _ in range(300):
        status_, body = await sdk.received(messagetype)
        assert status_ == 200 and body["status"] == "OK", body
        if len(body["data"]) >= count:
            return body["data"]
        await asyncio.sleep(0.05)
    raise AssertionError(f"{count} {messagetype} never arrived")


async def take(sdk: SdkClient, entry: dict) -> bytes:
    """What a provincial system does with each entry: getEdoc, store, updateStatus done."""
    code, body = await sdk.get_edoc(entry["docId"])
    assert code == 200 and body["status"] == "OK", body
    data = base64.b64decode(body["data"])
    code, done = await sdk.update_status(entry["docId"], "done")
    assert code == 200 and done["status"] == "OK" and done["ErrorCode"] == "0", done
    return data


async def test_a_document_and_its_statuses_travel_through_the_sdk_surface(
    api: AgencyClient, session: aiohttp.ClientSession
) -> None:
    province = await sdk_for(api, session, PROVINCE)
    office = await sdk_for(api, session, OFFICE)
    doc_id = f"{PROVINCE},2026/11/24,7/SDK"
    package = document(sender=PROVINCE, recipients=(OFFICE,), document_id=doc_id)
    code, sent = await province.send_edoc(package, PROVINCE, [OFFICE])
    assert code == 200 and sent["status"] == "OK" and sent["ErrorCode"] == "0", sent

    (entry,) = await wait_received(office, "edoc")
    assert entry["docId"] == sent["docId"] and entry["from"] == PROVINCE
    assert (await office.count("countReceiveEdoc"))[1]["total"] == 1
    assert_forwarded(package, await take(office, entry))
    assert (await office.count("countReceiveEdoc"))[1]["total"] == 0

    # The office answers with a business status (03: accepted for handling), sent the
    # same way; the province receives docbroker's 01 (received) and then the 03.
    answer = status(sender=OFFICE, answers=PROVINCE, document_id=doc_id, code="03")
    code, sent_status = await office.send_edoc(answer, OFFICE, [PROVINCE], messagetype="status")
    assert code == 200 and sent_status["status"] == "OK", sent_status
    statuses = await wait_received(province, "status", 2)
    assert (await province.count("countReceiveStatus"))[1]["total"] == 2
    codes = []
    for e in statuses:
        data = await take(province, e)
        codes.append(api.runtime.processor.validator.check(data).status_code.value)
    assert sorted(codes) == ["01", "03"]
    assert (await province.received("status"))[1]["data"] == []

    code, mine = await province.sent()
    assert [d["documentId"] for d in mine["data"]] == [doc_id]


async def test_resending_answers_the_first_doc_id(
    api: AgencyClient, session: aiohttp.ClientSession
) -> None:
    province = await sdk_for(api, session, PROVINCE)
    package = document(sender=PROVINCE, recipients=(OFFICE,), document_id=f"{PROVINCE},x,1/R")
    first = (await province.send_edoc(package, PROVINCE, [OFFICE]))[1]
    office = await sdk_for(api, session, OFFICE)
    await wait_received(office, "edoc")
    again = (await province.send_edoc(package, PROVINCE, [OFFICE]))[1]
    assert again["status"] == "OK" and again["docId"] == first["docId"] and again["duplicate"]


async def test_update_status_fail_keeps_the_document_waiting(
    api: AgencyClient, session: aiohttp.ClientSession
) -> None:
    province = await sdk_for(api, session, PROVINCE)
    office = await sdk_for(api, session, OFFICE)
    package = document(sender=PROVINCE, recipients=(OFFICE,), document_id=f"{PROVINCE},x,2/F")
    await province.send_edoc(package, PROVINCE, [OFFICE])
    (entry,) = await wait_received(office, "edoc")
    assert (await office.update_status(entry["docId"], "fail"))[1]["status"] == "OK"
    assert [e["docId"] for e in await wait_received(office, "edoc")] == [entry["docId"]]


async def test_refusals_are_answered_in_the_sdk_form(
    api: AgencyClient, session: aiohttp.ClientSession
) -> None:
    province = await sdk_for(api, session, PROVINCE)
    package = document(sender=PROVINCE, recipients=(OFFICE,), document_id=f"{PROVINCE},x,3/B")

    async def fail(answer: tuple[int, dict], http: int, code: str) -> None:
        assert answer[0] == http and answer[1]["status"] == "FAIL", answer
        assert answer[1]["ErrorCode"] == code, answer

    await fail(await province.send_edoc(package, OFFICE, [OFFICE]), 403, "sender-mismatch")
    forged = document(sender=OFFICE, recipients=(PROVINCE,), document_id=f"{OFFICE},x,1/F")
    await fail(await province.send_edoc(forged, OFFICE, [PROVINCE]), 403, "sender-mismatch")
    await fail(
        await province.send_edoc(package, PROVINCE, [OFFICE], messagetype="status"),
        400,
        "bad-request",
    )
    await fail(await province.send_edoc(b"<edXML", PROVINCE, [OFFICE]), 400, "not-well-formed")
    await fail(await province.get_edoc("no-such-doc"), 404, "not-found")
    await fail(await province.call("noSuchOperation"), 404, "not-found")
    await fail(await province.update_status("no-such-doc", "done"), 404, "not-found")

    # the file's hash is signed: a swapped file is refused
    form = aiohttp.FormData()
    form.add_field("file_doc", package, filename="x.edxml", content_type="application/xml")
    headers = province.headers(**{"from": PROVINCE, "messagetype": "edoc", "hash-file": "ab" * 32})
    async with session.post(f"{province.base}/sendEdoc", data=form, headers=headers) as resp:
        await fail((resp.status, await resp.json()), 400, "bad-request")


async def test_replays_unsigned_and_legacy_requests(
    api: AgencyClient, session: aiohttp.ClientSession
) -> None:
    province = await sdk_for(api, session, PROVINCE)
    headers = province.headers(messagetype="edoc")
    url = f"{province.base}/getReceivedEdocList"
    async with session.post(url, headers=headers) as resp:
        assert resp.status == 200
    async with session.post(url, headers=headers) as resp:
        body = await resp.json()
        assert resp.status == 401 and body["ErrorCode"] == "replayed-request", body
    async with session.post(url) as resp:
        assert resp.status == 401 and (await resp.json())["ErrorCode"] == "unauthenticated"
    # an unchanged SDK client signs no timestamp or nonce: refused unless registered legacy
    stale = SdkClient(session, province.base, province.system_id, province.secret, fresh=False)
    code, body = await stale.received()
    assert code == 401 and "replay protection" in body["ErrorDesc"]
    # registered legacy, it is still refused over plain HTTP (accepted over HTTPS:
    # tests/api/test_access.py)
    legacy = await sdk_for(api, session, OFFICE, fresh=False)
    code, body = await legacy.received()
    assert code == 401 and "only over HTTPS" in body["ErrorDesc"], body


async def test_the_directory_in_both_code_forms(
    api: AgencyClient, session: aiohttp.ClientSession
) -> None:
    province = await sdk_for(api, session, PROVINCE)
    code, by102 = await province.call("getAgenciesList")
    assert code == 200 and len(by102["data"]) == 150
    office = next(a for a in by102["data"] if a["code"] == OFFICE)
    assert office["pid"] == PROVINCE
    code, by20 = await province.call("getAgenciesListQD20")
    assert {"code": "H35.S01", "pid": "H35"}.items() <= next(
        a for a in by20["data"] if a["code"] == "H35.S01"
    ).items()
