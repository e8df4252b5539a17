"""The SDK's document operations: sendEdoc, the lists and counts, getEdoc, downloadEdoc,
updateStatus and getSentEdocList, over the native door, mailbox view and document view.

An SDK system acts for its agency and the sub-agencies it registered
(`SdkCall.agencies`): it sends as any of them, and its lists cover all their
mailboxes. One package to two of them is two entries, so a docId names the mailbox
too when it is not the system's own agency's: `<message id>_<agency code>`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from datetime import datetime, timedelta, timezone

import structlog
from aiohttp import web

from adapters.http_api.envelopes import read_body
from adapters.http_api.sdk_answers import Operation, SdkAnswer
from broker import vdxp
from broker.core.errors import BadRequest, InputRefused, NotFound
from broker.core.problems import Problem
from broker.directory.auth import SdkCall
from broker.edxml.model import Envelope, Kind
from broker.offload import b64encode
from broker.runtime import Runtime
from broker.service.door import take_in
from broker.service.handover import acknowledge, read_envelope
from broker.views.document_fold import DocumentState, RecipientState
from broker.views.mailbox import Delivery

log = structlog.get_logger(__name__)

VIETNAM = timezone(timedelta(hours=7))
MESSAGE_TYPES = {"edoc": Kind.DOCUMENT, "status": Kind.STATUS}
LIST_LIMIT = 1000  # entries one list answer carries (the SDK has no paging)
SENT_DOCUMENTS = 200  # documents getSentEdocList looks back over
DOC_ID_SEPARATOR = "_"  # never in a message id (a UUID)


def vn_time(ms: int | None) -> str:
    """An edXML timestamp (yyyy/MM/dd HH:mm:ss, Vietnam time); "" for none."""
    if not ms:
        return ""
    return vdxp.vn_timestamp(datetime.fromtimestamp(ms / 1000, VIETNAM))


def message_kind(call: SdkCall) -> Kind:
    raw = (call.params.get("messagetype") or "edoc").lower()
    if raw not in MESSAGE_TYPES:
        raise BadRequest(f"{vdxp.PREFIX}messagetype must be edoc or status, not {raw!r}")
    return MESSAGE_TYPES[raw]


def signed(call: SdkCall, name: str) -> str:
    """A parameter the operation needs: it must be signed (unsigned ones are refused
    before any operation runs, so a missing one was never sent)."""
    value = call.params.get(name)
    if not value:
        raise BadRequest(f"{vdxp.PREFIX}{name} is required, and signed")
    return value


def doc_id_of(d: Delivery, call: SdkCall) -> str:
    if d.recipient == call.agency.code:
        return d.message_id
    return f"{d.message_id}{DOC_ID_SEPARATOR}{d.recipient}"


async def own_delivery(runtime: Runtime, call: SdkCall, doc_id: str) -> Delivery:
    """The mailbox entry a docId names, in a mailbox the system acts for."""
    message_id, _, code = doc_id.partition(DOC_ID_SEPARATOR)
    agency = call.acts_for(code) if code else call.agency
    found = await runtime.view.get(agency.code, message_id) if agency else None
    if found is None:
        raise NotFound(f"no document {doc_id} for system {call.system.system_id}")
    return found


# -- sending ----------------------------------------------------------------------


async def send_edoc(request: web.Request, runtime: Runtime, call: SdkCall) -> SdkAnswer:
    """sendEdoc: the package is the body (less the SDK's CRLF), bound to the signature
    by hash-file; it goes through the door as if posted to /v1/envelopes."""
    kind = message_kind(call)
    declared_hash = signed(call, "hash-file")
    body = await read_body(request, request.read, slack=len(vdxp.CRLF))
    data = await asyncio.to_thread(vdxp.package_of_send_edoc, body, declared_hash)
    if data is None:
        raise InputRefused(
            [Problem("bad-request", "hash-file is not the SHA-256 of the package sent")]
        )
    declared_from = call.params.get("from")

    def as_declared(env: Envelope) -> list[Problem]:
        """The parameters must tell the truth: `from` is the package's sender,
        `messagetype` its kind (the national axis routes on them; docbroker on the
        package)."""
        problems = []
        if declared_from is not None and declared_from != env.sender_id:
            problems.append(
                Problem(
                    "sender-mismatch",
                    f"from is {declared_from}, the package's From {env.sender_id}",
                )
            )
        if env.kind is not kind:
            problems.append(
                Problem("bad-request", f"messagetype says {kind}, the package is a {env.kind}")
            )
        return problems

    taken = await take_in(
        runtime,
        data,
        source="sdk",
        caller=call.agency,
        acts_for=call.agencies[1:],
        traceparent=request.headers.get("traceparent"),
        also=as_declared,
    )
    if taken.refused:
        raise InputRefused(taken.problems)
    described = "Đã nhận trước đó (a resend: its first DocId)" if taken.duplicate else "Thành công"
    if taken.warnings:  # accepted, irregular: said where the SDK's user reads (ErrorDesc)
        described += "; " + "; ".join(f"{w.code}: {w.message}" for w in taken.warnings)
    warnings = [w.to_dict() for w in taken.warnings]
    return SdkAnswer(
        vdxp.answer_ok(
            "sendEdoc",
            described,
            DocId=taken.message_id,
            duplicate=taken.duplicate,
            warnings=warnings,
        )
    )


# -- receiving --------------------------------------------------------------------


def _received(d: Delivery, call: SdkCall) -> dict[str, str]:
    """An entry, its recipient in the QCVN 102 form when it has one (the form the
    SDK's world addresses packages in; the sender as its package wrote itself)."""
    recipient = call.acts_for(d.recipient)
    return vdxp.received_item(
        doc_id_of(d, call),
        d.sender,
        (recipient.code102 or recipient.code) if recipient else d.recipient,
        "status" if d.kind == Kind.STATUS else "edoc",
        vn_time(d.received_at_ms),
        vn_time(d.fetched_at_ms or d.delivered_at_ms),
        "processing" if d.fetched_at_ms else "initial",
    )


async def received_list(request: web.Request, runtime: Runtime, call: SdkCall) -> SdkAnswer:
    """getReceivedEdocList: what waits, of one message type, in every mailbox the
    system acts for, oldest first."""
    kind = str(message_kind(call))
    found: list[Delivery] = []
    for agency in call.agencies:
        found += await runtime.view.list(agency.code, limit=LIST_LIMIT, kind=kind)
    found.sort(key=lambda d: (d.received_at_ms, d.seq))
    items = [_received(d, call) for d in found[:LIST_LIMIT]]
    return SdkAnswer(vdxp.answer_ok("getReceivedEdocList", data=items))


async def _count(runtime: Runtime, call: SdkCall, kind: Kind) -> int:
    return sum([await runtime.view.count_pending(a.code, str(kind)) for a in call.agencies])


async def count_edoc(request: web.Request, runtime: Runtime, call: SdkCall) -> SdkAnswer:
    """countReceiveEdoc: documents waiting (unacknowledged) for the system."""
    return SdkAnswer(
        vdxp.answer_ok("countReceiveEdoc", count=await _count(runtime, call, Kind.DOCUMENT))
    )


async def count_status(request: web.Request, runtime: Runtime, call: SdkCall) -> SdkAnswer:
    """countReceiveStatus: status packages waiting for the system."""
    return SdkAnswer(
        vdxp.answer_ok("countReceiveStatus", count=await _count(runtime, call, Kind.STATUS))
    )


async def get_edoc(request: web.Request, runtime: Runtime, call: SdkCall) -> SdkAnswer:
    """getEdoc: one package, base64 in `data` (a large one encoded, and its answer
    made, off the event loop)."""
    doc_id = signed(call, "docId")
    d = await own_delivery(runtime, call, doc_id)
    data = await read_envelope(runtime, d, by_recipient=True)
    encoded = await b64encode(data)
    answer = vdxp.answer_ok("getEdoc", data=encoded, docId=doc_id)
    return SdkAnswer(answer, size_hint=len(encoded))


async def download_edoc(request: web.Request, runtime: Runtime, call: SdkCall) -> SdkAnswer:
    """downloadEdoc: the same package as raw bytes (the SDK writes them to its file)."""
    d = await own_delivery(runtime, call, signed(call, "docId"))
    return SdkAnswer(raw=await read_envelope(runtime, d, by_recipient=True))


async def update_status(request: web.Request, runtime: Runtime, call: SdkCall) -> SdkAnswer:
    """updateStatus: the transport acknowledgement. `done` for a package the system
    fetched acknowledges it (its sender gets the status 01); `fail` leaves it waiting,
    so it is listed again. A `done` for a package never fetched is refused: the HMAC
    of the unchanged SDK cannot tell this call from a replayed getEdoc of the same
    package, and confirming what was never received would lose it."""
    doc_id = signed(call, "docId")
    outcome = signed(call, "status").lower()
    d = await own_delivery(runtime, call, doc_id)
    if outcome == vdxp.TRANSPORT_DONE:
        d = await _fetched(runtime, call, d, doc_id)
        d = await acknowledge(runtime, d)
    elif outcome == vdxp.TRANSPORT_FAIL:
        log.warning(
            "recipient could not take a document; it stays in the mailbox",
            recipient=d.recipient,
            message_id=d.message_id,
        )
    else:
        raise BadRequest(f"{vdxp.PREFIX}status must be done or fail, not {outcome!r}")
    return SdkAnswer(vdxp.answer_ok("updateStatus", docId=doc_id))


async def _fetched(runtime: Runtime, call: SdkCall, d: Delivery, doc_id: str) -> Delivery:
    """The entry once the view shows it fetched (another instance may have served the
    getEdoc a moment ago); refused when it never was."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + runtime.settings.http.read_your_writes_timeout
    while d.fetched_at_ms is None and d.acked_at_ms is None and loop.time() < deadline:
        await asyncio.sleep(0.05)
        d = await own_delivery(runtime, call, doc_id)
    if d.fetched_at_ms is None and d.acked_at_ms is None:
        raise InputRefused(
            [Problem("not-fetched", f"{doc_id} was never fetched: getEdoc or downloadEdoc it")]
        )
    return d


# -- what the system sent ---------------------------------------------------------


def _transport(r: RecipientState) -> str:
    if r.refused_code:
        return vdxp.TRANSPORT_FAIL
    if r.acknowledged_at_ms or (r.route == "upstream" and r.delivered_at_ms):
        return vdxp.TRANSPORT_DONE
    if r.delivered_at_ms:
        return "processing"
    return "initial"


def _sent_items(state: DocumentState, message_id: str, sender: str) -> Iterable[dict[str, str]]:
    for r in state.recipients:
        yield vdxp.sent_item(
            sender_doc_id=message_id,
            receiver_doc_id=message_id if r.route == "mailbox" else "",
            from_code=sender,
            to_code=r.requested,
            message_type="edoc",
            transport=_transport(r),
            status_code=r.latest_status.code if r.latest_status else "",
            title=state.subject,
            notation=state.code,
            sent_time=vn_time(state.accepted_at_ms),
            received_time=vn_time(r.delivered_at_ms),
        )


async def sent_list(request: web.Request, runtime: Runtime, call: SdkCall) -> SdkAnswer:
    """getSentEdocList: each recipient's copy of the documents the system sent (its
    newest SENT_DOCUMENTS documents), with its transport and business status."""
    codes = [c for a in call.agencies for c in a.codes()]
    items: list[dict[str, str]] = []
    for sent in await runtime.documents.sent_by(codes, limit=SENT_DOCUMENTS):
        state = await runtime.documents.state(sent["document_id"], codes)
        if state is not None:
            items += _sent_items(state, sent["message_id"], sent["sender"])
    return SdkAnswer(vdxp.answer_ok("getSentEdocList", data=items[:LIST_LIMIT]))


OPERATIONS: dict[str, Operation] = {
    "sendEdoc": send_edoc,
    "getReceivedEdocList": received_list,
    "getEdoc": get_edoc,
    "downloadEdoc": download_edoc,
    "updateStatus": update_status,
    "getSentEdocList": sent_list,
    "countReceiveEdoc": count_edoc,
    "countReceiveStatus": count_status,
}
