"""VNPT's real SDK runs against docbroker's simulator of the national axis.

Two agency systems built on the unchanged SDKVXP 2.0.1 jars, one serving Lai Châu's
agencies (vdxp-h35), one Lào Cai's (vdxp-h36): a document built by the SDK's own
EdXmlBuilder goes from one to the other and is taken byte for byte (getEdoc and
downloadEdoc), a status comes back, the counts and the sent list follow, the
directory operations give what the SDK reads, and refusals come back as results the
SDK can read (status FAIL, an ErrorCode), never as the null it returns when an
answer lacks a field. Each system's service objects live for the whole test, so
parameters left over from earlier calls travel on, as in production.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import random
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestServer

from adapters.national_axis.simulator import SimulatorConfig, SystemConfig, build_simulator_app
from adapters.national_axis.simulator.config import load_directory
from broker.edxml.ns import NS
from broker.edxml.parser import parse_untrusted
from tests.interop.java_sdk import JavaSdk

ROOT = Path(__file__).resolve().parents[2]
SECRETS = {"vdxp-h35": "secret-of-lai-chau", "vdxp-h36": "secret-of-lao-cai"}
VP_H35, STC_H36 = "000.00.01.H35", "000.00.05.H36"  # served by vdxp-h35, vdxp-h36
EDOC = {"servicetype": "eDoc", "messagetype": "edoc"}
STATUS = {"servicetype": "eDoc", "messagetype": "status"}


@pytest.fixture
async def axis_url() -> AsyncIterator[str]:
    """The simulator, in this process (the SDK calls block: they run in threads)."""
    directories = ("lai-chau.toml", "lao-cai-demo.toml")
    config = SimulatorConfig(
        tuple(
            SystemConfig(sid, secret, load_directory(ROOT / "config" / "directory" / name))
            for (sid, secret), name in zip(SECRETS.items(), directories, strict=True)
        )
    )
    server = TestServer(build_simulator_app(config), host="127.0.0.1")
    await server.start_server()
    yield str(server.make_url("")).rstrip("/")
    await server.close()


@dataclass
class System:
    """An agency system running the real SDK, with its store folder."""

    sdk: JavaSdk
    store: Path

    async def __call__(self, op: str, params: dict[str, Any], **fields: Any) -> Any:
        return await asyncio.to_thread(self.sdk.params, op, params, **fields)

    async def build(self, op: str, **fields: Any) -> dict[str, str]:
        """buildEdoc or buildStatus: a package made by the SDK's own builders."""
        out = self.store.parent / "built"
        out.mkdir(exist_ok=True)
        return await asyncio.to_thread(self.sdk.call, op, dir=str(out), **fields)


@pytest.fixture
def systems(
    java_sdk: Callable[[], JavaSdk], axis_url: str, tmp_path: Path
) -> Callable[[str, str | None], System]:
    def connect(system_id: str, secret: str | None = None) -> System:
        sdk, store = java_sdk(), tmp_path / f"store-{system_id}-{secret or 'right'}"
        sdk.connect(axis_url, system_id, secret or SECRETS[system_id], store)
        return System(sdk, store)

    return connect


def sha256(path: str | Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def attachment_sha256(package: Path) -> str:
    """The SHA-256 of the one attachment a package carries (base64 in
    ContentTransferEncoded), read with docbroker's hardened parser."""
    root = parse_untrusted(package.read_bytes()).getroot()
    [encoded] = root.iter(f"{{{NS}}}ContentTransferEncoded")
    return hashlib.sha256(base64.b64decode(encoded.text or "")).hexdigest()


def stored_path(store: Path, doc_id: str) -> Path:
    """Where the SDK writes a package it took: <store>/<yyyy>/<M>/<docId>.edxml."""
    now = datetime.now()
    return store / str(now.year) / str(now.month) / f"{doc_id}.edxml"


def sent_ok(result: Any) -> str:
    assert result is not None and result["status"] == "OK", result
    assert result["errorCode"] == "0" and result["docID"], result
    return str(result["docID"])


async def _send_and_take(a: System, b: System, built: dict[str, str]) -> str:
    """a sends the package to STC_H36; b lists it, takes it (getEdoc, downloadEdoc:
    the bytes the SDK stores are the bytes sent) and confirms it. Returns b's docId."""
    sent_ok(await a("sendEdoc", {"from": VP_H35, "to": [STC_H36], **EDOC}, file=built["file"]))
    listed = await b("getReceivedEdocList", EDOC)
    assert listed["status"] == "OK", listed
    [item] = listed["knobsticks"]
    assert (item["from"], item["to"], item["messageType"], item["status"]) == (
        VP_H35, STC_H36, "edoc", "initial",
    )  # fmt: skip
    doc_id = item["id"]
    assert (await b("countReceiveEdoc", {}))["count"] == 1
    got = await b("getEdoc", {"docId": doc_id, "filePath": str(b.store)})
    assert got["status"] == "OK" and got["errorCode"] == "0", got
    assert got["filePath"] == str(stored_path(b.store, doc_id))
    assert got["file_sha256"] == built["sha256"] == sha256(built["file"])
    downloaded = await b("downloadEdoc", {"docId": doc_id, "filePath": str(b.store / "dl")})
    assert downloaded["file_sha256"] == built["sha256"], downloaded
    done = await b("updateStatus", {"docId": doc_id, "status": "done"})
    assert (done["status"], done["errorCode"]) == ("OK", "0"), done
    assert (await b("countReceiveEdoc", {}))["count"] == 0
    assert (await b("getReceivedEdocList", EDOC))["knobsticks"] == []
    return str(doc_id)


async def test_a_document_and_its_status_travel_between_two_sdk_systems(
    systems: Callable[[str, str | None], System],
) -> None:
    a, b = systems("vdxp-h35", None), systems("vdxp-h36", None)
    document_id = f"{VP_H35},2026/12/01,15/VP"
    built = await a.build(
        "buildEdoc",
        From={"OrganId": VP_H35, "OrganName": "Văn phòng UBND tỉnh Lai Châu"},
        To=[{"OrganId": STC_H36, "OrganName": "Sở Tài chính tỉnh Lào Cai"}],
        DocumentId=document_id, CodeNumber="15", CodeNotation="VP",
        Subject="Về việc liên thông văn bản", Content="Nội dung",
    )  # fmt: skip
    doc_id = await _send_and_take(a, b, built)
    parsed = await asyncio.to_thread(
        b.sdk.call, "parseEdoc", file=str(stored_path(b.store, doc_id))
    )
    assert (parsed["DocumentId"], parsed["From"]["OrganId"]) == (document_id, VP_H35)

    status = await b.build(
        "buildStatus",
        From={"OrganId": STC_H36, "OrganName": "Sở Tài chính tỉnh Lào Cai"},
        ResponseForOrganId=VP_H35, ResponseForCode="15/VP", ResponseForDocumentId=document_id,
        StatusCode="03", Description="Đã tiếp nhận",
    )  # fmt: skip
    sent_ok(await b("sendEdoc", {"from": STC_H36, "to": [VP_H35], **STATUS}, file=status["file"]))
    assert (await a("countReceiveStatus", {}))["count"] == 1
    [item] = (await a("getReceivedEdocList", STATUS))["knobsticks"]
    got = await a("getEdoc", {"docId": item["id"], "filePath": str(a.store)})
    assert got["file_sha256"] == status["sha256"]
    read = await asyncio.to_thread(a.sdk.call, "parseStatus", file=got["filePath"])
    assert (read["StatusCode"], read["ResponseForDocumentId"]) == ("03", document_id)
    assert (await a("updateStatus", {"docId": item["id"], "status": "done"}))["status"] == "OK"

    sent = await a("getSentEdocList", {"servicetype": "eDoc", "messagetype": "edoc"})
    [copy] = sent["statusResult"]
    assert copy["receiverDocId"] == doc_id and copy["senderDocId"] != doc_id
    assert (copy["fromCode"], copy["toCode"], copy["sendStatus"], copy["receiveStatus"]) == (
        VP_H35, STC_H36, "done", "03",
    )  # fmt: skip
    assert (copy["title"], copy["notation"]) == ("Về việc liên thông văn bản", "15/VP")
    assert None not in copy.values()


@pytest.mark.slow
async def test_a_document_with_a_5_mb_attachment_arrives_byte_for_byte(
    systems: Callable[[str, str | None], System], tmp_path: Path
) -> None:
    a, b = systems("vdxp-h35", None), systems("vdxp-h36", None)
    attachment = tmp_path / "scan.pdf"
    attachment.write_bytes(random.Random(5).randbytes(5 * 1024 * 1024))
    built = await a.build(
        "buildEdoc",
        From={"OrganId": VP_H35, "OrganName": "Văn phòng"},
        To=[{"OrganId": STC_H36, "OrganName": "Sở Tài chính"}],
        DocumentId=f"{VP_H35},2026/12/01,16/VP", CodeNumber="16", CodeNotation="VP",
        Subject="Kèm bản quét", Content="", attachments=[str(attachment)],
    )  # fmt: skip
    doc_id = await _send_and_take(a, b, built)
    stored = stored_path(b.store, doc_id)
    parsed = await asyncio.to_thread(b.sdk.call, "parseEdoc", file=str(stored))
    assert len(parsed["attachments"]) == 1
    assert await asyncio.to_thread(attachment_sha256, stored) == sha256(attachment)


async def test_the_directory_as_the_sdk_reads_it(
    systems: Callable[[str, str | None], System],
) -> None:
    """getAgenciesList and getAgenciesListQD20 name the same agency under one `id`,
    `pid` is its parent's id; getSynchronizeUnit carries versions. A system registers
    a sub-agency (a JSON body) under one it serves, and deletes it."""
    a = systems("vdxp-h35", None)
    by102 = {x["id"]: x for x in (await a("getAgenciesList", {}))["agencies"]}
    qd20 = {x["id"]: x for x in (await a("getAgenciesListQD20", {}))["agencies"]}
    assert (by102["H36.S05"]["code"], by102["H36.S05"]["pid"]) == (STC_H36, "H36")
    assert (qd20["H36.S05"]["code"], qd20["H36.S05"]["code102"]) == ("H36.S05", STC_H36)
    assert by102["H36.S05"]["name"] == qd20["H36.S05"]["name"] == "Sở Tài chính tỉnh Lào Cai"
    assert by102["H35.S01"]["code"] == VP_H35 and by102["H35.S01"]["oldCode"] == ""

    new = {"code": "H35.S01.P1", "name": "Phòng Hành chính", "mail": "hc@laichau.gov.vn",
           "pid": "H35.S01"}  # fmt: skip
    registered = await a("registerAgency", {}, data=json.dumps(new, ensure_ascii=False))
    assert (registered["status"], registered["errorCode"]) == ("OK", "0"), registered
    units = {x["id"]: x for x in (await a("getSynchronizeUnit", {}))["unitSynchronize"]}
    assert units["H35.S01.P1"]["pid"] == "H35.S01" and units["H35.S01.P1"]["version"] == 1
    assert units["H35.S01"]["centerCode"] == "vdxp-h35" and units["H35.S01"]["isAgency"]
    deleted = await a("deleteAgency", {"code": "H35.S01.P1"})
    assert deleted["status"] == "OK", deleted
    units = {x["id"]: x for x in (await a("getSynchronizeUnit", {}))["unitSynchronize"]}
    assert units["H35.S01.P1"]["deleted"] is True
    assert "H35.S01.P1" not in {x["id"] for x in (await a("getAgenciesList", {}))["agencies"]}


async def test_refusals_come_back_as_results_the_sdk_reads(
    systems: Callable[[str, str | None], System], tmp_path: Path
) -> None:
    """A wrong secret, and sending as an agency the system does not serve: status FAIL
    with an ErrorCode and ErrorDesc, never a null result."""
    package = tmp_path / "p.edxml"
    package.write_bytes(b"<edXML/>")
    wrong = systems("vdxp-h35", "not-the-secret")
    right = systems("vdxp-h35", None)
    cases = [
        (wrong, "getReceivedEdocList", EDOC, {}, "Unauthorized"),
        (wrong, "countReceiveEdoc", {}, {}, "Unauthorized"),
        (wrong, "getAgenciesList", {}, {}, "Unauthorized"),
        (wrong, "sendEdoc", {"from": VP_H35, "to": [STC_H36], **EDOC}, {"file": str(package)},
         "Unauthorized"),
        (right, "sendEdoc", {"from": STC_H36, "to": [VP_H35], **EDOC}, {"file": str(package)},
         "SenderNotServed"),
        (right, "sendEdoc", {"from": VP_H35, "to": ["000.00.00.G22"], **EDOC},
         {"file": str(package)}, "AgencyNotFound"),
        (right, "getEdoc", {"docId": "no-such-doc"}, {}, "NotFound"),
        (right, "updateStatus", {"docId": "no-such-doc", "status": "done"}, {}, "NotFound"),
    ]  # fmt: skip
    for system, op, params, fields, code in cases:
        result = await system(op, params, **fields)
        assert result is not None, f"{op}: the SDK could not read the answer"
        assert (result["status"], result["errorCode"]) == ("FAIL", code), (op, result)
        assert result["errorDesc"], (op, result)
