"""The mailbox view: a read model of the `mailbox` and `receipts` topics.

Each docbroker instance keeps its own view in a local SQLite file, built by
tailing every partition of both topics from the positions stored with it (so a
restart continues, and deleting the file rebuilds it from the log). The view
holds metadata and record positions; the envelope bytes stay in the log and are
read with `read_at` when a recipient fetches them.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import structlog

from broker.errors import BackendUnavailable
from broker.log.interface import DurableLog, Position, Record, Tailer, TopicPartition
from broker.metrics import Metrics
from broker.receipts import Receipt, ReceiptKind
from broker.records import H, received_at_ms
from broker.topics import Topics

log = structlog.get_logger(__name__)

SCHEMA_VERSION = 2  # a rebuildable cache: another version is dropped and rebuilt
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
CREATE INDEX IF NOT EXISTS deliveries_document ON deliveries(document_id);
CREATE TABLE IF NOT EXISTS early_receipts(
    recipient TEXT NOT NULL, message_id TEXT NOT NULL, kind TEXT NOT NULL, at_ms INTEGER NOT NULL,
    PRIMARY KEY(recipient, message_id, kind)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS positions(
    topic TEXT NOT NULL, partition INTEGER NOT NULL, next_offset INTEGER NOT NULL,
    PRIMARY KEY(topic, partition)) WITHOUT ROWID;
"""

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
    kind: str
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
        path.parent.mkdir(parents=True, exist_ok=True)
        self._conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA synchronous=NORMAL")  # a rebuildable view
        version = self._conn.execute("PRAGMA user_version").fetchone()[0]
        if version != SCHEMA_VERSION:
            for table in ("deliveries", "early_acks", "early_receipts", "positions"):
                self._conn.execute(f"DROP TABLE IF EXISTS {table}")
            self._conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        self._conn.executescript(SCHEMA)
        self.mailbox_topic = mailbox_topic
        self.receipts_topic = receipts_topic

    def close(self) -> None:
        self._conn.close()

    def positions(self) -> dict[TopicPartition, int]:
        rows = self._conn.execute("SELECT topic, partition, next_offset FROM positions")
        return {TopicPartition(t, p): n for t, p, n in rows}

    def apply(self, records: Sequence[Record]) -> tuple[set[str], int]:
        """Apply records in one transaction: the recipients whose mailbox changed, and
        the number of acknowledgements applied."""
        changed: set[str] = set()
        acks = 0
        c = self._conn
        c.execute("BEGIN")
        try:
            for r in records:
                if r.topic == self.mailbox_topic:
                    changed |= self._apply_delivery(r)
                elif r.topic == self.receipts_topic:
                    receipt = Receipt.from_record(r)
                    changed |= self._apply_receipt(receipt)
                    acks += receipt.kind is ReceiptKind.ACKNOWLEDGED
                c.execute(
                    "INSERT OR REPLACE INTO positions VALUES (?, ?, ?)",
                    (r.topic, r.partition, r.offset + 1),
                )
            c.execute("COMMIT")
        except BaseException:
            c.execute("ROLLBACK")
            raise
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
        self, recipient: str, *, after: int, limit: int, include_acked: bool
    ) -> list[Delivery]:
        pending = "" if include_acked else "AND acked_at_ms IS NULL "
        rows = self._conn.execute(
            f"SELECT {_COLUMNS} FROM deliveries WHERE recipient = ? {pending}"  # noqa: S608
            "AND seq > ? ORDER BY seq LIMIT ?",
            (recipient, after, limit),
        ).fetchall()
        return [Delivery(*row) for row in rows]

    def get(self, recipient: str, message_id: str) -> Delivery | None:
        row = self._conn.execute(
            f"SELECT {_COLUMNS} FROM deliveries WHERE recipient = ? AND message_id = ?",  # noqa: S608
            (recipient, message_id),
        ).fetchone()
        return Delivery(*row) if row else None

    def pending_count(self) -> int:
        return self._conn.execute(
            "SELECT COUNT(*) FROM deliveries WHERE acked_at_ms IS NULL"
        ).fetchone()[0]


class MailboxView:
    """Keeps a MailboxStore current from the log and answers mailbox queries."""

    def __init__(self, log_: DurableLog, topics: Topics, path: Path, metrics: Metrics) -> None:
        self.log_ = log_
        self.topics = topics
        self.path = path
        self.metrics = metrics
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="mailbox-view")
        self._store: MailboxStore | None = None
        self._tailer: Tailer | None = None
        self._task: asyncio.Task[None] | None = None
        self._applied: dict[TopicPartition, int] = {}
        self._changed = asyncio.Condition()
        self._waiters: dict[str, asyncio.Event] = {}
        self.ready = False

    async def _run_in_store(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, lambda: fn(*args, **kwargs))

    async def start(self) -> None:
        self._store = await self._run_in_store(
            MailboxStore, self.path, self.topics.mailbox, self.topics.receipts
        )
        positions = await self._run_in_store(self._store.positions)
        self._applied = dict(positions)
        self._tailer = self.log_.tailer([self.topics.mailbox, self.topics.receipts], positions)
        await self._tailer.start()
        self._task = asyncio.create_task(self._follow(), name="mailbox-view")
        self.ready = True

    async def stop(self) -> None:
        self.ready = False
        self.wake_all()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._tailer is not None:
            await self._tailer.close()
        if self._store is not None:
            await self._run_in_store(self._store.close)
        self._executor.shutdown(wait=True)

    async def _follow(self) -> None:
        assert self._tailer is not None and self._store is not None
        backoff = 0.1
        refresh_at = 0.0
        loop = asyncio.get_running_loop()
        while True:
            try:
                records = await self._tailer.poll(0.5, 500)
                if records:
                    changed, acks = await self._run_in_store(self._store.apply, records)
                    for _ in range(acks):
                        self.metrics.acknowledged()
                    for r in records:
                        self._applied[r.tp] = r.offset + 1
                    async with self._changed:
                        self._changed.notify_all()
                    for recipient in changed:
                        self._wake(recipient)
                if loop.time() >= refresh_at:
                    refresh_at = loop.time() + 5.0
                    await self._refresh_gauges()
                backoff = 0.1
            except BackendUnavailable as exc:
                log.warning("mailbox view: log unavailable", error=str(exc), retry_in=backoff)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)

    async def _refresh_gauges(self) -> None:
        assert self._store is not None
        ends = await self.log_.end_offsets([self.topics.mailbox, self.topics.receipts])
        lag = sum(max(0, end - self._applied.get(tp, 0)) for tp, end in ends.items())
        pending = await self._run_in_store(self._store.pending_count)
        self.metrics.mailbox_state(pending, lag)

    def _wake(self, recipient: str) -> None:
        event = self._waiters.pop(recipient, None)
        if event is not None:
            event.set()

    def wake_all(self) -> None:
        """Release every long-poll (on shutdown)."""
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
        wait: float = 0.0,
    ) -> list[Delivery]:
        """Entries after the cursor; with `wait`, a long poll until one arrives."""
        store = self._store_or_fail()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait
        while True:
            event = self._waiters.setdefault(recipient, asyncio.Event())
            found = await self._run_in_store(
                store.list, recipient, after=after, limit=limit, include_acked=include_acked
            )
            remaining = deadline - loop.time()
            if found or remaining <= 0 or not self.ready:
                return found
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(remaining):
                    await event.wait()

    async def get(self, recipient: str, message_id: str) -> Delivery | None:
        return await self._run_in_store(self._store_or_fail().get, recipient, message_id)

    async def wait_applied(self, positions: Iterable[Position], timeout: float) -> bool:
        """Wait until the view has applied these positions (read your own writes)."""
        wanted = [(TopicPartition(p.topic, p.partition), p.offset) for p in positions]

        def done() -> bool:
            return all(self._applied.get(tp, 0) > off for tp, off in wanted)

        async with self._changed:
            try:
                async with asyncio.timeout(timeout):
                    await self._changed.wait_for(done)
            except TimeoutError:
                return False
        return True
