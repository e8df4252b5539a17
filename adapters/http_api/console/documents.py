"""A document's timeline: each hop, each recipient, each status, and the audit
chain's verdict on its events."""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import date, datetime, timedelta
from typing import Any
from urllib.parse import quote

from aiohttp import web

from adapters.http_api.console.render import VIETNAM, page_url, render
from adapters.http_api.keys import RUNTIME
from broker.core.errors import BadRequest, NotFound
from broker.views.chain_check import ChainVerdict, verdict
from broker.views.document_fold import details
from broker.views.document_query import STATES, STATUS_CODES, DocumentQuery, parse_when

PAGE_SIZE = 50


def timeline_url(document_id: str, sender: str | None = None) -> str:
    url = f"/console/documents/{quote(document_id, safe='')}"
    return f"{url}?sender={quote(sender, safe='')}" if sender else url


FIELDS = ("code", "document_id", "sender", "recipient", "from", "to", "status", "kind")
STATUSES = (*STATUS_CODES, *STATES)


def console_query(form: Mapping[str, str]) -> DocumentQuery | None:
    """The search the form asks for (an administrator's: everything is visible); None
    for an empty form; BadRequest for a value the search refuses."""
    given = {k: form[k].strip() for k in FIELDS if form.get(k, "").strip()}
    if not given:
        return None
    return DocumentQuery(
        code=given.get("code"),
        document_id=given.get("document_id"),
        sender=given.get("sender"),
        recipient=given.get("recipient"),
        since_ms=vietnam_day(given["from"]) if "from" in given else None,
        until_ms=vietnam_day(given["to"], end=True) if "to" in given else None,
        status=given.get("status"),
        kind=given.get("kind"),
        limit=PAGE_SIZE,
        cursor=form.get("cursor") or None,
    )


def vietnam_day(text: str, *, end: bool = False) -> int:
    """A day of the form (YYYY-MM-DD) as officials mean it, in Vietnam's time: from its
    start, or with `end` up to its end; any other text as the search reads it."""
    try:
        day = date.fromisoformat(text) + timedelta(days=1 if end else 0)
    except ValueError:
        return parse_when(text, end=end)
    return int(datetime(day.year, day.month, day.day, tzinfo=VIETNAM).timestamp() * 1000)


async def search(request: web.Request) -> web.StreamResponse:
    """The search form and one page of what it finds, newest first."""
    form = {k: request.query.get(k, "") for k in FIELDS}
    context: dict[str, Any] = {
        "section": "documents",
        "form": form,
        "statuses": STATUSES,
        "page": None,
        "error": "",
        "next_url": "",
    }
    try:
        query = console_query(request.query)
    except BadRequest as exc:
        context["error"] = str(exc)
        return render(request, "search.html", context, status=400)
    if query is not None:
        page = await request.config_dict[RUNTIME].documents.find(query)
        context["page"] = [
            {**item, "url": timeline_url(item["document_id"], item["sender"])}
            for item in page.items
        ]
        if page.next_cursor:
            context["next_url"] = page_url(request, cursor=page.next_cursor)
    return render(request, "search.html", context)


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
        "code": (d.get("code") or "") if e["type"] == "recipient-refused" else ", ".join(problems),
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
