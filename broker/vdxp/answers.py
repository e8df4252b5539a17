"""The SDK's answers, in the shapes its readers take, and the meaning docbroker gives
each field; the HTTP method and body of each operation."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

from broker.vdxp.wire import JSON  # noqa: F401  (the answers' content type)

# -- answers, in the shapes the SDK reads -------------------------------------------

OK = "OK"
FAIL = "FAIL"
SUCCESS_CODE = "0"
# The fields each operation's reader takes without checking that they are there: an
# answer without them makes the SDK throw and hand its caller a null result, so a
# refusal carries them too (empty). JSON null is never sent: the SDK's getAsString()
# throws on it.
ALWAYS = {
    "sendEdoc": {"DocId": ""},
    "getReceivedEdocList": {"data": []},
    "getSentEdocList": {"data": []},
    "getEdoc": {"data": ""},
    "countReceiveEdoc": {"count": 0},
    "countReceiveStatus": {"count": 0},
    "getAgenciesList": {"data": []},
    "getAgenciesListQD20": {"data": []},
    "getSynchronizeUnit": {"data": []},
}
OPERATIONS = (
    "sendEdoc",
    "getReceivedEdocList",
    "getSentEdocList",
    "getEdoc",
    "downloadEdoc",
    "updateStatus",
    "countReceiveEdoc",
    "countReceiveStatus",
    "getAgenciesList",
    "getAgenciesListQD20",
    "getSynchronizeUnit",
    "registerAgency",
    "deleteAgency",
)
MESSAGE_TYPES = ("edoc", "status")
# The HTTP method and body of each operation as the SDK's HttpConnection sends it:
# `execute(url, method, null, headers)` is a POST of an empty form (or a GET);
# `execute(..., InputStream)` posts the text `{}`, even where the SDK names the method
# GET (countReceiveEdoc, countReceiveStatus); downloadEdoc is a real GET. (sendEdoc
# posts the file, registerAgency its JSON.)
_EMPTY_FORM = ("POST", b"")
_BRACES = ("POST", b"{}")
METHOD_AND_BODY: dict[str, tuple[str, bytes]] = {
    "getReceivedEdocList": _EMPTY_FORM,
    "getSentEdocList": _EMPTY_FORM,
    "getAgenciesList": _EMPTY_FORM,
    "getAgenciesListQD20": _EMPTY_FORM,
    "getSynchronizeUnit": _EMPTY_FORM,
    "getEdoc": _BRACES,
    "updateStatus": _BRACES,
    "countReceiveEdoc": _BRACES,
    "countReceiveStatus": _BRACES,
    "deleteAgency": _BRACES,
    "downloadEdoc": ("GET", b""),
}
TRANSPORT_DONE = "done"
TRANSPORT_FAIL = "fail"


def answer_ok(
    operation: str, description: str = "Thành công", **fields: object
) -> dict[str, object]:
    """A success answer: status OK, ErrorCode "0", and the operation's fields."""
    return {
        "status": OK,
        "ErrorCode": SUCCESS_CODE,
        "ErrorDesc": description,
        **ALWAYS.get(operation, {}),
        **fields,
    }


def answer_fail(operation: str, code: str, description: str) -> dict[str, object]:
    """A refusal the SDK can read: status FAIL, the problem code as ErrorCode, the
    reason as ErrorDesc, and the fields the operation's reader requires, empty."""
    return {
        "status": FAIL,
        "ErrorCode": code or "fail",
        "ErrorDesc": description,
        **ALWAYS.get(operation, {}),
    }


def answer_bytes(answer: Mapping[str, object]) -> bytes:
    """The JSON of an answer, ASCII only: sendEdoc's reader decodes the answer as
    US-ASCII, so anything else must travel as \\u escapes."""
    return json.dumps(answer, ensure_ascii=True, separators=(",", ":")).encode("ascii")


def vn_timestamp(at: datetime) -> str:
    """edXML's timestamp form (yyyy/MM/dd HH:mm:ss), used in list answers."""
    return at.strftime("%Y/%m/%d %H:%M:%S")


# -- list items, with the meaning docbroker gives each field ----------------------

# Transport state of one copy of a package (getReceivedEdocList `status`,
# getSentEdocList `sendStatus`), with the text sent beside it.
TRANSPORT = {
    "initial": "Chờ nhận (waiting for the recipient)",
    "processing": "Đang nhận (fetched, not yet confirmed)",
    TRANSPORT_DONE: "Đã nhận (the recipient confirmed it)",
    TRANSPORT_FAIL: "Không chuyển được (could not be delivered)",
}
# Business statuses (StatusCode) as getSentEdocList's receiveStatusDesc names them.
STATUS_NAMES = {
    "01": "Đã đến",
    "02": "Từ chối tiếp nhận",
    "03": "Đã tiếp nhận",
    "04": "Phân công",
    "05": "Đang xử lý",
    "06": "Hoàn thành",
    "13": "Lấy lại",
    "15": "Đồng ý lấy lại/cập nhật",
    "16": "Từ chối lấy lại/cập nhật",
}


def received_item(
    doc_id: str,
    sender: str,
    recipient: str,
    message_type: str,
    created: str,
    updated: str,
    transport: str,
) -> dict[str, str]:
    """One getReceivedEdocList entry: `docId` is what getEdoc and updateStatus take,
    `from`/`to` the agency codes, the times edXML timestamps (Vietnam time), `status`
    the transport state of this copy (TRANSPORT)."""
    return {
        "docId": doc_id,
        "from": sender,
        "to": recipient,
        "serviceType": "eDoc",
        "messageType": message_type,
        "created_time": created,
        "updated_time": updated,
        "status": transport,
        "status_desc": TRANSPORT.get(transport, ""),
    }


def sent_item(
    *,
    sender_doc_id: str,
    receiver_doc_id: str,
    from_code: str,
    to_code: str,
    message_type: str,
    transport: str,
    status_code: str,
    title: str,
    notation: str,
    sent_time: str,
    received_time: str,
) -> dict[str, str]:
    """One getSentEdocList entry: one recipient's copy of a package the caller sent.
    `senderDocId` is the DocId sendEdoc answered, `receiverDocId` the docId the
    recipient takes it under; `sendStatus` the copy's transport state (TRANSPORT),
    `receiveStatus` the latest business status the recipient sent about it (a
    StatusCode such as "03", "" while none), `title` its Subject, `notation` its
    number/notation, the times edXML timestamps ("" while not yet)."""
    return {
        "serviceType": "eDoc",
        "messageType": message_type,
        "senderDocId": sender_doc_id,
        "receiverDocId": receiver_doc_id,
        "fromCode": from_code,
        "toCode": to_code,
        "sendStatus": transport,
        "sendStatusDesc": TRANSPORT.get(transport, ""),
        "receiveStatus": status_code,
        "receiveStatusDesc": STATUS_NAMES.get(status_code, ""),
        "title": title,
        "notation": notation,
        "sentTime": sent_time,
        "receivedTime": received_time,
    }


@dataclass(frozen=True, slots=True)
class ListedAgency:
    """An agency as the directory operations list it. `id` is its QĐ 20 code (stable,
    unique), `pid` its parent's id ("" at the top)."""

    code: str  # QĐ 20/2020 form
    code102: str  # QCVN 102 form ("" when it has none)
    name: str
    pid: str = ""
    mail: str = ""
    version: int = 0  # grows with every change of the agency (a Java int)
    modified: str = ""  # when it last changed (edXML timestamp)
    deleted: bool = False

    def qcvn102(self) -> dict[str, str]:
        """getAgenciesList: `code` in the QCVN 102 form (its QĐ 20 code when it has
        none); `oldCode` is not tracked by docbroker and is sent empty."""
        return {"id": self.code, "pid": self.pid, "code": self.code102 or self.code,
                "name": self.name, "mail": self.mail, "oldCode": ""}  # fmt: skip

    def qd20(self) -> dict[str, str]:
        """getAgenciesListQD20: `code` in the QĐ 20 form, `code102` its QCVN 102 code."""
        return {"id": self.code, "pid": self.pid, "code": self.code, "name": self.name,
                "mail": self.mail, "code102": self.code102}  # fmt: skip

    def unit(self, center_code: str) -> dict[str, object]:
        """getSynchronizeUnit: every field of the SDK's UnitSynchronize."""
        return {"id": self.code, "pid": self.pid, "code": self.code, "name": self.name,
                "mail": self.mail, "centerCode": center_code, "version": self.version,
                "deleted": self.deleted, "modifyDate": self.modified,
                "isAgency": True}  # fmt: skip
