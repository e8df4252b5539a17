"""The axis's operations, as the SDK calls them and reads their answers.

Each operation takes a `Call` (the authenticated system, the parameters it
signed, the body) and returns an answer built with `broker.vdxp`, so that every
field the SDK's reader takes is there and none is JSON null, or raises
`AxisFail`, which the HTTP layer answers in the same shape. Parameters are read
from the signed set only; parameters left over from the SDK's earlier calls are
signed too and simply not looked at.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace

import structlog

from adapters.national_axis.simulator.config import SystemConfig
from adapters.national_axis.simulator.state import Route, Simulator, vn_time
from adapters.national_axis.simulator.store import Copy, Entry, Package, Registered
from broker import vdxp
from broker.core.errors import InputRefused
from broker.directory.model import CODE, CODE102
from broker.edxml.parser import parse_untrusted
from broker.edxml.reader import Parts, read_envelope

log = structlog.get_logger(__name__)


class AxisFail(Exception):
    """An operation's FAIL answer: the axis's error code, a reason, an HTTP status."""

    def __init__(self, code: str, message: str, http_status: int = 200) -> None:
        super().__init__(message)
        self.code = code
        self.http_status = http_status


@dataclass(frozen=True, slots=True)
class Raw:
    """An answer that is the package itself (downloadEdoc)."""

    body: bytes


@dataclass(frozen=True, slots=True)
class Call:
    sim: Simulator
    caller: SystemConfig
    params: vdxp.SignedParameters
    body: bytes
    now_ms: int

    def param(self, name: str, default: str | None = None) -> str:
        """A signed parameter; a missing one without a default is InvalidParameter."""
        value = self.params.get(name)
        if value is None:
            if default is None:
                raise AxisFail("InvalidParameter", f"the parameter {name} must be signed", 400)
            return default
        return value.strip()

    def message_type(self, default: str | None = "edoc") -> str:
        raw = self.param("messagetype", default).lower()
        if raw not in vdxp.MESSAGE_TYPES:
            raise AxisFail(
                "InvalidParameter", f"messagetype must be edoc or status, not {raw!r}", 400
            )
        return raw


Answer = dict[str, object] | Raw
Operation = Callable[[Call], Awaitable[Answer]]


# -- documents -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Summary:
    """What the lists say about a package, read leniently: the simulator carries
    bytes and validates nothing; what cannot be read stays empty."""

    document_id: str = ""  # its DocumentId, or the one a status answers
    title: str = ""
    notation: str = ""
    status_code: str = ""


def describe(data: bytes) -> Summary:
    """A package's Summary (the hardened parser; any failure: an empty one)."""
    try:
        tree = parse_untrusted(data)
    except InputRefused:
        return Summary()
    envelope, _ = read_envelope(Parts.of(tree.getroot()))
    code = envelope.status_code.value if envelope.status_code is not None else ""
    notation = str(envelope.code) if envelope.code is not None else ""
    return Summary(envelope.subject_document_id, envelope.subject, notation, code)


def _recipients(call: Call) -> list[str]:
    """`to`: agency codes (either form) as the SDK sends them, duplicates dropped."""
    raw = call.param("to")
    codes = vdxp.parse_to_parameter(raw)
    if not codes or not all(c.strip() for c in codes):
        raise AxisFail("InvalidParameter", f"to must name agency codes, not {raw!r}", 400)
    return list(dict.fromkeys(c.strip() for c in codes))


def _sent_package(call: Call) -> bytes:
    """The package of a sendEdoc body, checked against its signed hash-file."""
    package = vdxp.package_of_send_edoc(call.body, call.param("hash-file"))
    if package is None:
        raise AxisFail("InvalidHash", "hash-file is not the SHA-256 of the file sent", 400)
    return package


async def send_edoc(call: Call) -> Answer:
    """sendEdoc: keep the package for each recipient's system (all or nothing), as a
    system may send it: from an agency it serves, to agencies the axis knows."""
    kind, sender = call.message_type(None), call.param("from")
    recipients = _recipients(call)
    package = _sent_package(call)
    own = call.sim.route(sender)
    if own is None or own.system.id != call.caller.id:
        raise AxisFail("SenderNotServed", f"system {call.caller.id} does not serve {sender}")
    found = {code: call.sim.route(code) for code in recipients}
    routes = {code: route for code, route in found.items() if route is not None}
    if len(routes) < len(found):
        unknown = ", ".join(code for code in found if code not in routes)
        raise AxisFail("AgencyNotFound", f"no system serves {unknown}")
    digest = hashlib.sha256(package).hexdigest()
    keys = {r.key for r in routes.values()}
    repeated = call.sim.store.already_sent(call.caller.id, digest, keys)
    if repeated:
        fail = vdxp.answer_fail(
            "sendEdoc", "ExistDoc", f"already sent to {', '.join(sorted(repeated))}"
        )
        return {**fail, "DocId": next(iter(repeated.values()))}  # the DocId of the first
    summary = await asyncio.to_thread(describe, package)
    stored = Package(str(uuid.uuid4()), package, digest, call.caller.id, sender, kind,
                     summary.document_id, summary.title, summary.notation, call.now_ms)  # fmt: skip
    call.sim.store.add(stored, _copies(routes))
    if kind == "status" and summary.document_id and summary.status_code:
        call.sim.store.record_status(call.caller.id, summary.document_id, summary.status_code)
    log.info("axis simulator took a package", doc_id=stored.sender_doc_id, sender=sender,
             to=recipients, messagetype=kind, system=call.caller.id)  # fmt: skip
    return vdxp.answer_ok("sendEdoc", DocId=stored.sender_doc_id)


def _copies(routes: dict[str, Route]) -> list[Copy]:
    """One copy per recipient agency; the copies one system receives share a docId
    (its own: the sender's DocId is another), so that it takes the package once."""
    doc_ids: dict[str, str] = {}
    copies: dict[str, Copy] = {}
    for code, route in routes.items():
        doc_id = doc_ids.setdefault(route.system.id, str(uuid.uuid4()))
        copies.setdefault(route.key, Copy(doc_id, code, route.key, route.system.id))
    return list(copies.values())


def _received(e: Entry) -> dict[str, str]:
    return vdxp.received_item(
        e.doc_id, e.sender, e.recipient, e.messagetype, vn_time(e.created_ms),
        vn_time(e.updated_ms), e.status,
    )  # fmt: skip


def _sent(e: Entry) -> dict[str, str]:
    return vdxp.sent_item(
        sender_doc_id=e.sender_doc_id,
        receiver_doc_id=e.doc_id,
        from_code=e.sender,
        to_code=e.recipient,
        message_type=e.messagetype,
        transport=e.status,
        status_code=e.status_code,
        title=e.title,
        notation=e.notation,
        sent_time=vn_time(e.created_ms),
        received_time=vn_time(e.received_ms),
    )


async def received_list(call: Call) -> Answer:
    """getReceivedEdocList: what waits for the caller, of one message type, oldest first."""
    found = call.sim.store.pending(call.caller.id, call.message_type())
    return vdxp.answer_ok("getReceivedEdocList", data=[_received(e) for e in found])


async def sent_list(call: Call) -> Answer:
    """getSentEdocList: what the caller sent, one item per recipient, newest first (of
    one message type if it signed one)."""
    kind = call.message_type() if call.params.get("messagetype") is not None else None
    found = call.sim.store.sent(call.caller.id, kind)
    return vdxp.answer_ok("getSentEdocList", data=[_sent(e) for e in found])


def _own_package(call: Call) -> bytes:
    doc_id = call.param("docId")
    data = call.sim.store.fetch(call.caller.id, doc_id, call.now_ms)
    if data is None:
        raise AxisFail("NotFound", f"no document {doc_id} for system {call.caller.id}")
    return data


async def get_edoc(call: Call) -> Answer:
    """getEdoc: one of the caller's packages, base64 in `data`."""
    data = _own_package(call)
    return vdxp.answer_ok("getEdoc", data=base64.b64encode(data).decode("ascii"))


async def download_edoc(call: Call) -> Answer:
    """downloadEdoc: the same package as raw bytes. The SDK writes whatever body comes
    as the package; a FAIL answer goes with HTTP 404 at least."""
    try:
        return Raw(_own_package(call))
    except AxisFail as exc:
        exc.http_status = 404
        raise


async def update_status(call: Call) -> Answer:
    """updateStatus: the transport acknowledgement; done takes it off the list."""
    doc_id, outcome = call.param("docId"), call.param("status").lower()
    if outcome not in (vdxp.TRANSPORT_DONE, vdxp.TRANSPORT_FAIL):
        raise AxisFail("InvalidParameter", f"status must be done or fail, not {outcome!r}", 400)
    if not call.sim.store.mark(call.caller.id, doc_id, outcome, call.now_ms):
        raise AxisFail("NotFound", f"no document {doc_id} for system {call.caller.id}")
    if outcome == vdxp.TRANSPORT_FAIL:
        log.info("axis simulator: recipient reported fail", doc_id=doc_id)
    return vdxp.answer_ok("updateStatus")


async def count_edoc(call: Call) -> Answer:
    """countReceiveEdoc: how many documents wait for the caller."""
    count = call.sim.store.count_pending(call.caller.id, "edoc")
    return vdxp.answer_ok("countReceiveEdoc", count=count)


async def count_status(call: Call) -> Answer:
    """countReceiveStatus: how many statuses wait for the caller."""
    count = call.sim.store.count_pending(call.caller.id, "status")
    return vdxp.answer_ok("countReceiveStatus", count=count)


# -- the directory ---------------------------------------------------------------------


async def agencies_102(call: Call) -> Answer:
    """getAgenciesList: every agency in QCVN 102 codes, `id`/`pid` in QĐ 20 codes."""
    listed = [a.qcvn102() for a, _ in call.sim.listed() if not a.deleted]
    return vdxp.answer_ok("getAgenciesList", data=listed)


async def agencies_qd20(call: Call) -> Answer:
    """getAgenciesListQD20: every agency in QĐ 20 codes, with its `code102`."""
    listed = [a.qd20() for a, _ in call.sim.listed() if not a.deleted]
    return vdxp.answer_ok("getAgenciesListQD20", data=listed)


async def synchronize_unit(call: Call) -> Answer:
    """getSynchronizeUnit: every unit, deleted ones marked, with its version and the
    system serving it as `centerCode`."""
    units = [a.unit(system) for a, system in call.sim.listed()]
    return vdxp.answer_ok("getSynchronizeUnit", data=units)


def _registration(call: Call) -> Registered:
    """registerAgency's body (JSON: code, name, mail, pid, optional code102), checked."""
    try:
        body = json.loads(call.body)
    except ValueError:
        body = None
    if not isinstance(body, dict) or not all(isinstance(v, str) for v in body.values()):
        raise AxisFail("InvalidParameter", "the body must be a JSON object of strings", 400)
    code, code102 = body.get("code", "").strip(), body.get("code102", "").strip()
    name, pid = body.get("name", "").strip(), body.get("pid", "").strip()
    if not CODE.match(code) or (code102 and not CODE102.match(code102)) or not name:
        raise AxisFail("InvalidParameter", "code (QĐ 20 form) and name are required", 400)
    parent = call.sim.route(pid)
    if parent is None or parent.system.id != call.caller.id:
        raise AxisFail("SenderNotServed", f"system {call.caller.id} does not serve {pid!r}")
    return Registered(code, code102, name, body.get("mail", "").strip(), parent.key,
                      call.caller.id, 0, call.now_ms, False)  # fmt: skip


async def register_agency(call: Call) -> Answer:
    """registerAgency: a system adds a sub-agency under one it serves; it serves it
    from then on. A code in use is ExistAgency (a deleted one of its own comes back)."""
    agency = _registration(call)
    for code in filter(None, (agency.code, agency.code102)):
        taken = call.sim.route(code)
        earlier = call.sim.store.find_registered(code)
        if taken is not None or (earlier is not None and earlier.system != call.caller.id):
            raise AxisFail("ExistAgency", f"the code {code} is already in use")
    stored = call.sim.store.register(agency)
    log.info("axis simulator registered an agency", code=stored.code, system=call.caller.id)
    return vdxp.answer_ok("registerAgency")


async def delete_agency(call: Call) -> Answer:
    """deleteAgency (parameter `code`, or `id`): an agency the caller registered; it is
    listed no more, and getSynchronizeUnit marks it deleted."""
    code = call.param("code", "") or call.param("id")
    found = call.sim.store.find_registered(code)
    if found is None or found.deleted or found.system != call.caller.id:
        raise AxisFail("NotFound", f"system {call.caller.id} registered no agency {code}")
    call.sim.store.register(replace(found, deleted=True, modified_ms=call.now_ms))
    return vdxp.answer_ok("deleteAgency")


# The operations with the HTTP method the SDK uses for each (downloadEdoc alone is a GET).
OPERATIONS: dict[str, tuple[str, Operation]] = {
    "sendEdoc": ("POST", send_edoc),
    "getReceivedEdocList": ("POST", received_list),
    "getSentEdocList": ("POST", sent_list),
    "getEdoc": ("POST", get_edoc),
    "downloadEdoc": ("GET", download_edoc),
    "updateStatus": ("POST", update_status),
    "countReceiveEdoc": ("POST", count_edoc),
    "countReceiveStatus": ("POST", count_status),
    "getAgenciesList": ("POST", agencies_102),
    "getAgenciesListQD20": ("POST", agencies_qd20),
    "getSynchronizeUnit": ("POST", synchronize_unit),
    "registerAgency": ("POST", register_agency),
    "deleteAgency": ("POST", delete_agency),
}
