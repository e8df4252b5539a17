"""The national axis simulator takes requests in the SDK's exact form and answers in
the shapes the SDK reads: documents kept per serving system, ExistDoc on resends,
signatures checked as the SDK signs, agencies listed and registered.

Requests here are built as the SDK builds them (tests/axis/kit.py); tests/interop runs
the real SDK's jars against the simulator."""

from __future__ import annotations

import base64
import hashlib
from dataclasses import replace

import pytest

from adapters.national_axis.client import SdkRequest, send_edoc_request
from broker import vdxp
from tests.axis.kit import PACKAGE, SECRET_A, SECRET_B, STAMP, VN_TIME, Caller, sim_state
from tests.edxml_samples import document, status

# -- documents -------------------------------------------------------------------------


async def test_a_document_reaches_the_serving_system_only(pair: tuple[Caller, Caller]) -> None:
    a, b = pair
    status, body = await a.send_edoc(PACKAGE, ["000.00.05.H36"])
    assert status == 200 and body["status"] == "OK" and body["ErrorCode"] == "0", body
    sent_id = body["DocId"]

    assert await a.received() == []
    [entry] = await b.received()
    doc_id = entry["docId"]
    assert doc_id != sent_id, "the recipient takes it under its own docId"
    assert entry == vdxp.received_item(
        doc_id, "000.00.01.H35", "000.00.05.H36", "edoc",
        entry["created_time"], entry["updated_time"], "initial",
    )  # fmt: skip
    assert VN_TIME.fullmatch(entry["created_time"])
    assert (await b.call("countReceiveEdoc"))[1]["count"] == 1

    status, body = await b.call("getEdoc", docId=doc_id)
    assert status == 200 and body["status"] == "OK"
    assert base64.b64decode(body["data"]) == PACKAGE
    resp = await b.client.get(
        "/downloadEdoc", headers=b.request("downloadEdoc", docId=doc_id).headers
    )
    assert resp.status == 200 and await resp.read() == PACKAGE
    assert [e["status"] for e in await b.received()] == ["processing"]

    # the sender cannot fetch it, nor acknowledge it
    status, body = await a.call("getEdoc", docId=doc_id)
    assert (status, body["status"], body["ErrorCode"], body["data"]) == (
        200,
        "FAIL",
        "NotFound",
        "",
    )
    assert (await a.call("updateStatus", docId=doc_id, status="done"))[1]["ErrorCode"] == "NotFound"

    status, body = await b.call("updateStatus", docId=doc_id, status="fail")
    assert (status, body["status"]) == (200, "OK")
    assert [(e["docId"], e["status"]) for e in await b.received()] == [(doc_id, "fail")]
    assert (await sim_state(a))["fails"] == {doc_id: 1}

    assert (await b.call("updateStatus", docId=doc_id, status="done"))[1]["status"] == "OK"
    assert await b.received() == []
    assert (await b.call("countReceiveEdoc"))[1]["count"] == 0
    assert (await b.call("getEdoc", docId=doc_id))[1]["status"] == "OK", "still fetchable"

    [copy] = await a.sent()
    assert copy | {"sentTime": "?", "receivedTime": "?"} == vdxp.sent_item(
        sender_doc_id=sent_id, receiver_doc_id=doc_id, from_code="000.00.01.H35",
        to_code="000.00.05.H36", message_type="edoc", transport="done", status_code="",
        title="", notation="", sent_time="?", received_time="?",
    )  # fmt: skip
    assert VN_TIME.fullmatch(copy["sentTime"]) and VN_TIME.fullmatch(copy["receivedTime"])
    assert await b.sent() == []


async def test_the_sent_list_carries_subject_notation_and_the_latest_status(
    pair: tuple[Caller, Caller],
) -> None:
    """The sent list reads the package for its title and notation, and shows the
    latest business status the recipient's system sent about it."""
    a, b = pair
    doc = "000.00.01.H35,2026/11/24,12/UBND-VP"
    package = document("000.00.01.H35", ["000.00.05.H36"], doc, subject="Về việc họp")
    await a.send_edoc(package, ["000.00.05.H36"])
    [copy] = await a.sent()
    assert (copy["title"], copy["notation"], copy["receiveStatus"]) == (
        "Về việc họp",
        "12/UBND-VP",
        "",
    )
    answer = status("000.00.05.H36", "000.00.01.H35", doc, "03")
    status_code, body = await b.send_edoc(
        answer, ["000.00.01.H35"], sender="000.00.05.H36", messagetype="status"
    )
    assert (status_code, body["status"]) == (200, "OK"), body
    copy = next(c for c in await a.sent() if c["messageType"] == "edoc")
    assert (copy["receiveStatus"], copy["receiveStatusDesc"]) == ("03", "Đã tiếp nhận")


async def test_lists_are_oldest_first_and_sent_newest_first(pair: tuple[Caller, Caller]) -> None:
    a, b = pair
    ids = [(await a.send_edoc(PACKAGE + bytes([i]), ["H36"]))[1]["DocId"] for i in range(3)]
    assert len({e["docId"] for e in await b.received()}) == 3
    assert [e["senderDocId"] for e in await a.sent()] == ids[::-1]


async def test_only_the_sdks_http_methods_are_taken(pair: tuple[Caller, Caller]) -> None:
    """Every operation is a POST, downloadEdoc alone a GET (countReceiveEdoc too is a
    POST: the SDK names it GET but posts `{}`)."""
    a, _ = pair
    wrong = replace(a.request("getReceivedEdocList", messagetype="edoc"), method="GET")
    status, body = await a.send(wrong)
    assert (status, body["ErrorCode"], body["data"]) == (405, "MethodNotAllowed", [])
    status, body = await a.send(replace(a.request("downloadEdoc", docId="x"), method="POST"))
    assert (status, body["ErrorCode"]) == (405, "MethodNotAllowed")


async def test_status_messages_are_listed_apart(pair: tuple[Caller, Caller]) -> None:
    a, b = pair
    await a.send_edoc(PACKAGE, ["000.00.05.H36"])
    await b.send_edoc(b"<status/>", ["H35.S01"], sender="H36.S05", messagetype="status")
    assert [e["messageType"] for e in await b.received("edoc")] == ["edoc"]
    assert await b.received("status") == []
    [listed] = await a.received("status")
    assert (listed["messageType"], listed["to"], listed["from"]) == ("status", "H35.S01", "H36.S05")
    assert await a.received("edoc") == []
    assert (await a.call("countReceiveStatus"))[1]["count"] == 1
    assert (await a.call("countReceiveEdoc"))[1]["count"] == 0


async def test_resending_the_same_bytes_is_exist_doc(pair: tuple[Caller, Caller]) -> None:
    """A resend is answered ExistDoc with the DocId of the first sending, so that a
    sender whose first answer was lost still learns it."""
    a, b = pair
    first = (await a.send_edoc(PACKAGE, ["000.00.05.H36"]))[1]["DocId"]
    for to in (["000.00.05.H36"], ["H36.S05"]):  # either code form names the recipient
        status, body = await a.send_edoc(PACKAGE, to)
        assert (status, body["status"], body["ErrorCode"]) == (200, "FAIL", "ExistDoc")
        assert body["DocId"] == first
    assert len(await b.received()) == 1
    # the same bytes to another recipient are a new delivery
    assert (await a.send_edoc(PACKAGE, ["000.00.00.H36"]))[1]["status"] == "OK"
    assert len(await b.received()) == 2
    assert (await sim_state(a))["entries_total"] == 2


async def test_recipients_of_one_system_share_a_doc_id(pair: tuple[Caller, Caller]) -> None:
    a, b = pair
    await a.send_edoc(PACKAGE, ["000.00.00.H36", "H36.S05"])
    listed = await b.received()
    assert [e["to"] for e in listed] == ["000.00.00.H36", "H36.S05"]
    (doc_id,) = {e["docId"] for e in listed}
    assert base64.b64decode((await b.call("getEdoc", docId=doc_id))[1]["data"]) == PACKAGE
    assert (await b.call("updateStatus", docId=doc_id, status="done"))[1]["status"] == "OK"
    assert await b.received() == []


async def test_unknown_recipients_store_nothing(pair: tuple[Caller, Caller]) -> None:
    a, b = pair
    for to in (["000.00.09.H99"], ["000.00.05.H36", "000.00.00.G09"]):  # G09 is not local
        status, body = await a.send_edoc(PACKAGE, to)
        assert (status, body["status"], body["ErrorCode"], body["DocId"]) == (
            200,
            "FAIL",
            "AgencyNotFound",
            "",
        )
    assert await b.received() == []
    assert (await sim_state(a))["entries_total"] == 0


async def test_a_system_sends_only_as_the_agencies_it_serves(pair: tuple[Caller, Caller]) -> None:
    """As its agencies and its own broker (organ_id); another system's agency is
    refused, an unknown one too."""
    a, b = pair
    for sender in ("000.00.05.H36", "000.00.00.G09", "000.00.77.H35"):
        status, body = await a.send_edoc(PACKAGE, ["H36"], sender=sender)
        assert (status, body["status"], body["ErrorCode"]) == (200, "FAIL", "SenderNotServed")
    assert (await a.send_edoc(PACKAGE, ["H36"], sender="000.99.99.H35"))[1]["status"] == "OK"
    assert [e["from"] for e in await b.received()] == ["000.99.99.H35"]


async def test_hash_file_in_either_form_with_or_without_the_crlf(
    pair: tuple[Caller, Caller],
) -> None:
    """The SDK's lossy hex (leading zeros dropped) and the full 64 digits are taken;
    a body without the SDK's trailing CRLF too; anything else is InvalidHash."""
    a, b = pair
    lossy = next(
        PACKAGE + bytes([i])
        for i in range(256)
        if len(vdxp.sdk_hash_file(PACKAGE + bytes([i]))) < 64
    )
    sdk = send_edoc_request("vdxp-h35", SECRET_A, STAMP, lossy, "H35", ["H36"], "edoc")
    assert sdk.body == lossy + b"\r\n"
    assert (await a.send(sdk))[1]["status"] == "OK"
    plain = send_edoc_request("vdxp-h35", SECRET_A, STAMP, PACKAGE, "H35", ["H36"], "edoc")
    assert (await a.send(replace(plain, body=PACKAGE)))[1]["status"] == "OK"  # no CRLF
    full = {"from": "H35", "to": '["H36"]', "servicetype": "eDoc", "messagetype": "edoc",
            "hash-file": hashlib.sha256(PACKAGE + b"1").hexdigest()}  # fmt: skip
    headers = vdxp.request_map("vdxp-h35", STAMP, vdxp.OCTET_STREAM, full).headers(SECRET_A)
    req = SdkRequest("POST", "sendEdoc", headers, PACKAGE + b"1")
    assert (await a.send(req))[1]["status"] == "OK"
    status, body = await a.send(replace(req, body=b"other\r\n"))
    assert (status, body["ErrorCode"]) == (400, "InvalidHash")
    assert len(await b.received()) == 3


async def test_bad_parameters_are_invalid(pair: tuple[Caller, Caller]) -> None:
    a, b = pair
    await a.send_edoc(PACKAGE, ["H36"])
    [entry] = await b.received()
    status, body = await b.call("updateStatus", docId=entry["docId"], status="read")
    assert (status, body["ErrorCode"]) == (400, "InvalidParameter")
    status, body = await b.call("updateStatus", docId="no-such-doc", status="done")
    assert (status, body["status"], body["ErrorCode"]) == (200, "FAIL", "NotFound")
    status, body = await a.call("getReceivedEdocList", messagetype="fax")
    assert (status, body["ErrorCode"], body["data"]) == (400, "InvalidParameter", [])
    status, body = await a.call("getEdoc")
    assert (status, body["ErrorCode"], body["data"]) == (400, "InvalidParameter", "")
    resp = await a.client.post("/noSuchThing", headers=a.request("getEdoc").headers)
    body = await resp.json()
    assert (resp.status, body["status"], body["ErrorCode"]) == (404, "FAIL", "UnknownOperation")


async def test_parameters_left_over_from_earlier_calls_are_tolerated(
    pair: tuple[Caller, Caller],
) -> None:
    """The SDK keeps one parameter map: a later call carries an earlier one's docId,
    status, hash-file, filePath, signed again. They are not looked at."""
    a, b = pair
    await a.send_edoc(PACKAGE, ["H36"])
    leftovers = {"docId": "d-9", "status": "done", "hash-file": "ab", "filePath": "/tmp/x",
                 "from": "000.00.01.H35", "to": '["H36"]'}  # fmt: skip
    entries = vdxp.request_map("vdxp-h36", STAMP, vdxp.JSON, leftovers)
    entries.update({"servicetype": "eDoc", "messagetype": "edoc"})
    req = SdkRequest("POST", "getReceivedEdocList", entries.headers(SECRET_B), b"")
    status, body = await b.send(req)
    assert (status, body["status"], len(body["data"])) == (200, "OK", 1)


# -- authentication ----------------------------------------------------------------------


def _refused_headers(case: str, a: Caller) -> list[tuple[str, str]]:
    headers = a.request("getReceivedEdocList", messagetype="edoc").headers
    if case == "wrong secret":
        return Caller(a.client, a.system_id, "not-the-secret").request("countReceiveEdoc").headers
    if case == "unknown system":
        return Caller(a.client, "vdxp-h99", SECRET_A).request("countReceiveEdoc").headers
    if case == "unsigned":
        return [("XroadVnpt-systemid", a.system_id)]
    if case == "system id not signed":
        entries = vdxp.ParameterMap()
        entries.put("timestamp", STAMP)
        return entries.headers(SECRET_A)
    if case == "altered header":
        return [(k, "status" if k == "XroadVnpt-messagetype" else v) for k, v in headers]
    if case == "unsigned parameter":
        return [*headers, ("XroadVnpt-docId", "d-1")]
    raise AssertionError(case)


@pytest.mark.parametrize(
    "case",
    [
        "wrong secret",
        "unknown system",
        "unsigned",
        "system id not signed",
        "altered header",
        "unsigned parameter",
    ],
)
async def test_bad_credentials_are_refused(case: str, pair: tuple[Caller, Caller]) -> None:
    a, _ = pair
    async with await a.client.post(
        "/getReceivedEdocList", headers=_refused_headers(case, a)
    ) as resp:
        body = await resp.json()
    assert resp.status == 401
    assert body["status"] == "FAIL" and body["ErrorCode"] == "Unauthorized" and body["ErrorDesc"]
    assert body["data"] == [], "the fields the SDK's reader takes are there"
    assert (await sim_state(a))["refused"] == 1


async def test_no_timestamp_window_and_no_nonce(pair: tuple[Caller, Caller]) -> None:
    """As the SDK signs: a timestamp days old, and the same request twice, are taken."""
    a, _ = pair
    req = a.request("countReceiveEdoc")
    assert [(await a.send(req))[1]["status"] for _ in range(2)] == ["OK", "OK"]


# -- the directory ---------------------------------------------------------------------


async def test_agencies_as_the_sdk_reads_them(pair: tuple[Caller, Caller]) -> None:
    """getAgenciesList in QCVN 102 codes, getAgenciesListQD20 in QĐ 20 codes with
    code102, getSynchronizeUnit with versions; `id` and `pid` are QĐ 20 codes."""
    a, _ = pair
    status, body = await a.call("getAgenciesList")
    assert status == 200 and body["status"] == "OK"
    by_id = {x["id"]: x for x in body["data"]}
    assert sorted(by_id) == ["H35", "H35.S01", "H36", "H36.S05"]
    assert by_id["H36"] == {"id": "H36", "pid": "", "code": "000.00.00.H36",
                            "name": "Ủy ban nhân dân tỉnh Điện Biên",
                            "mail": "ubnd@dienbien.gov.vn", "oldCode": ""}  # fmt: skip
    assert by_id["H36.S05"]["pid"] == "H36"
    status, body = await a.call("getAgenciesListQD20")
    assert {x["code"]: (x["code102"], x["pid"]) for x in body["data"]} == {
        "H35": ("000.00.00.H35", ""),
        "H35.S01": ("000.00.01.H35", "H35"),
        "H36": ("000.00.00.H36", ""),
        "H36.S05": ("000.00.05.H36", "H36"),
    }
    status, body = await a.call("getSynchronizeUnit")
    units = {x["id"]: x for x in body["data"]}
    assert units["H36.S05"]["centerCode"] == "vdxp-h36" and units["H36.S05"]["deleted"] is False
    assert all(None not in x.values() for x in units.values())
    async with await a.client.post("/getAgenciesList") as resp:
        assert resp.status == 401


async def test_a_system_registers_and_deletes_sub_agencies(pair: tuple[Caller, Caller]) -> None:
    """Under an agency it serves: the new agency is listed, receives documents, and
    once deleted is listed no more (getSynchronizeUnit marks it deleted)."""
    a, b = pair
    new = {"code": "H36.S05.P1", "name": "Phòng Ngân sách", "mail": "ns@dienbien.gov.vn",
           "pid": "H36.S05"}  # fmt: skip
    status, body = await b.register(new)
    assert (status, body["status"]) == (200, "OK"), body
    [listed] = [
        x for x in (await a.call("getAgenciesListQD20"))[1]["data"] if x["id"] == new["code"]
    ]
    assert (listed["pid"], listed["name"], listed["code102"]) == ("H36.S05", new["name"], "")
    assert (await a.send_edoc(PACKAGE, ["H36.S05.P1"]))[1]["status"] == "OK"
    assert [e["to"] for e in await b.received()] == ["H36.S05.P1"]

    assert (await b.register(new))[1]["ErrorCode"] == "ExistAgency"
    assert (await a.register({**new, "code": "H35.X"}))[1]["ErrorCode"] == "SenderNotServed"
    assert (await a.register({"code": "bad code"}))[1]["ErrorCode"] == "InvalidParameter"
    assert (await a.call("deleteAgency", code="H36.S05.P1"))[1]["ErrorCode"] == "NotFound"
    assert (await a.call("deleteAgency", code="H35"))[1]["ErrorCode"] == "NotFound"

    assert (await b.call("deleteAgency", code="H36.S05.P1"))[1]["status"] == "OK"
    codes = [x["id"] for x in (await a.call("getAgenciesList"))[1]["data"]]
    assert "H36.S05.P1" not in codes
    units = {x["id"]: x for x in (await a.call("getSynchronizeUnit"))[1]["data"]}
    assert units["H36.S05.P1"]["deleted"] is True and units["H36.S05.P1"]["version"] == 2
    assert (await a.send_edoc(PACKAGE + b"2", ["H36.S05.P1"]))[1]["ErrorCode"] == "AgencyNotFound"
