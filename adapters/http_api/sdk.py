"""The national axis's operations as its official SDK (SDKVXP) speaks them, under /vdxp.

An agency system built for the national axis points its base URL at
`https://<docbroker>/vdxp` and works unchanged: the same operations, parameters
as `XroadVnpt-<name>` headers, HMAC-SHA256 request signing with a system id and
shared secret (broker.auth.check_sdk_request), and JSON answers
`{"status": "OK"|"FAIL", "ErrorCode": "0"|<problem code>, "ErrorDesc": …}`.

Underneath, each operation is the native one: sendEdoc is a submission through
the same door (sender check, idempotence on DocumentId), getReceivedEdocList a
mailbox listing, getEdoc a fetch (recorded as delivered), updateStatus `done`
an acknowledgement (the sender gets its status 01). `fail` leaves the entry
pending, so it is listed again: nothing is lost.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta, timezone
from typing import Any

import structlog
from aiohttp import web

from adapters.http_api.access import ACCESS
from adapters.http_api.envelopes import read_body
from adapters.http_api.keys import RUNTIME
from broker.auth import Principal
from broker.directory.io import axis_listing
from broker.directory.model import Agency
from broker.door import take_in
from broker.edxml.model import Envelope, Kind
from broker.errors import BadRequest, DocbrokerError, InputRefused, NotFound, RateLimited
from broker.handover import acknowledge, read_envelope
from broker.mailbox import Delivery
from broker.problems import Problem
from broker.runtime import Runtime

log = structlog.get_logger(__name__)

PREFIX = "XroadVnpt-"
HASH_FILE = "XroadVnpt-hash-file"
VIETNAM = timezone(timedelta(hours=7))
MESSAGE_TYPES = {"edoc": Kind.DOCUMENT, "status": Kind.STATUS}
LIST_LIMIT = 1000

Operation = Callable[[web.Request, Runtime, Principal], Awaitable[dict[str, Any]]]


def ok(**fields: Any) -> dict[str, Any]:
    return {"status": "OK", "ErrorCode": "0", "ErrorDesc": "", **fields}


def fail_response(code: str, message: str, http_status: int) -> web.Response:
    body = {"status": "FAIL", "ErrorCode": code, "ErrorDesc": message}
    return web.json_response(body, status=http_status)


def vn_time(ms: int | None) -> str | None:
    """The edXML timestamp form: yyyy/MM/dd HH:mm:ss, Vietnam time."""
    if not ms:
        return None
    return datetime.fromtimestamp(ms / 1000, VIETNAM).strftime("%Y/%m/%d %H:%M:%S")


def vn_time_of(iso_text: str | None) -> str | None:
    if not iso_text:
        return None
    return datetime.fromisoformat(iso_text).astimezone(VIETNAM).strftime("%Y/%m/%d %H:%M:%S")


def param(request: web.Request, name: str, default: str | None = None) -> str:
    value = request.headers.get(PREFIX + name, default)
    if value is None:
        raise BadRequest(f"the {PREFIX}{name} header is required")
    return value


def message_kind(request: web.Request) -> Kind:
    raw = param(request, "messagetype", "edoc").lower()
    if raw not in MESSAGE_TYPES:
        raise BadRequest(f"{PREFIX}messagetype must be edoc or status, not {raw!r}")
    return MESSAGE_TYPES[raw]


def _agency(principal: Principal) -> Agency:
    assert principal.agency is not None  # HMAC callers are always agencies
    return principal.agency


# -- documents ---------------------------------------------------------------------


async def send_edoc(request: web.Request, runtime: Runtime, caller: Principal) -> dict[str, Any]:
    """sendEdoc: multipart part `file_doc`, its SHA-256 in hash-file."""
    kind = message_kind(request)
    form = await read_body(request, request.post)
    part = form.get("file_doc")
    if not isinstance(part, web.FileField):
        raise BadRequest("the edXML package must be sent as the multipart part file_doc")
    data = part.file.read()
    declared = request.headers.get(HASH_FILE) or request.headers.get("hash-file")
    if declared and declared.strip().lower() != hashlib.sha256(data).hexdigest():
        raise InputRefused(
            [Problem("bad-request", "hash-file is not the SHA-256 of the uploaded file_doc")]
        )

    caller_agency = _agency(caller)
    declared = request.headers.get(PREFIX + "from")

    def as_declared(env: Envelope) -> list[Problem]:
        """The parameters must tell the truth: `from` is the caller, `messagetype` the
        package's kind (the national axis routes on them; docbroker on the package)."""
        problems = []
        if declared is not None and declared not in caller_agency.codes():
            problems.append(
                Problem("sender-mismatch", f"from is {declared} but the caller is {caller.name}")
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
        caller=caller_agency,
        traceparent=request.headers.get("traceparent"),
        also=as_declared,
    )
    if taken.refused:
        raise InputRefused(taken.problems)
    return ok(docId=taken.message_id, duplicate=taken.duplicate)


def _entry(d: Delivery) -> dict[str, Any]:
    return {
        "docId": d.message_id,
        "documentId": d.document_id,
        "from": d.sender,
        "to": d.recipient,
        "serviceType": "eDoc",
        "messageType": "status" if d.kind == Kind.STATUS else "edoc",
        "created_time": vn_time(d.received_at_ms),
        "updated_time": vn_time(d.delivered_at_ms),
        "status": "done" if d.acked_at_ms else "initial",
    }


async def received_list(
    request: web.Request, runtime: Runtime, caller: Principal
) -> dict[str, Any]:
    """getReceivedEdocList: what waits in the caller's mailbox, of one message type."""
    kind = message_kind(request)
    found = await runtime.view.list(_agency(caller).code, limit=LIST_LIMIT, kind=str(kind))
    return ok(data=[_entry(d) for d in found], total=len(found))


async def _own_delivery(request: web.Request, runtime: Runtime, caller: Principal) -> Delivery:
    doc_id = param(request, "docId")
    found = await runtime.view.get(_agency(caller).code, doc_id)
    if found is None:
        raise NotFound(f"no document {doc_id} for {_agency(caller).code}")
    return found


async def get_edoc(request: web.Request, runtime: Runtime, caller: Principal) -> dict[str, Any]:
    """getEdoc: one package from the caller's mailbox, base64 in `data`."""
    d = await _own_delivery(request, runtime, caller)
    data = await read_envelope(runtime, d, by_recipient=True)
    return ok(docId=d.message_id, data=base64.b64encode(data).decode("ascii"))


async def download_edoc(request: web.Request) -> web.StreamResponse:
    """downloadEdoc: the same package as bytes."""
    runtime, caller = await _authenticated(request)
    d = await _own_delivery(request, runtime, caller)
    data = await read_envelope(runtime, d, by_recipient=True)
    return web.Response(body=data, content_type="application/xml")


async def update_status(
    request: web.Request, runtime: Runtime, caller: Principal
) -> dict[str, Any]:
    """updateStatus: the transport acknowledgement, done or fail."""
    d = await _own_delivery(request, runtime, caller)
    outcome = param(request, "status").lower()
    if outcome == "done":
        d = await acknowledge(runtime, d)
    elif outcome == "fail":
        log.warning(
            "recipient could not take a document; it stays in the mailbox",
            recipient=d.recipient,
            message_id=d.message_id,
        )
    else:
        raise BadRequest(f"{PREFIX}status must be done or fail, not {outcome!r}")
    return ok(docId=d.message_id, status_doc="done" if d.acked_at_ms else "initial")


async def sent_list(request: web.Request, runtime: Runtime, caller: Principal) -> dict[str, Any]:
    """getSentEdocList: documents the caller sent, newest first."""
    sent = await runtime.documents.sent_by(_agency(caller).codes(), limit=LIST_LIMIT)
    data = [
        {
            "docId": d["message_id"],
            "documentId": d["document_id"],
            "from": d["sender"],
            "serviceType": "eDoc",
            "messageType": "edoc",
            "created_time": vn_time_of(d["accepted_at"]),
            "recipients": d["recipients"],
        }
        for d in sent
    ]
    return ok(data=data, total=len(data))


# -- the directory ------------------------------------------------------------------


def _agencies(runtime: Runtime, *, qd20: bool) -> list[dict[str, str]]:
    directory = runtime.directory.current
    return axis_listing(
        directory, lambda a: directory.find(a.parent) if a.parent else None, qd20=qd20
    )


async def agencies_102(request: web.Request, runtime: Runtime, caller: Principal) -> dict[str, Any]:
    return ok(data=_agencies(runtime, qd20=False))


async def agencies_qd20(
    request: web.Request, runtime: Runtime, caller: Principal
) -> dict[str, Any]:
    return ok(data=_agencies(runtime, qd20=True))


# -- dispatch -----------------------------------------------------------------------


async def _count_edoc(request: web.Request, runtime: Runtime, caller: Principal) -> dict[str, Any]:
    return ok(total=await runtime.view.count_pending(_agency(caller).code, str(Kind.DOCUMENT)))


async def _count_status(
    request: web.Request, runtime: Runtime, caller: Principal
) -> dict[str, Any]:
    return ok(total=await runtime.view.count_pending(_agency(caller).code, str(Kind.STATUS)))


OPERATIONS: dict[str, Operation] = {
    "sendEdoc": send_edoc,
    "getReceivedEdocList": received_list,
    "getEdoc": get_edoc,
    "updateStatus": update_status,
    "getSentEdocList": sent_list,
    "countReceiveEdoc": _count_edoc,
    "countReceiveStatus": _count_status,
    "getAgenciesList": agencies_102,
    "getAgenciesListQD20": agencies_qd20,
}


async def _authenticated(request: web.Request) -> tuple[Runtime, Principal]:
    access = request.app[ACCESS]
    also = (HASH_FILE,) if request.match_info.get("operation") == "sendEdoc" else ()
    principal = await access.sdk_caller(request, also_signed=also)
    access.limit(principal)
    return request.app[RUNTIME], principal


async def operation(request: web.Request) -> web.StreamResponse:
    """One SDK operation; every failure is answered in the SDK's FAIL form."""
    name = request.match_info["operation"]
    handler = OPERATIONS.get(name)
    try:
        if name == "downloadEdoc":
            return await download_edoc(request)
        if handler is None:
            raise NotFound(f"no operation {name}; docbroker offers {', '.join(OPERATIONS)}")
        runtime, principal = await _authenticated(request)
        return web.json_response(await handler(request, runtime, principal))
    except RateLimited as exc:
        request.app[RUNTIME].metrics.access_refused("sdk", exc.code)
        resp = fail_response(exc.code, str(exc), exc.http_status)
        resp.headers["Retry-After"] = str(max(1, round(exc.retry_after + 0.5)))
        return resp
    except DocbrokerError as exc:
        if exc.http_status >= 500:
            log.warning("sdk operation failed", operation=name, code=exc.code, error=str(exc))
        else:
            log.info("sdk operation refused", operation=name, code=exc.code, error=str(exc))
            if exc.http_status in (401, 403):
                request.app[RUNTIME].metrics.access_refused("sdk", exc.code)
        first = exc.problems[0]
        return fail_response(first.code, "; ".join(map(str, exc.problems)), exc.http_status)
