"""VNPT's unchanged SDK (SDKVXP 2.0.1, EdXML102) against a live `docbroker serve`.

Two agency systems run the real jars in their own JVMs, as a QLVB does: the province
(UBND tỉnh) sends a package built by EdXML102's own EdXmlBuilder, with a 5 MB
attachment; the office (Văn phòng UBND) lists, fetches (getEdoc and downloadEdoc),
confirms it and answers with a status 03; the province receives docbroker's 01 and
the 03. EdXML102's parsers read every package docbroker delivered. Then the directory
operations, the sub-agency operations and the refusals, each read by the SDK.

Each backend, over HTTPS and over plain HTTP for systems an administrator allowed
(`agencies system create --plain-http --network 127.0.0.1/32`).
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests import pki
from tests.conftest import backend_env
from tests.e2e.daemon import ROOT, Daemon
from tests.interop.java_sdk import JavaSdk
from tests.interop.tamper import TamperingProxy
from tests.pki import install_keys

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

PROVINCE, OFFICE = "000.00.00.H35", "000.00.01.H35"
OUTSIDER = "000.00.02.H35"  # an agency neither system acts for
EDOC = {"servicetype": "eDoc", "messagetype": "edoc"}
STATUS = {"servicetype": "eDoc", "messagetype": "status"}


@dataclass
class World:
    daemon: Daemon
    env: dict[str, str]
    workdir: Path
    secure: bool

    @property
    def endpoint(self) -> str:
        return f"{self.daemon.url}/vdxp"

    def cli(self, *args: str) -> Any:
        """`docbroker …` as an administrator runs it beside the daemon (JSON out)."""
        clean = {k: v for k, v in os.environ.items() if not k.startswith("DOCBROKER_")}
        proc = subprocess.run(
            [sys.executable, "-m", "broker", *args, "--json"],
            env={**clean, **self.env},
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert proc.returncode == 0, proc.stderr
        return json.loads(proc.stdout)

    def system(self, code: str, *flags: str) -> tuple[str, str]:
        transport = () if self.secure else ("--plain-http", "--network", "127.0.0.1/32")
        made = self.cli("agencies", "system", "create", code, *transport, *flags)
        return made["systemid"], made["secret"]


@pytest.fixture(params=["https", "plain"])
def world(
    request: pytest.FixtureRequest,
    backend: str,
    tmp_path: Path,
    unique_prefix: str,
    kafka_bootstrap: str | None,
) -> Iterator[World]:
    data_dir = tmp_path / "data"
    keys = install_keys(data_dir)
    env = backend_env(backend, data_dir, unique_prefix, kafka_bootstrap)
    env["DOCBROKER_LIMITS_MAX_ENVELOPE_BYTES"] = "32 MiB"
    secure = request.param == "https"
    if secure:
        env["DOCBROKER_HTTP_TLS"] = "true"
    daemon = Daemon(tmp_path / "daemon", env, ca_file=keys / "ca.cert.pem" if secure else None)
    daemon.start()
    try:
        yield World(daemon, env, tmp_path, secure)
    finally:
        daemon.stop()


def connected(
    java_sdk: Callable[..., JavaSdk], world: World, system: tuple[str, str], name: str
) -> JavaSdk:
    trust = world.workdir / "data" / "keys" / "ca.cert.pem" if world.secure else None
    sdk = java_sdk(trust)
    sdk.connect(world.endpoint, system[0], system[1], world.workdir / name)
    return sdk


def ok(result: dict[str, Any] | None) -> dict[str, Any]:
    assert result is not None, "the SDK returned null: it could not read the answer"
    assert result["status"] == "OK" and result["errorCode"] == "0", result
    return result


def refused(result: dict[str, Any] | None, code: str) -> dict[str, Any]:
    """A refusal as the SDK's user sees it: FAIL, the problem code, a reason."""
    assert result is not None, "a refusal must reach the SDK's user, not a null result"
    assert result["status"] == "FAIL" and result["errorCode"] == code, result
    assert result["errorDesc"], result
    return result


def wait_listed(sdk: JavaSdk, params: dict[str, str], count: int) -> list[dict[str, Any]]:
    for _ in range(200):
        found = ok(sdk.params("getReceivedEdocList", params))["knobsticks"]
        if len(found) >= count:
            return found
        time.sleep(0.1)
    raise AssertionError(f"{count} entries of {params} never listed")


def sha256_file(path: str | Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def built_package(sdk: JavaSdk, world: World, document_id: str) -> tuple[Path, Path]:
    """A package EdXmlBuilder builds, with a 5 MB PDF attachment: (package, attachment)."""
    attachment = world.workdir / "quyet-dinh.pdf"
    attachment.write_bytes(b"%PDF-1.4\n" + os.urandom(5 * 1024 * 1024) + b"\n%%EOF\n")
    out = world.workdir / "built"
    out.mkdir(exist_ok=True)
    made = sdk.call(
        "buildEdoc",
        dir=str(out),
        From={"OrganId": PROVINCE, "OrganName": "UBND tỉnh Lai Châu"},
        To=[{"OrganId": OFFICE, "OrganName": "Văn phòng UBND tỉnh"}],
        DocumentId=document_id,
        CodeNumber="15",
        CodeNotation="QĐ-UBND",
        Subject="Quyết định ban hành quy chế liên thông văn bản",
        Content="Nội dung",
        attachments=[str(attachment)],
    )
    return Path(made["file"]), attachment


def test_the_unchanged_sdk_against_docbroker(
    world: World, java_sdk: Callable[..., JavaSdk]
) -> None:
    province_system = world.system(PROVINCE, "--manage-agencies")
    office_system = world.system(OFFICE)
    province = connected(java_sdk, world, province_system, "province")
    office = connected(java_sdk, world, office_system, "office")
    document_id = f"{PROVINCE},2026/12/01,15/QĐ-UBND"

    # sendEdoc: a package built by EdXML102, 5 MB attachment
    package, attachment = built_package(province, world, document_id)
    sent = ok(province.params("sendEdoc", {"from": PROVINCE, "to": [OFFICE], **EDOC},
                              file=str(package)))  # fmt: skip
    assert sent["docID"]

    # the office: count, list, getEdoc, downloadEdoc, updateStatus done
    (entry,) = wait_listed(office, EDOC, 1)
    again = ok(province.params("sendEdoc", {"from": PROVINCE, "to": [OFFICE], **EDOC},
                               file=str(package)))  # fmt: skip
    assert again["docID"] == sent["docID"]  # a resend is answered with the first DocId
    assert entry["id"] == sent["docID"] and entry["from"] == PROVINCE and entry["to"] == OFFICE
    assert entry["serviceType"] == "eDoc" and entry["messageType"] == "edoc"
    assert entry["createdTime"] and entry["status"] == "initial" and entry["statusDesc"]
    assert ok(office.params("countReceiveEdoc", EDOC))["count"] == 1
    got = ok(office.params("getEdoc", {"docId": entry["id"], "filePath": str(world.workdir / "o")}))
    stored = got["filePath"]
    assert got["file_sha256"] == got["data_sha256"]
    parsed = office.call("parseEdoc", file=stored)
    assert parsed["DocumentId"] == document_id and parsed["From"]["OrganId"] == PROVINCE
    # docbroker's hop is the last TraceHeader (its XML-DSig signature, at the root, is
    # not where EdXML102 looks for the edXML-profile one, and does not disturb it)
    assert [t["OrganId"] for t in parsed["TraceHeaders"]] == [PROVINCE, pki.BROKER_ID]
    (pdf,) = parsed["attachments"]
    assert pdf["sha256"] == sha256_file(attachment) and pdf["length"] > 5 * 1024 * 1024
    download = office.params(
        "downloadEdoc", {"docId": entry["id"], "filePath": str(world.workdir / "d")}
    )
    assert download["errorCode"] == "0" and download["file_sha256"] == sha256_file(stored)
    ok(office.params("updateStatus", {"docId": entry["id"], "status": "done"}))
    assert ok(office.params("countReceiveEdoc", EDOC))["count"] == 0

    # the office answers with a status 03 built by EdXML102's StatusXmlBuilder
    status_file = office.call(
        "buildStatus",
        dir=str(world.workdir / "built"),
        From={"OrganId": OFFICE, "OrganName": "Văn phòng UBND tỉnh"},
        ResponseForOrganId=PROVINCE,
        ResponseForCode="15/QĐ-UBND",
        ResponseForDocumentId=document_id,
        StatusCode="03",
        Description="Đã tiếp nhận",
    )["file"]
    ok(office.params("sendEdoc", {"from": OFFICE, "to": [PROVINCE], **STATUS}, file=status_file))

    # the province receives docbroker's 01 and the office's 03; StatusXmlParser reads both
    statuses = wait_listed(province, STATUS, 2)
    assert ok(province.params("countReceiveStatus", STATUS))["count"] == 2
    codes = []
    for item in statuses:
        got = ok(province.params("getEdoc", {"docId": item["id"],
                                              "filePath": str(world.workdir / "p")}))  # fmt: skip
        parsed = province.call("parseStatus", file=got["filePath"])
        assert parsed["ResponseForDocumentId"] == document_id
        codes.append(parsed["StatusCode"])
        ok(province.params("updateStatus", {"docId": item["id"], "status": "done"}))
    assert sorted(codes) == ["01", "03"]

    # getSentEdocList: the office's copy, taken
    for _ in range(100):
        (copy,) = ok(province.params("getSentEdocList", EDOC))["statusResult"]
        if copy["sendStatus"] == "done":
            break
        time.sleep(0.1)
    assert copy["senderDocId"] == sent["docID"] and copy["toCode"] == OFFICE
    assert copy["fromCode"] == PROVINCE and copy["sendStatus"] == "done"
    assert copy["title"].startswith("Quyết định") and copy["notation"] == "15/QĐ-UBND"
    assert copy["sentTime"] and copy["receivedTime"] and copy["receiveStatus"] in ("01", "03")

    directory_operations(province, world)
    refusals(java_sdk, world, province, province_system, office_system)
    if not world.secure:
        plain_http_is_visible(world, [province_system[0], office_system[0]])


def plain_http_is_visible(world: World, systems: list[str]) -> None:
    """Systems allowed plain HTTP are counted in a gauge and named in a log warning."""
    for _ in range(150):
        metrics = urllib.request.urlopen(f"{world.daemon.url}/metrics", timeout=5).read()
        warned = [
            e for e in world.daemon.log_events() if "allowed over plain HTTP" in e.get("event", "")
        ]
        if b"docbroker_sdk_plain_http_systems 2.0" in metrics and warned:
            break
        time.sleep(0.1)
    assert b"docbroker_sdk_plain_http_systems 2.0" in metrics
    assert warned and all(any(s in line for line in warned[-1]["systems"]) for s in systems)


def directory_operations(province: JavaSdk, world: World) -> None:
    by102 = ok(province.params("getAgenciesList", {}))["agencies"]
    office = next(a for a in by102 if a["code"] == OFFICE)
    assert office["id"] == "H35.S01" and office["pid"] == "H35" and office["name"]
    by20 = ok(province.params("getAgenciesListQD20", {}))["agencies"]
    office20 = next(a for a in by20 if a["code"] == "H35.S01")
    assert office20["code102"] == OFFICE and office20["id"] == "H35.S01"  # (no pid read)
    units = ok(province.params("getSynchronizeUnit", {}))["unitSynchronize"]
    unit = next(u for u in units if u["code"] == "H35.S01")
    assert unit["version"] > 0 and unit["isAgency"] and unit["modifyDate"]

    sub = {"code": "H35.TCT1", "name": "Tổ công tác liên thông", "mail": "tct@laichau.gov.vn"}
    registered = province.params("registerAgency", {}, data=json.dumps(sub))
    if not world.secure:
        refused(registered, "insecure-transport")  # its body is not covered by the HMAC
        return
    ok(registered)
    listed = ok(province.params("getAgenciesListQD20", {}))["agencies"]
    by102 = ok(province.params("getAgenciesList", {}))["agencies"]
    assert next(a for a in by102 if a["id"] == "H35.TCT1")["pid"] == "H35"
    assert any(a["code"] == "H35.TCT1" for a in listed)
    ok(province.params("deleteAgency", {"code": "H35.TCT1"}))
    units = ok(province.params("getSynchronizeUnit", {}))["unitSynchronize"]
    assert next(u for u in units if u["code"] == "H35.TCT1")["deleted"] is True


def refusals(
    java_sdk: Callable[..., JavaSdk],
    world: World,
    province: JavaSdk,
    province_system: tuple[str, str],
    office_system: tuple[str, str],
) -> None:
    # the office's system may not manage agencies
    office = connected(java_sdk, world, office_system, "office-2")
    refused(office.params("registerAgency", {}, data='{"code": "H35.X9", "name": "X"}'),
            "forbidden")  # fmt: skip
    refused(office.params("deleteAgency", {"code": "H35"}), "forbidden")

    # a wrong secret: every operation is refused in the SDK's form
    wrong = connected(java_sdk, world, (province_system[0], "not-the-secret"), "wrong")
    package, _ = built_package(wrong, world, f"{PROVINCE},2026/12/01,16/QĐ-UBND")
    refused(wrong.params("sendEdoc", {"from": PROVINCE, "to": [OFFICE], **EDOC},
                         file=str(package)), "unauthenticated")  # fmt: skip
    refused(wrong.params("getReceivedEdocList", EDOC), "unauthenticated")
    refused(wrong.params("countReceiveEdoc", EDOC), "unauthenticated")
    refused(wrong.params("getAgenciesList", {}), "unauthenticated")

    # sending as an agency the system does not act for
    forged = province.call(
        "buildEdoc",
        dir=str(world.workdir / "built"),
        From={"OrganId": OUTSIDER, "OrganName": "Sở Nội vụ"},
        To=[{"OrganId": OFFICE, "OrganName": "Văn phòng UBND tỉnh"}],
        DocumentId=f"{OUTSIDER},2026/12/01,1/SNV",
        CodeNumber="1",
        CodeNotation="SNV",
        Subject="Giả mạo",
        Content="",
    )["file"]
    refused(province.params("sendEdoc", {"from": OUTSIDER, "to": [OFFICE], **EDOC},
                            file=forged), "sender-mismatch")  # fmt: skip

    # a parameter added on the path, not signed: refused, never used
    with TamperingProxy(world.daemon.url, {"XroadVnpt-status": "done"}, world.workdir) as proxy:
        tampered = java_sdk(world.workdir / "data" / "keys" / "ca.cert.pem" if world.secure
                            else None)  # fmt: skip
        tampered.connect(f"{proxy.url}/vdxp", *office_system, world.workdir / "t")
        refused(tampered.params("getReceivedEdocList", EDOC), "unauthenticated")
