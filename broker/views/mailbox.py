"""The mailbox view: a read model of the `mailbox` and `receipts` topics.

Each docbroker instance keeps its own view in a local SQLite file, built by
tailing every partition of both topics from the positions stored with it (so a
restart continues, and deleting the file rebuilds it from the log). The view
holds metadata and record positions; the envelope bytes stay in the log and are
read with `read_at` when a recipient fetches them. The file, its positions and
its thread are a read model's (`broker.views.readmodel`), as for the document view.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import structlog

from broker.clock import now_ms
from broker.core.errors import BackendUnavailable, StorageFull
from broker.core.logrecords import Position, Record, TopicPartition
from broker.core.receipts import Receipt, ReceiptKind
from broker.core.records import H, received_at_ms
from broker.core.topics import Topics
from broker.log.interface import DurableLog, Tailer
from broker.log.sqlite_space import FullDisk, is_full, storage_full
from broker.views.readmodel import (
    AppliedPositions,
    StoreThread,
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

    def apply(self, records: Sequence[Record]) -> tuple[set[str], int]:
        """Apply records in one transaction: the recipients whose mailbox changed, and
        the number of acknowledgements applied."""
        changed: set[str] = set()
        acks = 0
        with transaction(self._conn):
            for r in records:
                if r.topic == self.mailbox_topic:
                    changed |= self._apply_delivery(r)
                elif (
                    r.topic == self.receipts_topic
                    and (receipt := _receipt(r)) is not None
                    and receipt.kind in MAILBOX_RECEIPTS
                ):
                    changed |= self._apply_receipt(receipt)
                    acks += receipt.kind is ReceiptKind.ACKNOWLEDGED
                store_position(self._conn, r)
        return changed, acks

    def _apply_delivery(self, r: Record) -> set[str]:
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
            self._mark(recipient, message_id, ReceiptKind(kind), at)
        return {recipient} if cur.rowcount else set()

    def _mark(self, recipient: str, message_id: str, kind: ReceiptKind, at: int) -> int:
        column = "acked_at_ms" if kind is ReceiptKind.ACKNOWLEDGED else "fetched_at_ms"
        return self._conn.execute(
            f"UPDATE deliveries SET {column} = COALESCE({column}, ?) "  # noqa: S608
            "WHERE recipient = ? AND message_id = ?",
            (at, recipient, message_id),
        ).rowcount

    def _apply_receipt(self, receipt: Receipt) -> set[str]:
        if not self._mark(receipt.recipient, receipt.message_id, receipt.kind, receipt.at_ms):
            # The delivery is in a partition not read yet (a rebuild reads topics in any order).
            self._conn.execute(
                "INSERT OR IGNORE INTO early_receipts VALUES (?, ?, ?, ?)",
                (receipt.recipient, receipt.message_id, str(receipt.kind), receipt.at_ms),
            )
        return {receipt.recipient}

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


# -- the view


class MailboxViewMetrics(Protocol):
    """What the view reports (`broker.metrics.Metrics` has it)."""

    def acknowledged(self) -> None: ...

    def mailbox_state(self, pending: int, lag: int) -> None: ...

    def oldest_unacknowledged(self, seconds: float) -> None: ...


class MailboxView:
    """Keeps a MailboxStore current from the log and answers mailbox queries."""

    def __init__(
        self,
        log_: DurableLog,
        topics: Topics,
        path: Path,
        metrics: MailboxViewMetrics,
        *,
        gauge_interval: float = 5.0,
    ) -> None:
        self.log_ = log_
        self.topics = topics
        self.path = path
        self.metrics = metrics
        self.gauge_interval = gauge_interval  # seconds between two reports of the gauges
        self._thread = StoreThread("mailbox-view")
        self._store: MailboxStore | None = None
        self._tailer: Tailer | None = None
        self._task: asyncio.Task[None] | None = None
        self._applied = AppliedPositions()
        self._waiters: dict[str, asyncio.Event] = {}
        self._released = False  # shutting down: long polls answer at once
        self._ready = False
        self._space = FullDisk("mailbox view", path)

    @property
    def ready(self) -> bool:
        """Started and following the log (it may still be catching up)."""
        return self._ready

    def health(self) -> str:
        """ "ok", or why the view cannot keep up now (for /readyz)."""
        if not self._ready:
            return "not started"
        full = self._space.problem
        return str(full) if full is not None else "ok"

    @property
    def _topics(self) -> list[str]:
        return [self.topics.mailbox, self.topics.receipts]

    async def start(self) -> None:
        """Open the store and the tailer, then follow the log in a task."""
        try:
            self._store = await self._thread.run(
                MailboxStore, self.path, self.topics.mailbox, self.topics.receipts
            )
            await self._open_tailer()
        except BaseException:
            await self.stop()
            raise
        self._task = asyncio.create_task(self._follow(), name="mailbox-view")
        self._ready = True

    async def stop(self) -> None:
        self._ready = False
        self.wake_all()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        await self._close_tailer()
        if self._store is not None:
            await self._thread.run(self._store.close)
            self._store = None
        self._thread.shutdown()

    async def _open_tailer(self) -> None:
        """A tailer from the stored positions (the records after them are not applied)."""
        positions = await self._thread.run(self._store_or_fail().positions)
        self._applied.reset(positions)
        self._tailer = self.log_.tailer(self._topics, positions)
        try:
            await self._tailer.start()
        except BaseException:
            await self._close_tailer()
            raise

    async def _close_tailer(self) -> None:
        if self._tailer is not None:
            tailer, self._tailer = self._tailer, None
            await tailer.close()

    def _tailing(self) -> Tailer:
        if self._tailer is None:
            raise BackendUnavailable("the mailbox view is not tailing the log")
        return self._tailer

    async def _apply_next(self) -> None:
        records = await self._tailing().poll(0.5, 500)
        if not records:
            return
        try:
            changed, acks = await self._thread.run(self._store_or_fail().apply, records)
        except Exception as exc:
            await self._close_tailer()  # so that they are read again from the stored positions
            if is_full(exc):
                full = storage_full(self.path, exc)
                self._space.failed(full)
                raise full from exc
            raise
        self._space.wrote()
        for _ in range(acks):
            self.metrics.acknowledged()
        await self._applied.advance(records)
        for recipient in changed:
            self._wake(recipient)

    async def _follow(self) -> None:
        """Apply new records as they come. The log going away is waited out; an apply
        that fails (a full disk) restarts the tailer from the stored positions, so that
        no record is skipped."""
        backoff = 0.1
        refresh_at = 0.0
        loop = asyncio.get_running_loop()
        while True:
            try:
                if self._tailer is None:
                    await self._open_tailer()
                await self._apply_next()
                if loop.time() >= refresh_at:
                    refresh_at = loop.time() + self.gauge_interval
                    await self._refresh_gauges()
                backoff = 0.1
            except StorageFull:  # warned once for the episode (FullDisk)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)
            except BackendUnavailable as exc:
                log.warning("mailbox view: log unavailable", error=str(exc), retry_in=backoff)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)
            except Exception:
                log.exception("mailbox view: step failed; retrying", retry_in=backoff)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)

    async def _refresh_gauges(self) -> None:
        """Pending entries, and the lag from the tailer's positions: on Kafka they skip
        the transaction markers after the last record, so a caught-up view reports 0."""
        ends = await self.log_.end_offsets(self._topics)
        mine = await self._tailing().positions()
        lag = sum(max(0, end - mine.get(tp, 0)) for tp, end in ends.items())
        pending = await self._thread.run(self._store_or_fail().pending_count)
        self.metrics.mailbox_state(pending, lag)
        oldest = await self._thread.run(self._store_or_fail().oldest_pending_ms)
        self.metrics.oldest_unacknowledged(0 if oldest is None else max(0, now_ms() - oldest) / 1e3)

    def _wake(self, recipient: str) -> None:
        event = self._waiters.pop(recipient, None)
        if event is not None:
            event.set()

    def wake_all(self) -> None:
        """Release every long poll, and answer later ones at once (on shutdown: the
        server waits for in-flight requests, and a poll would hold it for its `wait`)."""
        self._released = True
        for event in self._waiters.values():
            event.set()
        self._waiters.clear()

    def _store_or_fail(self) -> MailboxStore:
        if self._store is None:
            raise BackendUnavailable("the mailbox view is not started")
        return self._store

    async def list(
        self,
        recipient: str,
        *,
        after: int = 0,
        limit: int = 100,
        include_acked: bool = False,
        kind: str | None = None,
        wait: float = 0.0,
    ) -> list[Delivery]:
        """Entries after the cursor (of `kind` when given); with `wait`, a long poll
        until one arrives."""
        store = self._store_or_fail()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait
        while True:
            event = self._waiters.setdefault(recipient, asyncio.Event())
            found = await self._thread.run(
                store.list,
                recipient,
                after=after,
                limit=limit,
                include_acked=include_acked,
                kind=kind,
            )
            remaining = deadline - loop.time()
            if found or remaining <= 0 or self._released or not self.ready:
                return found
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(remaining):
                    await event.wait()

    async def get(self, recipient: str, message_id: str) -> Delivery | None:
        return await self._thread.run(self._store_or_fail().get, recipient, message_id)

    async def retained(self, acked_before_ms: int) -> tuple[Offsets, Offsets]:
        """`MailboxStore.retained`, off the event loop."""
        return await self._thread.run(self._store_or_fail().retained, acked_before_ms)

    async def count_pending(self, recipient: str, kind: str | None = None) -> int:
        """Unacknowledged entries of one recipient, of `kind` when given."""
        return await self._thread.run(self._store_or_fail().count_pending, recipient, kind)

    async def wait_applied(self, positions: Iterable[Position], timeout: float) -> bool:
        """Wait until the view has applied these positions (read your own writes);
        False on timeout."""
        return await self._applied.wait(positions, timeout)
