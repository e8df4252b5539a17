"""The SDK surface (/vdxp) as the unchanged SDK calls it, in detail: each operation, its
answer fields, and its refusals in the form the SDK reads.

The client (tests/sdk_client.py) keeps the SDK's parameter map and signs as the jars
do (checked against the jars in tests/interop/); the same scenarios with the real
jars against real daemons are in tests/interop/test_sdk_daemon.py. The in-process
server here speaks plain HTTP, so the systems are allowed plain HTTP from loopback.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from broker import vdxp
from tests.api.conftest import AgencyClient
from tests.credentials import runtime_system
from tests.edxml_samples import document, full_document, hop, status
from tests.forwarded import assert_forwarded
from tests.sdk_client import SdkClient

PROVINCE, OFFICE = "000.00.00.H35", "000.00.01.H35"
LOOPBACK = ("127.0.0.1/32", "::1/128")

pytestmark = pytest.mark.usefixtures("no_blocking_loop")


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


async def sdk_for(
    api: AgencyClient, session: aiohttp.ClientSession, code: str, **flags: Any
) -> SdkClient:
    flags = {"plain_http": True, "networks": LOOPBACK, **flags}
    system_id, secret = await runtime_system(api.runtime, code, **flags)
    return SdkClient(session, str(api.server.make_url("/vdxp")), system_id, secret)


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


async def assert_fail(answer: tuple[int, dict], http: int, code: str, *fields: str) -> None:
    """A refusal the SDK can read: FAIL, the problem code, a reason, and `fields`."""
    assert answer[0] == http and answer[1]["status"] == "FAIL", answer
    assert answer[1]["ErrorCode"] == code and answer[1]["ErrorDesc"], answer
    assert all(f in answer[1] for f in fields), answer


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
    assert entry["docId"] == sent["DocId"] and entry["from"] == PROVINCE
    assert entry["to"] == OFFICE and entry["status"] == "initial" and entry["status_desc"]
    assert entry["serviceType"] == "eDoc" and entry["messageType"] == "edoc"
    assert (await office.count("countReceiveEdoc"))[1]["count"] == 1
    assert_forwarded(package, await take(office, entry))
    assert (await office.count("countReceiveEdoc"))[1]["count"] == 0

    # The office answers with a business status (03: accepted for handling), sent the
    # same way; the province receives docbroker's 01 (received) and then the 03.
    answer = status(sender=OFFICE, answers=PROVINCE, document_id=doc_id, code="03")
    code, sent_status = await office.send_edoc(answer, OFFICE, [PROVINCE], messagetype="status")
    assert code == 200 and sent_status["status"] == "OK", sent_status
    statuses = await wait_received(province, "status", 2)
    assert (await province.count("countReceiveStatus"))[1]["count"] == 2
    codes = []
    for e in statuses:
        data = await take(province, e)
        codes.append(api.runtime.processor.validator.check(data).status_code.value)
    assert sorted(codes) == ["01", "03"]
    assert (await province.received("status"))[1]["data"] == []

    for _ in range(100):
        code, mine = await province.sent()
        if mine["data"] and mine["data"][0]["sendStatus"] == "done":
            break
        await asyncio.sleep(0.05)
    (copy,) = mine["data"]
    assert copy == vdxp.sent_item(
        sender_doc_id=sent["DocId"],
        receiver_doc_id=sent["DocId"],
        from_code=PROVINCE,
        to_code=OFFICE,
        message_type="edoc",
        transport="done",
        # the latest status by the time docbroker took it: the 01 made from the
        # acknowledgement and the office's 03 race through two partitions
        status_code=copy["receiveStatus"],
        title="V/v kết nối, liên thông phần mềm quản lý văn bản",
        notation="12/UBND-VP",
        sent_time=copy["sentTime"],
        received_time=copy["receivedTime"],
    )
    assert copy["sentTime"] and copy["receivedTime"] and copy["receiveStatus"] in ("01", "03")


async def test_download_edoc_gives_the_bytes_and_records_the_fetch(
    api: AgencyClient, session: aiohttp.ClientSession
) -> None:
    province = await sdk_for(api, session, PROVINCE)
    office = await sdk_for(api, session, OFFICE)
    package = document(sender=PROVINCE, recipients=(OFFICE,), document_id=f"{PROVINCE},x,9/D")
    await province.send_edoc(package, PROVINCE, [OFFICE])
    (entry,) = await wait_received(office, "edoc")
    code, data = await office.download(entry["docId"])
    assert code == 200
    assert_forwarded(package, data)
    code, got = await office.get_edoc(entry["docId"])
    assert hashlib.sha256(base64.b64decode(got["data"])).digest() == hashlib.sha256(data).digest()
    assert (await office.received())[1]["data"][0]["status"] == "processing"
    assert (await office.update_status(entry["docId"]))[1]["status"] == "OK"


async def test_resending_answers_the_first_doc_id(
    api: AgencyClient, session: aiohttp.ClientSession
) -> None:
    province = await sdk_for(api, session, PROVINCE)
    package = document(sender=PROVINCE, recipients=(OFFICE,), document_id=f"{PROVINCE},x,1/R")
    first = (await province.send_edoc(package, PROVINCE, [OFFICE]))[1]
    office = await sdk_for(api, session, OFFICE)
    await wait_received(office, "edoc")
    again = (await province.send_edoc(package, PROVINCE, [OFFICE]))[1]
    assert again["status"] == "OK" and again["DocId"] == first["DocId"] and again["duplicate"]


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
    mismatch = (403, "sender-mismatch", "DocId")
    await assert_fail(await province.send_edoc(package, OFFICE, [OFFICE]), *mismatch)
    forged = document(sender=OFFICE, recipients=(PROVINCE,), document_id=f"{OFFICE},x,1/F")
    await assert_fail(await province.send_edoc(forged, OFFICE, [PROVINCE]), *mismatch)
    await assert_fail(
        await province.send_edoc(package, PROVINCE, [OFFICE], messagetype="status"),
        400,
        "bad-request",
        "DocId",
    )
    broken = await province.send_edoc(b"<edXML", PROVINCE, [OFFICE])
    await assert_fail(broken, 400, "not-well-formed")
    await assert_fail(await province.get_edoc("no-such-doc"), 404, "not-found", "data")
    await assert_fail(await province.call("noSuchOperation"), 404, "not-found")
    await assert_fail(await province.update_status("no-such-doc", "done"), 404, "not-found")

    # the package's hash is signed: a swapped package is refused
    headers = province.headers(
        vdxp.OCTET_STREAM, **{"hash-file": vdxp.sdk_hash_file(b"another package")}
    )
    answer = await province.raw("POST", "sendEdoc", headers, vdxp.send_edoc_body(package))
    await assert_fail((answer[0], json.loads(answer[1])), 400, "bad-request", "DocId")


async def test_done_before_any_fetch_is_refused(
    api: AgencyClient, session: aiohttp.ClientSession
) -> None:
    """The unchanged SDK's getEdoc and updateStatus of one package can carry the same
    signed headers: a replayed getEdoc must not confirm a package never received."""
    province = await sdk_for(api, session, PROVINCE)
    office = await sdk_for(api, session, OFFICE)
    package = document(sender=PROVINCE, recipients=(OFFICE,), document_id=f"{PROVINCE},x,4/N")
    await province.send_edoc(package, PROVINCE, [OFFICE])
    (entry,) = await wait_received(office, "edoc")
    await assert_fail(await office.update_status(entry["docId"]), 409, "not-fetched")
    assert [e["docId"] for e in (await office.received())[1]["data"]] == [entry["docId"]]


async def test_only_signed_parameters_are_acted_on(
    api: AgencyClient, session: aiohttp.ClientSession
) -> None:
    """Left-over parameters travel signed and are ignored where an operation does not
    take them; a parameter sent but not signed refuses the request."""
    province = await sdk_for(api, session, PROVINCE)
    office = await sdk_for(api, session, OFFICE)
    package = document(sender=PROVINCE, recipients=(OFFICE,), document_id=f"{PROVINCE},x,5/L")
    await province.send_edoc(package, PROVINCE, [OFFICE])
    (entry,) = await wait_received(office, "edoc")
    await take(office, entry)
    # the office's map now holds docId and status=done: a list call signs them again
    code, listed = await office.received()
    assert code == 200 and listed["data"] == []
    assert "docId" in office.entries.entries and "status" in office.entries.entries

    # a docId header that is not in the signed set: refused, never used
    fresh = SdkClient(session, office.base, office.system_id, office.secret)
    unsigned = [*fresh.headers(), ("XroadVnpt-docId", entry["docId"])]
    code, body = await fresh.raw("POST", "getEdoc", unsigned, b"{}")
    answer = json.loads(body)
    assert code == 401 and answer["ErrorCode"] == "unauthenticated", answer
    assert "is not signed" in answer["ErrorDesc"] and answer["data"] == ""


async def test_plain_http_only_for_a_system_allowed_it_and_only_from_its_networks(
    api: AgencyClient, session: aiohttp.ClientSession
) -> None:
    https_only = await sdk_for(api, session, PROVINCE, plain_http=False, networks=())
    code, body = await https_only.received()
    assert code == 403 and body["ErrorCode"] == "insecure-transport", body
    assert "HTTPS only" in body["ErrorDesc"] and body["data"] == []
    elsewhere = await sdk_for(api, session, OFFICE, system_id="elsewhere", networks=("10.0.0.0/8",))
    code, body = await elsewhere.received()
    assert code == 403 and body["ErrorCode"] == "insecure-transport", body
    metrics = (await (await api.get("/metrics")).text()).splitlines()
    assert any(
        line.startswith("docbroker_sdk_requests_total{")
        and 'outcome="insecure-transport"' in line
        and 'transport="plain"' in line
        for line in metrics
    ), [m for m in metrics if "sdk" in m]


async def test_wrong_secret_and_unsigned_requests(
    api: AgencyClient, session: aiohttp.ClientSession
) -> None:
    province = await sdk_for(api, session, PROVINCE)
    wrong = SdkClient(session, province.base, province.system_id, "not-the-secret")
    await assert_fail(await wrong.received(), 401, "unauthenticated", "data")
    async with session.post(f"{province.base}/getReceivedEdocList") as resp:
        body = await resp.json()
        assert resp.status == 401 and body["ErrorCode"] == "unauthenticated"


async def test_the_directory_in_both_code_forms(
    api: AgencyClient, session: aiohttp.ClientSession
) -> None:
    province = await sdk_for(api, session, PROVINCE)
    code, by102 = await province.call("getAgenciesList")
    assert code == 200 and len(by102["data"]) == 150
    office = next(a for a in by102["data"] if a["code"] == OFFICE)
    assert office["id"] == "H35.S01" and office["pid"] == "H35" and "oldCode" in office
    code, by20 = await province.call("getAgenciesListQD20")
    assert {"code": "H35.S01", "pid": "H35", "id": "H35.S01", "code102": OFFICE}.items() <= next(
        a for a in by20["data"] if a["code"] == "H35.S01"
    ).items()
    code, units = await province.call("getSynchronizeUnit")
    unit = next(u for u in units["data"] if u["code"] == "H35.S01")
    assert unit["version"] > 0 and unit["deleted"] is False and unit["isAgency"] is True
    assert unit["modifyDate"] and unit["centerCode"]
    versions = [u["version"] for u in units["data"]]
    assert versions == sorted(versions) and len(versions) == 150 and max(versions) < 2**31


async def test_agencies_are_managed_only_by_allowed_systems_and_only_over_https(
    api: AgencyClient, session: aiohttp.ClientSession
) -> None:
    plain = await sdk_for(api, session, PROVINCE)
    body = '{"code": "H35.S01.X1", "name": "Tổ công tác"}'.encode()
    await assert_fail(await plain.call("registerAgency", body=body), 403, "forbidden")
    await assert_fail(await plain.call("deleteAgency", code="H35.S01"), 403, "forbidden")
    manager = await sdk_for(api, session, OFFICE, manage_agencies=True)
    await assert_fail(await manager.call("registerAgency", body=body), 403, "insecure-transport")
    await assert_fail(await manager.call("deleteAgency", code="H35"), 403, "forbidden")


async def test_an_irregular_package_is_accepted_and_its_warnings_reach_the_sdk_user(
    api: AgencyClient, session: aiohttp.ClientSession
) -> None:
    """Warnings travel in `warnings` and, where the SDK's user reads, in ErrorDesc."""
    province = await sdk_for(api, session, PROVINCE)
    irregular = full_document(trace=hop("null"), extra_header="<edXML:Vendor>x</edXML:Vendor>")
    code, sent = await province.send_edoc(irregular, PROVINCE, ["000.00.01.H35"])
    assert code == 200 and sent["status"] == "OK" and sent["DocId"], sent
    assert [w["code"] for w in sent["warnings"]] == ["unknown-element", "trace-organ-id-missing"]
    assert "trace-organ-id-missing" in sent["ErrorDesc"]
