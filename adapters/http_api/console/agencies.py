"""The agencies: the directory, and one agency's backlog, credentials and certificate.

Credentials are shown as the directory keeps them, which is without secrets: a
token by its public id (its SHA-256 is not shown either), an SDK system by its id
(its secret is derived, never stored; its salt is not shown), a certificate by its
pinned fingerprint, with the subject and expiry of the certificate the agency last
signed with, as the audit trail recorded it.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from adapters.http_api.console.render import render
from adapters.http_api.keys import RUNTIME
from broker.clock import now_ms
from broker.core.errors import NotFound
from broker.directory.model import Agency
from broker.runtime import Runtime
from broker.views.document_fold import details

RECENT = 20


async def agency_list(request: web.Request) -> web.StreamResponse:
    runtime = request.config_dict[RUNTIME]
    directory = runtime.directory.current
    backlog = {b.agency: b for b in await runtime.view.pending_by_agency()}
    rows = [
        {"agency": a, "backlog": backlog.get(a.code), "path": len(directory.ancestors(a)) - 1}
        for a in sorted(directory, key=lambda a: a.code)
    ]
    return render(request, "agencies.html", {"section": "agencies", "rows": rows})


def credentials(agency: Agency) -> dict[str, list[dict[str, Any]]]:
    """What the page shows of an agency's credentials: ids, dates, flags; no secret,
    no hash, no salt."""
    return {
        "tokens": [
            {
                "id": t.id,
                "label": t.label,
                "created_at_ms": t.created_at_ms or None,
                "expires_at_ms": t.expires_at_ms or None,
                "revoked": t.revoked,
            }
            for t in agency.tokens
        ],
        "systems": [
            {
                "id": s.system_id,
                "created_at_ms": s.created_at_ms or None,
                "expires_at_ms": s.expires_at_ms or None,
                "revoked": s.revoked,
                "plain_http": s.plain_http,
                "networks": ", ".join(s.networks),
                "manage_agencies": s.manage_agencies,
            }
            for s in agency.systems
        ],
    }


async def last_signer(runtime: Runtime, agency: Agency, sent: list[dict[str, Any]]) -> dict | None:
    """The certificate of the agency's latest signed document, as its audit event
    recorded it (signer subject, fingerprint, expiry, when)."""
    for doc in sent[:5]:
        for e in await runtime.documents.trace(doc["document_id"], agency.codes()):
            signature = details(e).get("sender_signature") or {}
            if e["type"] == "accepted" and signature.get("signer_fingerprint"):
                return {
                    "subject": signature.get("signer", ""),
                    "fingerprint": signature["signer_fingerprint"],
                    "not_after": signature.get("signer_not_after") or None,
                    "outcome": signature.get("outcome", ""),
                    "at_ms": e["at_ms"],
                    "pinned": signature["signer_fingerprint"] in agency.certificates,
                }
    return None


async def agency_page(request: web.Request) -> web.StreamResponse:
    runtime = request.config_dict[RUNTIME]
    directory = runtime.directory.current
    agency = directory.find(request.match_info["code"])
    if agency is None:
        raise NotFound(f"no agency {request.match_info['code']} in the directory")
    backlog = next(
        (b for b in await runtime.view.pending_by_agency() if b.agency == agency.code), None
    )
    sent = await runtime.documents.sent_by(agency.codes(), limit=RECENT)
    parent = directory.find(agency.parent) if agency.parent else None
    context = {
        "section": "agencies",
        "agency": agency,
        "parent": parent,
        "children": directory.children(agency.code),
        "backlog": backlog,
        "waiting_hours": backlog.age_seconds(now_ms()) / 3600 if backlog else None,
        "credentials": credentials(agency),
        "signer": await last_signer(runtime, agency, sent),
        "sent": sent,
    }
    return render(request, "agency.html", context)
