"""The mailbox view's SQLite side: one row per envelope in one recipient's mailbox.

The view (`broker.views.mailbox`) feeds it the records of the `mailbox` and
`receipts` topics from one thread; it answers the listings, the counts behind the
gauges, the per-agency backlog and what retention may remove.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import structlog

from broker.core.logrecords import Position, Record, TopicPartition
from broker.core.receipts import Receipt, ReceiptKind
from broker.core.records import H, received_at_ms
from broker.views.backlog import AgencyBacklog
from broker.views.readmodel import (
    open_store,
    store_position,
    stored_positions,
    transaction,
)

log = structlog.get_logger(__name__)
Offsets = dict[TopicPartition, int]

SCHEMA_VERSION = 2  # a rebuildable cache: another version is dropped and rebuilt
# Indexes may be added without a new version (they are created on open).
SCHEMA = """
CREATE TABLE IF NOT EXISTS deliveries(
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    recipient TEXT NOT NULL, message_id TEXT NOT NULL, document_id TEXT NOT NULL,
    sender TEXT NOT NULL, kind TEXT NOT NULL, trace_id TEXT NOT NULL,
    topic TEXT NOT NULL, partition INTEGER NOT NULL, offset INTEGER NOT NULL,
    size INTEGER NOT NULL, sha256 TEXT NOT NULL,
    received_at_ms INTEGER NOT NULL, delivered_at_ms INTEGER NOT NULL, acked_at_ms INTEGER,
    code TEXT NOT NULL DEFAULT '', promulgation_date TEXT NOT NULL DEFAULT '',
    status_code TEXT NOT NULL DEFAULT '', fetched_at_ms INTEGER,
    UNIQUE(recipient, message_id));
CREATE INDEX IF NOT EXISTS deliveries_pending ON deliveries(recipient, acked_at_ms, seq);
CREATE INDEX IF NOT EXISTS deliveries_kind ON deliveries(recipient, kind, acked_at_ms, seq);
CREATE INDEX IF NOT EXISTS deliveries_document ON deliveries(document_id);
CREATE INDEX IF NOT EXISTS deliveries_oldest ON deliveries(acked_at_ms, delivered_at_ms);
CREATE TABLE IF NOT EXISTS early_receipts(
    recipient TEXT NOT NULL, message_id TEXT NOT NULL, kind TEXT NOT NULL, at_ms INTEGER NOT NULL,
    PRIMARY KEY(recipient, message_id, kind)) WITHOUT ROWID;
"""
# Every table a version of the schema had (early_acks: version 1).
TABLES = ("deliveries", "early_acks", "early_receipts")
# receipts about mailbox entries; the national axis's (sent, failed, taken) are about
# recipients outside the province, which have no mailbox here
MAILBOX_RECEIPTS = frozenset({ReceiptKind.FETCHED, ReceiptKind.ACKNOWLEDGED})

_COLUMNS = (
    "seq, recipient, message_id, document_id, sender, kind, trace_id, topic, partition, "
    "offset, size, sha256, received_at_ms, delivered_at_ms, acked_at_ms, code, "
    "promulgation_date, status_code, fetched_at_ms"
)


@dataclass(frozen=True, slots=True)
class Applied:
    """What applying records changed: the recipients whose mailbox changed, the
    acknowledgements applied, and the mailbox records they acknowledged."""

    changed: set[str]
    acks: int
    acknowledged: list[Position]


@dataclass(frozen=True, slots=True)
class Delivery:
    """One envelope in one recipient's mailbox."""

    seq: int  # the listing cursor
    recipient: str
    message_id: str
    document_id: str
    sender: str
    kind: str  # "document" | "status" (the record's `kind` header)
    trace_id: str
    topic: str
    partition: int
    offset: int
    size: int
    sha256: str
    received_at_ms: int
    delivered_at_ms: int
    acked_at_ms: int | None
    code: str = ""
    promulgation_date: str = ""
    status_code: str = ""
    fetched_at_ms: int | None = None


class MailboxStore:
    """The SQLite side of the view. Not thread-safe: used from one thread only."""

    def __init__(self, path: Path, mailbox_topic: str, receipts_topic: str) -> None:
        self._conn = open_store(path, SCHEMA_VERSION, SCHEMA, TABLES)
        self.mailbox_topic = mailbox_topic
        self.receipts_topic = receipts_topic

    def close(self) -> None:
        self._conn.close()

    def positions(self) -> dict[TopicPartition, int]:
        return stored_positions(self._conn)

    def apply(self, records: Sequence[Record]) -> Applied:
        """Apply records in one transaction."""
        changed: set[str] = set()
        acks = 0
        acknowledged: list[Position] = []
        with transaction(self._conn):
            for r in records:
                if r.topic == self.mailbox_topic:
                    changed |= self._apply_delivery(r, acknowledged)
                elif (
                    r.topic == self.receipts_topic
                    and (receipt := _receipt(r)) is not None
                    and receipt.kind in MAILBOX_RECEIPTS
                ):
                    marked = self._apply_receipt(receipt)
                    changed.add(receipt.recipient)
                    if receipt.kind is ReceiptKind.ACKNOWLEDGED:
                        acks += 1
                        acknowledged += marked
                store_position(self._conn, r)
        return Applied(changed, acks, acknowledged)

    def _apply_delivery(self, r: Record, acknowledged: list[Position]) -> set[str]:
        """Insert the entry (once), with the receipts that came before it (adding to
        `acknowledged` when one acknowledged it)."""
        recipient = r.header_str(H.RECIPIENT)
        message_id = r.header_str(H.MESSAGE_ID)
        if not recipient or not message_id:
            log.warning("mailbox record without recipient or message id", offset=r.offset)
            return set()
        cur = self._conn.execute(
            f"INSERT OR IGNORE INTO deliveries({_COLUMNS.replace('seq, ', '', 1)}) "  # noqa: S608
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, NULL, ?, ?, ?, NULL)",
            (
                recipient,
                message_id,
                r.header_str(H.DOCUMENT_ID),
                r.header_str(H.SENDER),
                r.header_str(H.KIND, "document"),
                r.header_str(H.TRACE_ID),
                r.topic,
                r.partition,
                r.offset,
                len(r.value or b""),
                r.header_str(H.SHA256),
                received_at_ms(r),
                r.timestamp_ms,
                r.header_str("code"),
                r.header_str("promulgation-date"),
                r.header_str("status-code"),
            ),
        )
        early = self._conn.execute(
            "DELETE FROM early_receipts WHERE recipient = ? AND message_id = ? "
            "RETURNING kind, at_ms",
            (recipient, message_id),
        ).fetchall()
        for kind, at in early:
            marked = self._mark(recipient, message_id, ReceiptKind(kind), at)
            if kind == ReceiptKind.ACKNOWLEDGED:
                acknowledged += marked
        return {recipient} if cur.rowcount else set()

    def _mark(self, recipient: str, message_id: str, kind: ReceiptKind, at: int) -> list[Position]:
        """Mark the entry fetched or acknowledged (the first time counts); the position
        of its mailbox record (none when the entry is not there)."""
        column = "acked_at_ms" if kind is ReceiptKind.ACKNOWLEDGED else "fetched_at_ms"
        rows = self._conn.execute(
            f"UPDATE deliveries SET {column} = COALESCE({column}, ?) "  # noqa: S608
            "WHERE recipient = ? AND message_id = ? RETURNING topic, partition, offset",
            (at, recipient, message_id),
        ).fetchall()
        return [Position(*row) for row in rows]

    def _apply_receipt(self, receipt: Receipt) -> list[Position]:
        marked = self._mark(receipt.recipient, receipt.message_id, receipt.kind, receipt.at_ms)
        if not marked:
            # The delivery is in a partition not read yet (a rebuild reads topics in any order).
            self._conn.execute(
                "INSERT OR IGNORE INTO early_receipts VALUES (?, ?, ?, ?)",
                (receipt.recipient, receipt.message_id, str(receipt.kind), receipt.at_ms),
            )
        return marked

    def list(
        self,
        recipient: str,
        *,
        after: int,
        limit: int,
        include_acked: bool,
        kind: str | None = None,
    ) -> list[Delivery]:
        """The recipient's entries after the cursor `after`, in order; only pending ones
        unless `include_acked`, only of `kind` ("document" or "status") when given."""
        where, args = _filter(recipient, pending=not include_acked, kind=kind)
        rows = self._conn.execute(
            f"SELECT {_COLUMNS} FROM deliveries WHERE {where} "  # noqa: S608
            "AND seq > ? ORDER BY seq LIMIT ?",
            (*args, after, limit),
        ).fetchall()
        return [Delivery(*row) for row in rows]

    def get(self, recipient: str, message_id: str) -> Delivery | None:
        row = self._conn.execute(
            f"SELECT {_COLUMNS} FROM deliveries WHERE recipient = ? AND message_id = ?",  # noqa: S608
            (recipient, message_id),
        ).fetchone()
        return Delivery(*row) if row else None

    def pending_count(self) -> int:
        """Unacknowledged entries of every mailbox (the gauge)."""
        return self._conn.execute(
            "SELECT COUNT(*) FROM deliveries WHERE acked_at_ms IS NULL"
        ).fetchone()[0]

    def oldest_pending_ms(self) -> int | None:
        """When the oldest unacknowledged entry was delivered (deliveries_oldest)."""
        return self._conn.execute(
            "SELECT MIN(delivered_at_ms) FROM deliveries WHERE acked_at_ms IS NULL"
        ).fetchone()[0]

    def pending_by_agency(self) -> list[AgencyBacklog]:
        """Each recipient with unacknowledged entries: how many, and since when;
        the longest waiting first (the pending rows are found by deliveries_oldest)."""
        rows = self._conn.execute(
            "SELECT recipient, COUNT(*), MIN(delivered_at_ms) AS oldest FROM deliveries "
            "WHERE acked_at_ms IS NULL GROUP BY recipient ORDER BY oldest, recipient"
        ).fetchall()
        return [AgencyBacklog(agency, pending, oldest) for agency, pending, oldest in rows]

    def retained(self, acked_before_ms: int) -> tuple[Offsets, Offsets]:
        """For retention (one call of the store's one thread: one snapshot): the first
        entry of each mailbox partition not acknowledged before `acked_before_ms`, and
        how far the view has applied each partition."""
        rows = self._conn.execute(
            "SELECT partition, MIN(offset) FROM deliveries WHERE topic = ? AND "
            "(acked_at_ms IS NULL OR acked_at_ms >= ?) GROUP BY partition",
            (self.mailbox_topic, acked_before_ms),
        ).fetchall()
        pending = {TopicPartition(self.mailbox_topic, p): o for p, o in rows}
        applied = stored_positions(self._conn)
        return pending, {tp: n for tp, n in applied.items() if tp.topic == self.mailbox_topic}

    def count_pending(self, recipient: str, kind: str | None = None) -> int:
        """Unacknowledged entries of one recipient, of `kind` when given."""
        where, args = _filter(recipient, pending=True, kind=kind)
        row = self._conn.execute(
            f"SELECT COUNT(*) FROM deliveries WHERE {where}",  # noqa: S608
            args,
        ).fetchone()
        return int(row[0])


def _receipt(record: Record) -> Receipt | None:
    """The receipt a record holds; None (and a warning) for anything else, so that one
    bad record does not make the view retry its batch forever."""
    try:
        return Receipt.from_record(record)
    except (ValueError, KeyError, TypeError):
        log.warning("mailbox view: not a receipt", partition=record.partition, offset=record.offset)
        return None


def _filter(recipient: str, *, pending: bool, kind: str | None) -> tuple[str, tuple[Any, ...]]:
    """The WHERE clause of one recipient's entries (served by the deliveries_pending
    and deliveries_kind indexes) and its arguments."""
    where = "recipient = ?"
    args: tuple[Any, ...] = (recipient,)
    if kind is not None:
        where += " AND kind = ?"
        args += (kind,)
    if pending:
        where += " AND acked_at_ms IS NULL"
    return where, args
