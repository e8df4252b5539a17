"""The document view's search index: one row per (sender, DocumentId), kept current.

What a search filters on (number/notation, subject, sender, recipients, accepted
time, each recipient's state and the statuses it reached) is folded from the
document's events whenever the store takes a new event of it
(`DocumentsStore.apply` calls `reindex` in the transaction that stores the
events), so a search reads only these tables. An item is a document an agency
sent (kind "document", folded by `fold_document`), or the status packages an
agency sent about a DocumentId (kind "status"). Every write replaces the rows of
the identity it folds, so applying the same records twice (the daemon and a CLI
process share the file) leaves the same rows.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from broker.core.events import EventType
from broker.core.records import iso_ms
from broker.views.document_fold import (
    Body,
    RecipientState,
    Resolve,
    details,
    event_order,
    events_of,
    fold_document,
    is_document_accepted,
)
from broker.views.document_query import DocumentPage, DocumentQuery, code_key, encode_cursor, where

TABLES = ("found", "found_recipients", "found_marks")
SCHEMA = """
CREATE TABLE IF NOT EXISTS found(
    sender TEXT NOT NULL, document_id TEXT NOT NULL, sender_agency TEXT,
    kind TEXT NOT NULL, code TEXT NOT NULL, code_key TEXT NOT NULL, subject TEXT NOT NULL,
    accepted_at_ms INTEGER NOT NULL,
    PRIMARY KEY(sender, document_id)) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS found_by_time ON found(accepted_at_ms, sender, document_id);
CREATE INDEX IF NOT EXISTS found_by_code ON found(code_key, accepted_at_ms);
CREATE INDEX IF NOT EXISTS found_by_document ON found(document_id);
CREATE INDEX IF NOT EXISTS found_by_sender ON found(sender_agency, accepted_at_ms);
CREATE TABLE IF NOT EXISTS found_recipients(
    sender TEXT NOT NULL, document_id TEXT NOT NULL, position INTEGER NOT NULL,
    requested TEXT NOT NULL, agency TEXT, state TEXT NOT NULL,
    latest_status TEXT, latest_status_at_ms INTEGER,
    PRIMARY KEY(sender, document_id, position)) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS found_recipients_agency ON found_recipients(agency);
CREATE INDEX IF NOT EXISTS found_recipients_requested ON found_recipients(requested);
CREATE TABLE IF NOT EXISTS found_marks(
    sender TEXT NOT NULL, document_id TEXT NOT NULL, mark TEXT NOT NULL,
    PRIMARY KEY(sender, document_id, mark)) WITHOUT ROWID;
"""


@dataclass(frozen=True, slots=True)
class FoundRecipient:
    """One recipient of an item: its codes, its state now (routed, delivered,
    acknowledged, refused), its latest status and every status it reached."""

    requested: str
    agency: str | None
    state: str
    latest_status: str | None = None
    latest_status_at_ms: int | None = None
    reached: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Found:
    """What the index holds of one (sender, DocumentId)."""

    sender: str
    document_id: str
    sender_agency: str | None
    kind: str
    code: str
    subject: str
    accepted_at_ms: int
    recipients: tuple[FoundRecipient, ...]


# -- folding an item


def sender_codes(events: Iterable[Body], sender: str, resolve: Resolve | None) -> set[str]:
    """Every code the events name the sender by: as written, its directory code, and
    any other code the directory resolves to the same agency."""
    agency = resolve(sender) if resolve is not None else None
    codes = {sender, agency} if agency else {sender}
    if agency and resolve is not None:
        named = {c for e in events for c in (e.get("sender"), e.get("recipient")) if c}
        codes |= {c for c in named if resolve(c) == agency}
    return codes


def _state(r: RecipientState) -> str:
    if r.route == "refused":
        return "refused"
    if r.acknowledged_at_ms is not None:
        return "acknowledged"
    return "delivered" if r.delivered_at_ms is not None else "routed"


def document_item(events: Sequence[Body], sender: str, resolve: Resolve | None) -> Found | None:
    """The document `sender` sent under the events' DocumentId, as `fold_document` tells it."""
    state = fold_document(events_of(events, sender_codes(events, sender, resolve)), resolve)
    if state is None or state.accepted_at_ms is None or state.sender != sender:
        return None
    recipients = tuple(
        FoundRecipient(
            r.requested,
            r.agency,
            _state(r),
            r.latest_status.code if r.latest_status else None,
            r.latest_status.at_ms if r.latest_status else None,
            r.reached,
        )
        for r in state.recipients
    )
    return Found(
        sender,
        state.document_id,
        resolve(sender) if resolve is not None else None,
        "document",
        state.code,
        state.subject,
        state.accepted_at_ms,
        recipients,
    )


@dataclass
class _StatusRecipient:
    requested: str
    agency: str | None
    state: str
    reached: list[tuple[str, int]]


def status_item(events: Sequence[Body], sender: str, resolve: Resolve | None) -> Found | None:
    """The status packages `sender` sent about the events' DocumentId: whom each went
    to, how far each got, and the status codes each recipient was told."""
    ordered = sorted(events, key=event_order)
    sent = {
        e["message_id"]: e
        for e in ordered
        if e["type"] == EventType.ACCEPTED
        and e["sender"] == sender
        and details(e).get("kind") == "status"
    }
    if not sent:
        return None
    to: dict[str, _StatusRecipient] = {}
    for e in ordered:
        if e["message_id"] not in sent or not e.get("recipient"):
            continue
        _status_progress(to, e, sent[e["message_id"]])
    first = next(iter(sent.values()))
    recipients = tuple(
        FoundRecipient(
            r.requested,
            r.agency,
            r.state,
            r.reached[-1][0] if r.reached else None,
            r.reached[-1][1] if r.reached else None,
            tuple(dict.fromkeys(code for code, _ in r.reached)),
        )
        for r in to.values()
    )
    agency = resolve(sender) if resolve is not None else None
    return Found(sender, first["document_id"], agency, "status", "", "", first["at_ms"], recipients)


_ORDER = ("routed", "delivered", "acknowledged")


def _status_progress(to: dict[str, _StatusRecipient], e: Body, accepted: Body) -> None:
    """One routing or receipt event of a status package, applied to its recipient."""
    recipient = str(e["recipient"])
    found = to.get(recipient) or next((r for r in to.values() if r.agency == recipient), None)
    code = str(details(accepted).get("status_code") or "")
    if e["type"] == EventType.ROUTED:
        requested = str(details(e).get("requested") or recipient)
        r = to.setdefault(requested, _StatusRecipient(requested, recipient, "routed", []))
        r.agency = recipient
        if code:
            r.reached.append((code, accepted["at_ms"]))
    elif e["type"] == EventType.RECIPIENT_REFUSED:
        to.setdefault(recipient, _StatusRecipient(recipient, None, "refused", []))
    elif found is not None and e["type"] in (EventType.DELIVERED, EventType.ACKNOWLEDGED):
        mark = "delivered" if e["type"] == EventType.DELIVERED else "acknowledged"
        if found.state in _ORDER and _ORDER.index(mark) > _ORDER.index(found.state):
            found.state = mark


def items_of(events: Sequence[Body], resolve: Resolve | None) -> list[Found]:
    """Every item the events of one DocumentId make: a document per agency that sent
    one under it, else the statuses the agency sent about it."""
    accepted = [e for e in events if e["type"] == EventType.ACCEPTED]
    documents = {e["sender"] for e in accepted if is_document_accepted(e)}
    found = []
    for sender in dict.fromkeys(e["sender"] for e in accepted):
        fold = document_item if sender in documents else status_item
        item = fold(events, sender, resolve)
        if item is not None:
            found.append(item)
    return found


# -- the tables


def reindex(
    conn: sqlite3.Connection, document_ids: Collection[str], resolve: Resolve | None
) -> None:
    """Fold again every item of these DocumentIds from the events stored (in the
    caller's transaction) and replace their rows."""
    for document_id in document_ids:
        rows = conn.execute("SELECT body FROM events WHERE document_id = ?", (document_id,))
        for item in items_of([json.loads(body) for (body,) in rows], resolve):
            _store(conn, item)


def _store(conn: sqlite3.Connection, item: Found) -> None:
    key = (item.sender, item.document_id)
    conn.execute(
        "INSERT OR REPLACE INTO found VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        (
            *key,
            item.sender_agency,
            item.kind,
            item.code,
            code_key(item.code),
            item.subject,
            item.accepted_at_ms,
        ),
    )
    conn.execute("DELETE FROM found_recipients WHERE sender = ? AND document_id = ?", key)
    conn.execute("DELETE FROM found_marks WHERE sender = ? AND document_id = ?", key)
    for position, r in enumerate(item.recipients):
        conn.execute(
            "INSERT OR REPLACE INTO found_recipients VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (*key, position, r.requested, r.agency, r.state, r.latest_status,
             r.latest_status_at_ms),
        )  # fmt: skip
        conn.executemany(
            "INSERT OR IGNORE INTO found_marks VALUES (?, ?, ?)",
            [(*key, mark) for mark in (r.state, *r.reached)],
        )


# -- searching


def find(conn: sqlite3.Connection, query: DocumentQuery, resolve: Resolve | None) -> DocumentPage:
    """One page of what `query` matches, newest first."""
    sql, args = where(query, resolve)
    rows = conn.execute(
        "SELECT sender, document_id, sender_agency, kind, code, subject, accepted_at_ms "  # noqa: S608
        f"FROM found f WHERE {sql} "
        "ORDER BY f.accepted_at_ms DESC, f.sender DESC, f.document_id DESC LIMIT ?",
        (*args, query.limit + 1),
    ).fetchall()
    page = rows[: query.limit]
    items = tuple(_item_json(conn, row, query.visible_to) for row in page)
    more = len(rows) > query.limit
    last = page[-1] if page else None
    cursor = encode_cursor((last[6], last[0], last[1])) if more and last else None
    return DocumentPage(items, cursor)


def _item_json(
    conn: sqlite3.Connection, row: Sequence[Any], visible_to: tuple[str, ...] | None
) -> dict[str, Any]:
    """An item as the API shows it. An agency that only received it sees its own
    recipient state, not the other recipients'."""
    sender, document_id, sender_agency, kind, code, subject, at_ms = row
    recipients = [
        {
            "agency": agency,
            "requested": requested,
            "state": state,
            "latest_status": (
                {"code": status, "at": iso_ms(status_at)} if status is not None else None
            ),
        }
        for requested, agency, state, status, status_at in conn.execute(
            "SELECT requested, agency, state, latest_status, latest_status_at_ms "
            "FROM found_recipients WHERE sender = ? AND document_id = ? ORDER BY position",
            (sender, document_id),
        )
    ]
    if visible_to is not None and not {sender, sender_agency} & set(visible_to):
        mine = set(visible_to)
        recipients = [r for r in recipients if {r["agency"], r["requested"]} & mine]
    return {
        "document_id": document_id,
        "sender": sender,
        "code": code,
        "subject": subject,
        "kind": kind,
        "accepted_at": iso_ms(at_ms),
        "recipients": recipients,
    }
