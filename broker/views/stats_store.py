"""The statistics' SQLite file: aggregate counters per (day, agency, measure, key), the
mail routed to a mailbox and not yet acknowledged, and the due dates of documents
delivered with one.

Counters are not idempotent, and the daemon and a `docbroker report` on the same
machine may apply the same records to the same file: each apply is one write
transaction (BEGIN IMMEDIATE) that reads the stored positions, skips the records
below them, applies the rest and stores the new positions. Not thread-safe: used
from one thread only.
"""

from __future__ import annotations

import contextlib
import json
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import date, timedelta, tzinfo
from pathlib import Path

import structlog

from broker.core.logrecords import Record, TopicPartition
from broker.views import stats_fold as fold
from broker.views.readmodel import open_store, store_position, stored_positions

log = structlog.get_logger(__name__)

SCHEMA_VERSION = 2
TABLES = ("counters", "months", "messages", "open", "due", "due_open")
SCHEMA = """
CREATE TABLE IF NOT EXISTS counters(
    day TEXT NOT NULL, agency TEXT NOT NULL, measure TEXT NOT NULL, key TEXT NOT NULL,
    n INTEGER NOT NULL, PRIMARY KEY(day, agency, measure, key)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS months(
    month TEXT NOT NULL, agency TEXT NOT NULL, measure TEXT NOT NULL, key TEXT NOT NULL,
    n INTEGER NOT NULL, PRIMARY KEY(month, agency, measure, key)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS messages(
    message_id TEXT PRIMARY KEY, kind TEXT NOT NULL, source TEXT NOT NULL, due TEXT,
    document_id TEXT NOT NULL, at_ms INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS open(
    recipient TEXT NOT NULL, message_id TEXT NOT NULL, routed_at_ms INTEGER NOT NULL,
    delivered INTEGER NOT NULL DEFAULT 0, PRIMARY KEY(recipient, message_id)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS due(
    document_id TEXT NOT NULL, recipient TEXT NOT NULL, due TEXT NOT NULL, done_at_ms INTEGER,
    PRIMARY KEY(document_id, recipient)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS due_open(
    due TEXT NOT NULL, recipient TEXT NOT NULL, n INTEGER NOT NULL,
    PRIMARY KEY(due, recipient)) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS open_oldest ON open(recipient, routed_at_ms);
"""
# A message's routes follow its acceptance in the same pipeline transaction: the kind,
# source and due date of the latest accepted messages are enough (40 days of a province).
MESSAGES_KEPT = 200_000
PERIOD_WIDTH = {"day": 10, "month": 7, "year": 4}  # of yyyy-mm-dd

Canonical = Callable[[str], str]


DAY = timedelta(days=1)


def next_month(day: date) -> date:
    """The first day of the month after `day`'s."""
    return date(day.year + day.month // 12, day.month % 12 + 1, 1)


def whole_months(first: date, last: date) -> tuple[date, date] | None:
    """The first day of the first whole month in [first, last] and the last day of the
    last one; None when no month lies wholly inside."""
    start = first if first.day == 1 else next_month(first)
    end = next_month(last) - DAY
    if end != last:
        end = date(last.year, last.month, 1) - DAY
    return (start, end) if start <= end else None


@dataclass(frozen=True, slots=True)
class CounterRow:
    period: str
    agency: str
    measure: str
    key: str
    n: int


class StatisticsStore:
    """The statistics' tables. `canonical` maps a code to the directory's key code
    (a status's sender to the recipient its document was routed to)."""

    def __init__(
        self, path: Path, events_topic: str, zone: tzinfo, canonical: Canonical | None = None
    ) -> None:
        self._conn = open_store(path, SCHEMA_VERSION, SCHEMA, TABLES)
        self._conn.execute("PRAGMA busy_timeout = 60000")  # another process's apply
        self.events_topic = events_topic
        self.zone = zone
        self.canonical = canonical or (lambda code: code)

    def close(self) -> None:
        self._conn.close()

    def positions(self) -> dict[TopicPartition, int]:
        return stored_positions(self._conn)

    @contextlib.contextmanager
    def _write(self) -> Iterator[None]:
        self._conn.execute("BEGIN IMMEDIATE")  # the write lock first: positions then apply
        try:
            yield
            self._conn.execute("COMMIT")
        except BaseException:
            if self._conn.in_transaction:
                self._conn.execute("ROLLBACK")
            raise

    def apply(self, records: Sequence[Record]) -> int:
        """Apply the records not applied yet (by this or another process) in one
        transaction; the number of events applied."""
        applied = 0
        counts: Counter[tuple[str, str, str, str]] = Counter()
        with self._write():
            done = stored_positions(self._conn)
            for record in records:
                if record.offset < done.get(record.tp, 0):
                    continue  # applied already (another process shares the file)
                body = _event(record) if record.topic == self.events_topic else None
                if body is not None:
                    for agency, day, measure, key, n in self._effects(body):
                        counts[(day, agency, measure, key)] += n
                    applied += 1
                store_position(self._conn, record)
                done[record.tp] = record.offset + 1
            self._add(counts)
            self._conn.execute(
                "DELETE FROM messages WHERE rowid < (SELECT MAX(rowid) FROM messages) - ?",
                (MESSAGES_KEPT,),
            )
        return applied

    def _add(self, counts: Counter[tuple[str, str, str, str]]) -> None:
        """Add to the day counters and to their month's (which long reports read)."""
        months: Counter[tuple[str, str, str, str]] = Counter()
        for (day, *rest), n in counts.items():
            months[(day[:7], *rest)] += n  # type: ignore[index]
        for table, rows in (("counters", counts), ("months", months)):
            self._conn.executemany(
                f"INSERT INTO {table} VALUES (?, ?, ?, ?, ?) "  # noqa: S608
                "ON CONFLICT DO UPDATE SET n = n + excluded.n",
                [(*k, n) for k, n in rows.items()],
            )

    def _effects(self, body: fold.Body) -> list[tuple[str, str, str, str, int]]:
        """The counters of one event, after the table changes it makes."""
        eff = fold.effects_of(body, self.zone)
        at_ms = int(body.get("at_ms") or 0)
        day = fold.local_day(at_ms, self.zone)
        counts = list(eff.counts)
        c = self._conn
        if eff.message is not None:
            c.execute(
                "INSERT OR IGNORE INTO messages VALUES (?, ?, ?, ?, ?, ?)", (*eff.message, at_ms)
            )
        if eff.routed is not None:
            counts += self._routed(*eff.routed, day)
        if eff.upstream is not None:
            message_id, sender, _ = eff.upstream
            kind = self._message(message_id)[0]
            counts.append((sender, day, fold.AXIS_OUT, kind, 1))
        if eff.delivered is not None:
            counts += self._delivered(*eff.delivered, day)
        if eff.acknowledged is not None:
            c.execute("DELETE FROM open WHERE message_id = ? AND recipient = ?", eff.acknowledged)
        if eff.done is not None:
            counts += self._done(*eff.done, day)
        return counts

    def _message(self, message_id: str) -> tuple[str, str, str | None, str]:
        row = self._conn.execute(
            "SELECT kind, source, due, document_id FROM messages WHERE message_id = ?",
            (message_id,),
        ).fetchone()
        return tuple(row) if row else ("document", "unknown", None, "")  # type: ignore[return-value]

    def _routed(self, message_id: str, recipient: str, at_ms: int, day: str) -> list:
        kind, source, due, document_id = self._message(message_id)
        cur = self._conn.execute(
            "INSERT OR IGNORE INTO open VALUES (?, ?, ?, 0)", (recipient, message_id, at_ms)
        )
        if due and kind == "document" and document_id:
            added = self._conn.execute(
                "INSERT OR IGNORE INTO due VALUES (?, ?, ?, NULL)", (document_id, recipient, due)
            )
            if added.rowcount:
                self._due_open(due, recipient, 1)
        return fold.routed_counts(recipient, day, kind, source) if cur.rowcount else []

    def _delivered(self, message_id: str, recipient: str, at_ms: int, day: str) -> list:
        row = self._conn.execute(
            "SELECT routed_at_ms FROM open WHERE recipient = ? AND message_id = ? "
            "AND delivered = 0",
            (recipient, message_id),
        ).fetchone()
        if row is None:
            return []
        self._conn.execute(
            "UPDATE open SET delivered = 1 WHERE recipient = ? AND message_id = ?",
            (recipient, message_id),
        )
        return [(recipient, day, fold.DELIVERY, str(fold.bucket_of(at_ms - row[0])), 1)]

    def _due_open(self, due: str, recipient: str, n: int) -> None:
        """How many of a recipient's documents due that day have no 06 yet."""
        self._conn.execute(
            "INSERT INTO due_open VALUES (?, ?, ?) ON CONFLICT DO UPDATE SET n = n + excluded.n",
            (due, recipient, n),
        )

    def _done(self, document_id: str, agency: str, at_ms: int, day: str) -> list:
        recipient = self.canonical(agency) or agency
        row = self._conn.execute(
            "SELECT due FROM due WHERE document_id = ? AND recipient = ? AND done_at_ms IS NULL",
            (document_id, recipient),
        ).fetchone()
        if row is None:
            return []
        self._conn.execute(
            "UPDATE due SET done_at_ms = ? WHERE document_id = ? AND recipient = ?",
            (at_ms, document_id, recipient),
        )
        self._due_open(row[0], recipient, -1)
        return [(recipient, day, fold.ON_TIME, fold.on_time_key(at_ms, row[0], self.zone), 1)]

    # -- queries

    def counters(self, first_day: str, last_day: str, period: str) -> list[CounterRow]:
        """The counters of the days from `first_day` to `last_day` (inclusive), summed
        per period (day | month | year), agency, measure and key. Whole months are read
        from the month counters (a year is a few thousand rows per agency), the days
        of a month begun or ended inside the range from the day counters."""
        width = PERIOD_WIDTH[period]
        first, last = date.fromisoformat(first_day), date.fromisoformat(last_day)
        whole = whole_months(first, last) if period != "day" else None
        if whole is None:
            spans = [("counters", "day", first_day, last_day)]
        else:
            start, end = whole
            spans = [("months", "month", start.isoformat()[:7], end.isoformat()[:7])]
            if first < start:
                spans.append(("counters", "day", first_day, (start - DAY).isoformat()))
            if end < last:
                spans.append(("counters", "day", next_month(end).isoformat(), last_day))
        sums: Counter[tuple[str, str, str, str]] = Counter()
        for table, column, low, high in spans:
            rows = self._conn.execute(
                f"SELECT substr({column}, 1, {width}) AS p, agency, measure, key, SUM(n) "  # noqa: S608
                f"FROM {table} WHERE {column} BETWEEN ? AND ? GROUP BY p, agency, measure, key",
                (low, high),
            )
            for p, agency, measure, key, n in rows:
                sums[(p, agency, measure, key)] += n
        return [CounterRow(*k, n) for k, n in sums.items()]

    def pending(self) -> list[tuple[str, int, int]]:
        """Per recipient: how many entries are routed and not acknowledged, and when the
        oldest was routed (ms)."""
        rows = self._conn.execute(
            "SELECT recipient, COUNT(*), MIN(routed_at_ms) FROM open GROUP BY recipient"
        )
        return [(r, n, oldest) for r, n, oldest in rows]

    def overdue(self, first_day: str, last_day: str) -> list[tuple[str, int]]:
        """Per recipient: documents due between the days (inclusive) with no 06 yet."""
        rows = self._conn.execute(
            "SELECT recipient, SUM(n) FROM due_open WHERE due BETWEEN ? AND ? "
            "GROUP BY recipient HAVING SUM(n) > 0",
            (first_day, last_day),
        )
        return [(r, n) for r, n in rows]


def _event(record: Record) -> fold.Body | None:
    """The event a record holds; None (and a warning) for anything else."""
    try:
        body = json.loads(record.value or b"")
    except ValueError:
        body = None
    if not isinstance(body, dict) or not isinstance(body.get("type"), str):
        log.warning("statistics: not an event", partition=record.partition, offset=record.offset)
        return None
    if not isinstance(body.get("message_id"), str):
        return None
    return body
