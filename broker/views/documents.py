"""The document view: a read model of the `events` topic, one document at a time.

For one edXML DocumentId it answers where the document is for each of its
recipients (routed, delivered, acknowledged, the latest processing status) and
its trace (every audit event, in order). Three layers:

- `fold_document` (broker.views.document_fold): a pure function from a document's
  stored event bodies to a `DocumentState`, tested without storage;
- `DocumentsStore`: the events in a local SQLite file, indexed by document id
  and, for listings of sent documents, by sender, with a search index
  (broker.views.document_search) kept current in the same transactions;
- `DocumentsView`: keeps the store current by tailing every partition of the
  `events` topic from the positions stored with it (a restart continues; deleting
  the file rebuilds it from the log), and answers queries off the event loop.

Events are read as stored (`events.event_bytes`: `Event.body()` plus chain,
seq and prev). A document's events share its partition; the statuses that
answer it are keyed by its id, so they are among them.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Sequence
from pathlib import Path
from typing import Any, Protocol

import structlog

from broker.core.events import EventType
from broker.core.logrecords import Record, TopicPartition
from broker.core.records import iso_ms
from broker.core.topics import Topics
from broker.log.interface import DurableLog
from broker.views import document_search
from broker.views.chain_check import neighbours
from broker.views.document_fold import (
    Body,
    DocumentState,
    Resolve,
    details,
    events_of,
    fold_document,
    is_document_accepted,
)
from broker.views.document_query import DocumentPage, DocumentQuery
from broker.views.readmodel import (
    open_store,
    store_position,
    stored_positions,
    transaction,
)
from broker.views.tailed import TailedView

log = structlog.get_logger(__name__)


# -- the store

SCHEMA_VERSION = 4  # a rebuildable cache: another version is dropped and rebuilt
SCHEMA = """
CREATE TABLE IF NOT EXISTS events(
    chain TEXT NOT NULL, seq INTEGER NOT NULL,
    document_id TEXT NOT NULL, message_id TEXT NOT NULL, type TEXT NOT NULL,
    at_ms INTEGER NOT NULL, sender TEXT NOT NULL, recipient TEXT,
    body TEXT NOT NULL,
    UNIQUE(chain, seq));
CREATE INDEX IF NOT EXISTS events_document ON events(document_id, at_ms, chain, seq);
CREATE TABLE IF NOT EXISTS sent(
    sender TEXT NOT NULL, document_id TEXT NOT NULL, message_id TEXT NOT NULL,
    accepted_at_ms INTEGER NOT NULL, recipients INTEGER NOT NULL,
    PRIMARY KEY(sender, document_id)) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS sent_by_time ON sent(sender, accepted_at_ms, document_id);
CREATE TABLE IF NOT EXISTS upstream(
    axis_doc_id TEXT NOT NULL, recipient TEXT NOT NULL,
    document_id TEXT NOT NULL, message_id TEXT NOT NULL, sender TEXT NOT NULL,
    trace_id TEXT NOT NULL, kind TEXT NOT NULL, delivered INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY(axis_doc_id, recipient)) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS upstream_message ON upstream(message_id, recipient);
"""


class DocumentsStore:
    """The SQLite side of the view: the events as stored in the log, by document, and
    the documents each sender sent. Not thread-safe: used from one thread only."""

    def __init__(self, path: Path, events_topic: str) -> None:
        self._conn = open_store(
            path,
            SCHEMA_VERSION,
            SCHEMA + document_search.SCHEMA,
            ("events", "sent", "upstream", *document_search.TABLES),
        )
        self.events_topic = events_topic
        self._touched: set[str] = set()  # DocumentIds whose search items to fold again

    def close(self) -> None:
        self._conn.close()

    def positions(self) -> dict[TopicPartition, int]:
        return stored_positions(self._conn)

    def apply(self, records: Sequence[Record], resolve: Resolve | None = None) -> int:
        """Apply records in one transaction; the number of events new to the store.
        Records applied before (re-read after a restart, or applied by another process
        sharing the file) change nothing. `resolve` (see `fold_document`) attributes
        codes for the search index."""
        added = 0
        self._touched.clear()
        with transaction(self._conn):
            for record in records:
                event = _stored_event(record) if record.topic == self.events_topic else None
                if event is not None:
                    added += self._insert(event, record.value or b"")
                store_position(self._conn, record)
            document_search.reindex(self._conn, self._touched, resolve)
        return added

    def _insert(self, e: Body, raw: bytes) -> int:
        cur = self._conn.execute(
            "INSERT OR IGNORE INTO events VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                e["chain"],
                e["seq"],
                e["document_id"],
                e["message_id"],
                e["type"],
                e["at_ms"],
                e["sender"],
                e.get("recipient"),
                raw.decode("utf-8", "replace"),
            ),
        )
        if not e["document_id"]:  # kept only as a link of its chain (chain_check)
            return 0
        if cur.rowcount:
            self._index_upstream(e)
            self._touched.add(e["document_id"])
        if cur.rowcount and is_document_accepted(e):
            self._conn.execute(
                "INSERT OR IGNORE INTO sent VALUES (?, ?, ?, ?, ?)",
                (
                    e["sender"],
                    e["document_id"],
                    e["message_id"],
                    e["at_ms"],
                    len(details(e).get("recipients") or ()),
                ),
            )
        return cur.rowcount

    def _index_upstream(self, e: Body) -> None:
        """What the national axis took (by its docId), and which of it a recipient's
        province has taken since (a DELIVERED event of that message and recipient)."""
        if e["type"] == EventType.SENT_UPSTREAM and details(e).get("axis_doc_id"):
            self._conn.execute(
                "INSERT OR IGNORE INTO upstream VALUES (?, ?, ?, ?, ?, ?, ?, 0)",
                (
                    details(e)["axis_doc_id"],
                    e.get("recipient") or "",
                    e["document_id"],
                    e["message_id"],
                    e["sender"],
                    e.get("trace_id") or "",
                    details(e).get("kind") or "document",
                ),
            )
        elif e["type"] == EventType.DELIVERED:
            self._conn.execute(
                "UPDATE upstream SET delivered = 1 WHERE message_id = ? AND recipient = ?",
                (e["message_id"], e.get("recipient") or ""),
            )

    def upstream_undelivered(self, axis_doc_id: str) -> list[dict[str, str]]:
        """The recipients of what the axis took as `axis_doc_id` not yet known to have
        taken it: recipient, document_id, message_id, sender, trace_id, kind."""
        rows = self._conn.execute(
            "SELECT recipient, document_id, message_id, sender, trace_id, kind FROM upstream "
            "WHERE axis_doc_id = ? AND delivered = 0",
            (axis_doc_id,),
        )
        keys = ("recipient", "document_id", "message_id", "sender", "trace_id", "kind")
        return [dict(zip(keys, row, strict=True)) for row in rows]

    def events(
        self, document_id: str, sender_codes: Collection[str] | None = None
    ) -> list[dict[str, Any]]:
        """The document's events as stored, in order (time, chain, sequence): those of
        the sender `sender_codes` names (either code form), or of every sender."""
        if not document_id:  # the links kept of events that name no document
            return []
        rows = self._conn.execute(
            "SELECT body FROM events WHERE document_id = ? ORDER BY at_ms, chain, seq",
            (document_id,),
        )
        events = [json.loads(body) for (body,) in rows]
        return events if sender_codes is None else events_of(events, sender_codes)

    def chain_texts(self, document_id: str) -> tuple[list[str], dict[tuple[str, int], str]]:
        """The document's events as stored (every sender's), and the stored text of the
        events beside each in its chain: what `chain_check.verdict` needs."""
        own = [
            body
            for (body,) in self._conn.execute(
                "SELECT body FROM events WHERE document_id = ? ORDER BY at_ms, chain, seq",
                (document_id,),
            )
        ]
        stored: dict[tuple[str, int], str] = {}
        for chain, seq in neighbours(own):
            row = self._conn.execute(
                "SELECT body FROM events WHERE chain = ? AND seq = ?", (chain, seq)
            ).fetchone()
            if row is not None:
                stored[(chain, seq)] = row[0]
        return own, stored

    def state(
        self,
        document_id: str,
        resolve: Resolve | None = None,
        sender_codes: Collection[str] | None = None,
    ) -> DocumentState | None:
        """The state of (sender, DocumentId); with no sender, of its first sender."""
        return fold_document(self.events(document_id, sender_codes), resolve)

    def find(self, query: DocumentQuery, resolve: Resolve | None = None) -> DocumentPage:
        """See `document_search.find`."""
        return document_search.find(self._conn, query, resolve)

    def sent_by(
        self, sender_codes: Sequence[str], after_ms: int = 0, limit: int = 100
    ) -> list[dict[str, Any]]:
        """The newest `limit` documents first accepted from any of these codes (one
        agency's) after `after_ms`: document_id, sender, message_id (the first accepted
        submission), accepted_at, recipients (how many it named)."""
        codes = list(dict.fromkeys(sender_codes))
        if not codes or limit <= 0:
            return []
        rows = self._conn.execute(
            "SELECT document_id, sender, message_id, accepted_at_ms, recipients FROM sent "  # noqa: S608
            f"WHERE sender IN ({', '.join('?' * len(codes))}) AND accepted_at_ms > ? "
            "ORDER BY accepted_at_ms DESC, document_id DESC LIMIT ?",
            (*codes, after_ms, limit),
        )
        return [
            {
                "document_id": document_id,
                "sender": sender,
                "message_id": message_id,
                "accepted_at": iso_ms(at_ms),
                "recipients": recipients,
            }
            for document_id, sender, message_id, at_ms, recipients in rows
        ]


_REQUIRED = {
    "chain": str,
    "seq": int,
    "type": str,
    "at_ms": int,
    "message_id": str,
    "document_id": str,
    "sender": str,
}


def _stored_event(record: Record) -> Body | None:
    """The event a record of the `events` topic holds; None (and a warning) for anything
    else, so that one bad record never stops the view."""
    try:
        e = json.loads(record.value or b"")
        ok = isinstance(e, dict) and all(isinstance(e.get(k), t) for k, t in _REQUIRED.items())
    except ValueError:
        ok = False
    if not ok:
        log.warning(
            "documents view: not an event", partition=record.partition, offset=record.offset
        )
        return None
    # A refusal of unreadable bytes names no document: stored as its chain's link only.
    return e


# -- the view


class DocumentsViewMetrics(Protocol):
    """What the view reports: the events of the log it has not applied yet."""

    def documents_view_lag(self, records: int) -> None: ...


class DocumentsView(TailedView[DocumentsStore]):
    """Keeps a DocumentsStore current from the `events` topic and answers queries.

    `resolve` (see `fold_document`) is called from the view's own thread: a lookup in
    an immutable snapshot such as `DirectoryState.current` is safe there.
    """

    name = "documents view"
    lagging = True  # searches and reports: a few tens of ms late is fine

    def __init__(
        self,
        log_: DurableLog,
        topics: Topics,
        path: Path,
        metrics: DocumentsViewMetrics | None = None,
        *,
        resolve: Resolve | None = None,
    ) -> None:
        super().__init__(
            log_, topics, path, lag=metrics.documents_view_lag if metrics is not None else None
        )
        self.metrics = metrics
        self.resolve = resolve

    def _open_store(self) -> DocumentsStore:
        return DocumentsStore(self.path, self.topics.events)

    def _apply(self, store: DocumentsStore, records: Sequence[Record]) -> None:
        store.apply(records, self.resolve)

    async def state(
        self, document_id: str, sender_codes: Collection[str] | None = None
    ) -> DocumentState | None:
        """The state per recipient of the document `sender_codes` sent (of its first
        sender when None); None when no event names it."""
        store = self._store_or_fail()
        return await self._thread.run(store.state, document_id, self.resolve, sender_codes)

    async def trace(
        self, document_id: str, sender_codes: Collection[str] | None = None
    ) -> list[dict[str, Any]]:
        """The document's events as stored (see `audit.trace_lines`), in order."""
        store = self._store_or_fail()
        return await self._thread.run(store.events, document_id, sender_codes)

    async def chain_texts(self, document_id: str) -> tuple[list[str], dict[tuple[str, int], str]]:
        """See DocumentsStore.chain_texts."""
        return await self._thread.run(self._store_or_fail().chain_texts, document_id)

    async def find(self, query: DocumentQuery) -> DocumentPage:
        """One page of the documents `query` matches, newest first (see DocumentQuery)."""
        return await self._thread.run(self._store_or_fail().find, query, self.resolve)

    async def upstream_undelivered(self, axis_doc_id: str) -> list[dict[str, str]]:
        """See DocumentsStore.upstream_undelivered."""
        return await self._thread.run(self._store_or_fail().upstream_undelivered, axis_doc_id)

    async def sent_by(
        self, sender_codes: Sequence[str], after_ms: int = 0, limit: int = 100
    ) -> list[dict[str, Any]]:
        """Documents these codes (one agency's) sent; see `DocumentsStore.sent_by`."""
        store = self._store_or_fail()
        return await self._thread.run(store.sent_by, sender_codes, after_ms, limit)
