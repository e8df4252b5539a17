"""What became of what an agency sent: /v1/documents/{id} and its trace, the search
(/v1/documents?...); the directory.

A document is shown to its sender (by either of its codes) and to
administrators; to anyone else it does not exist (404, not 403: whether
another agency sent a document is not theirs to learn). A search shows an
agency what it sent and what it received (of the latter, its own recipient
state only); an administrator everything.
"""

from __future__ import annotations

from aiohttp import web

from adapters.http_api.access import principal_of
from adapters.http_api.keys import RUNTIME
from broker.clock import now_ms
from broker.core.errors import Archived, BadRequest, NotFound
from broker.views.document_fold import DocumentState
from broker.views.document_query import DEFAULT_LIMIT, DocumentQuery, parse_when

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


SEARCH_TEXT = ("code", "document_id", "sender", "recipient", "status", "kind", "cursor")


def search_query(request: web.Request) -> DocumentQuery:
    """The search the query string asks for, limited to what the caller may see."""
    q = request.query
    agency = principal_of(request).agency
    raw_limit = q.get("limit", str(DEFAULT_LIMIT))
    try:
        limit = int(raw_limit)
    except ValueError:
        raise BadRequest(f"limit must be an integer, got {raw_limit[:20]!r}") from None
    return DocumentQuery(
        **{name: q[name] for name in SEARCH_TEXT if name in q},
        since_ms=parse_when(q["from"]) if "from" in q else None,
        until_ms=parse_when(q["to"], end=True) if "to" in q else None,
        visible_to=agency.codes() if agency is not None else None,
        limit=limit,
    )


async def find_documents(request: web.Request) -> web.StreamResponse:
    """GET /v1/documents: a page of the documents the query matches, newest first."""
    page = await request.app[RUNTIME].documents.find(search_query(request))
    return web.json_response(page.to_json())


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
