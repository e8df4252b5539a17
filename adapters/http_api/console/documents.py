"""A document's timeline: each hop, each recipient, each status, and the audit
chain's verdict on its events."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote

from aiohttp import web

from adapters.http_api.console.guard import see_other
from adapters.http_api.console.render import render
from adapters.http_api.keys import RUNTIME
from broker.core.errors import NotFound
from broker.views.chain_check import ChainVerdict, verdict
from broker.views.document_fold import details


def timeline_url(document_id: str, sender: str | None = None) -> str:
    url = f"/console/documents/{quote(document_id, safe='')}"
    return f"{url}?sender={quote(sender, safe='')}" if sender else url


async def lookup(request: web.Request) -> web.StreamResponse:
    """The search form; a DocumentId goes straight to its timeline."""
    document_id = request.query.get("document_id", "").strip()
    if document_id:
        return see_other(timeline_url(document_id, request.query.get("sender") or None))
    return render(request, "search.html", {"section": "documents", "query": {}, "page": None})


def event_row(e: dict[str, Any]) -> dict[str, Any]:
    """One hop of the timeline: what happened, to whom, by whom, and its link."""
    d = details(e)
    problems = [p.get("code", "") for p in d.get("problems") or ()]
    return {
        "type": e["type"],
        "at_ms": e["at_ms"],
        "recipient": e.get("recipient") or "",
        "actor": e.get("actor") or "",
        "message_id": e["message_id"],
        "link": f"{e['chain']}#{e['seq']}",
        "kind": d.get("kind") or "",
        "status_code": d.get("status_code") or "",
        "route": d.get("to") or "",
        "code": d.get("code") or ", ".join(problems),
        "reason": d.get("reason") or d.get("description") or "",
        "signature": (d.get("sender_signature") or {}).get("outcome", ""),
    }


async def chain_verdict(request: web.Request, events: list[dict[str, Any]]) -> ChainVerdict:
    """The verdict on the events shown (those of this sender's document)."""
    runtime = request.config_dict[RUNTIME]
    shown = {(e["chain"], e["seq"]) for e in events}
    texts, stored = await runtime.documents.chain_texts(events[0]["document_id"])
    own = [t for t in texts if _link(t) in shown]
    heads = {c: (h.seq, h.hash) for c, h in runtime.heads.heads.items()}
    return verdict(own, stored, heads)


def _link(text: str) -> tuple[str, int] | None:
    try:
        obj = json.loads(text)
        return str(obj["chain"]), int(obj["seq"])
    except (ValueError, KeyError, TypeError):
        return None


async def timeline(request: web.Request) -> web.StreamResponse:
    runtime = request.config_dict[RUNTIME]
    document_id = request.match_info["document_id"]
    named = request.query.get("sender") or None
    codes = None
    if named:
        agency = runtime.directory.current.find(named)
        codes = agency.codes() if agency is not None else (named,)
    state = await runtime.documents.state(document_id, codes)
    if state is None:
        raise NotFound(f"no document {document_id}")
    events = await runtime.documents.trace(document_id, codes)
    context = {
        "section": "documents",
        "state": state,
        "events": [event_row(e) for e in events],
        "verdict": await chain_verdict(request, events) if events else None,
    }
    return render(request, "timeline.html", context)
