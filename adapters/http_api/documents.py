"""What became of what an agency sent: /v1/documents/{id} and its trace; the directory.

A document is shown to its sender (by either of its codes) and to
administrators; to anyone else it does not exist (404, not 403: whether
another agency sent a document is not theirs to learn).
"""

from __future__ import annotations

from aiohttp import web

from adapters.http_api.access import principal_of
from adapters.http_api.keys import RUNTIME
from broker.clock import now_ms
from broker.core.errors import Archived, NotFound
from broker.views.document_fold import DocumentState

DAY_MS = 86_400_000


def _sender_codes(request: web.Request) -> tuple[str, ...] | None:
    """Whose document: the caller's own (a document's identity is (sender, DocumentId));
    an administrator names the sender with `?sender=`, or gets the first sender's."""
    principal = principal_of(request)
    if principal.agency is not None:
        return principal.agency.codes()
    named = request.query.get("sender")
    if not named:
        return None
    agency = request.app[RUNTIME].directory.current.find(named)
    return agency.codes() if agency is not None else (named,)


async def _visible_state(request: web.Request) -> tuple[DocumentState, tuple[str, ...] | None]:
    document_id = request.match_info["document_id"]
    codes = _sender_codes(request)
    state = await request.app[RUNTIME].documents.state(document_id, codes)
    if state is None or state.sender is None:
        _archived_or_not_found(request, document_id)
    return state, codes


def _archived_or_not_found(request: web.Request, document_id: str) -> None:
    """A document the view does not know: `archived` (410) when the caller sent it, the
    pipeline took it in, and that was long enough ago for retention to have pruned its
    events (`retention.events_days`); otherwise not found. The dedup index, a compacted
    topic that retention never prunes, remembers it."""
    runtime = request.app[RUNTIME]
    agency = principal_of(request).agency
    days = runtime.settings.retention.events_days
    if agency is not None and days > 0:
        first = runtime.dedup.committed(agency.code, document_id)
        if first is not None and first.at_ms < now_ms() - days * DAY_MS:
            raise Archived(
                f"document {document_id}: its audit events were pruned from the log by "
                "retention (retention.events_days); a signed archive holds them"
            )
    raise NotFound(f"no document {document_id} sent by {principal_of(request).name}")


async def document_state(request: web.Request) -> web.StreamResponse:
    return web.json_response((await _visible_state(request))[0].to_json())


async def document_trace(request: web.Request) -> web.StreamResponse:
    state, codes = await _visible_state(request)
    events = await request.app[RUNTIME].documents.trace(state.document_id, codes)
    return web.json_response({"document_id": state.document_id, "events": events})


async def list_agencies(request: web.Request) -> web.StreamResponse:
    """The directory as senders need it: codes, names, places; no credentials."""
    directory = request.app[RUNTIME].directory.current
    return web.json_response(
        {
            "agencies": [
                {
                    "code": a.code,
                    "code102": a.code102,
                    "name": a.name,
                    "parent": a.parent,
                    "level": a.level,
                    "kind": str(a.kind),
                    "local": a.local,
                    "status": str(a.status),
                }
                for a in directory
            ]
        }
    )
