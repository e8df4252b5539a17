"""What became of what an agency sent: /v1/documents/{id} and its trace; the directory.

A document is shown to its sender (by either of its codes) and to
administrators; to anyone else it does not exist (404, not 403: whether
another agency sent a document is not theirs to learn).
"""

from __future__ import annotations

from aiohttp import web

from adapters.http_api.access import principal_of
from adapters.http_api.keys import RUNTIME
from broker.core.errors import NotFound
from broker.views.document_fold import DocumentState


async def _visible_state(request: web.Request) -> DocumentState:
    document_id = request.match_info["document_id"]
    state = await request.app[RUNTIME].documents.state(document_id)
    principal = principal_of(request)
    visible = state is not None and (
        principal.admin or (state.sender is not None and principal.is_agency(state.sender))
    )
    if not visible:
        raise NotFound(f"no document {document_id} sent by {principal.name}")
    assert state is not None
    return state


async def document_state(request: web.Request) -> web.StreamResponse:
    return web.json_response((await _visible_state(request)).to_json())


async def document_trace(request: web.Request) -> web.StreamResponse:
    state = await _visible_state(request)
    events = await request.app[RUNTIME].documents.trace(state.document_id)
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
