"""Mailbox endpoints: list (with long poll), fetch byte for byte, acknowledge."""

from __future__ import annotations

import base64
import re

from aiohttp import web

from adapters.http_api.access import principal_of, require_agency
from adapters.http_api.keys import RUNTIME
from adapters.http_api.limits import long_polling
from broker.core.errors import BadRequest, NotFound
from broker.core.records import iso_ms
from broker.service.handover import acknowledge as acknowledge_delivery
from broker.service.handover import read_envelope
from broker.views.mailbox import Delivery

AGENCY_CODE = re.compile(r"^[0-9A-Za-z][0-9A-Za-z._-]{0,63}$")
MAX_LIMIT = 1000


def _agency(request: web.Request, *, admin_may_read: bool) -> str:
    """The mailbox's agency, named by either of its codes, as its directory code;
    only the agency itself (or an administrator reading) may use it."""
    code = request.match_info["agency"]
    if not AGENCY_CODE.match(code):
        raise BadRequest(f"not an agency code: {code!r}")
    agency = request.app[RUNTIME].directory.current.find(code)
    if agency is None:
        raise NotFound(f"no agency {code} in the directory")
    require_agency(request, agency.code, admin_may_read=admin_may_read)
    return agency.code


def _int_param(request: web.Request, name: str, default: int, lo: int, hi: int) -> int:
    raw = request.query.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise BadRequest(f"{name} must be an integer, got {raw!r}") from None
    if not lo <= value <= hi:
        raise BadRequest(f"{name} must be between {lo} and {hi}, got {value}")
    return value


def _float_param(request: web.Request, name: str, hi: float) -> float:
    raw = request.query.get(name)
    if raw is None:
        return 0.0
    try:
        value = float(raw)
    except ValueError:
        raise BadRequest(f"{name} must be a number of seconds, got {raw!r}") from None
    if not 0 <= value <= hi:
        raise BadRequest(f"{name} must be between 0 and {hi:g} seconds, got {value:g}")
    return value


def delivery_json(d: Delivery) -> dict[str, object]:
    return {
        "cursor": d.seq,
        "message_id": d.message_id,
        "document_id": d.document_id,
        "kind": d.kind,
        "sender": d.sender,
        "size": d.size,
        "sha256": d.sha256,
        "received_at": iso_ms(d.received_at_ms),
        "delivered_at": iso_ms(d.delivered_at_ms),
        "acknowledged_at": iso_ms(d.acked_at_ms),
    }


async def list_envelopes(request: web.Request) -> web.StreamResponse:
    runtime = request.app[RUNTIME]
    agency = _agency(request, admin_may_read=True)
    after = _int_param(request, "after", 0, 0, 2**62)
    limit = _int_param(request, "limit", 100, 1, MAX_LIMIT)
    wait = _float_param(request, "wait", runtime.settings.http.max_long_poll)
    state = request.query.get("state", "pending")
    if state not in ("pending", "all"):
        raise BadRequest(f"state must be pending or all, got {state!r}")
    with long_polling(request, wait):
        found = await runtime.view.list(
            agency, after=after, limit=limit, include_acked=state == "all", wait=wait
        )
    return web.json_response(
        {
            "agency": agency,
            "envelopes": [delivery_json(d) for d in found],
            "next_after": found[-1].seq if found else after,
        }
    )


async def _delivery(request: web.Request, *, admin_may_read: bool) -> Delivery:
    runtime = request.app[RUNTIME]
    agency = _agency(request, admin_may_read=admin_may_read)
    message_id = request.match_info["message_id"]
    found = await runtime.view.get(agency, message_id)
    if found is None:
        raise NotFound(f"no envelope {message_id} in the mailbox of {agency}")
    return found


async def fetch_envelope(request: web.Request) -> web.StreamResponse:
    runtime = request.app[RUNTIME]
    d = await _delivery(request, admin_may_read=True)
    body = await read_envelope(runtime, d, by_recipient=not principal_of(request).admin)
    digest = base64.b64encode(bytes.fromhex(d.sha256)).decode() if d.sha256 else ""
    headers = {
        "Docbroker-Message-Id": d.message_id,
        "Docbroker-Document-Id": d.document_id,
        "Docbroker-Sender": d.sender,
        "Docbroker-Kind": d.kind,
        "ETag": f'"{d.sha256}"',
    }
    if digest:
        headers["Repr-Digest"] = f"sha-256=:{digest}:"
    return web.Response(body=body, content_type="application/xml", headers=headers)


async def acknowledge(request: web.Request) -> web.StreamResponse:
    d = await acknowledge_delivery(
        request.app[RUNTIME], await _delivery(request, admin_may_read=False)
    )
    return web.json_response(
        {
            "message_id": d.message_id,
            "acknowledged_at": iso_ms(d.acked_at_ms),
        }
    )
