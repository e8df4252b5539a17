"""The dedup index's SQLite file in the data folder: every key's first submission and
the nonces seen, with the next offset of each `dedup` partition applied.

Kept on disk, not in memory, so that a daemon's memory does not grow with the
history (a province-year is ~1.8 M keys) and a restart reads only what was appended
since it stopped (the positions are stored in the transaction that applies the
records, as the views' stores do). A missing or unreadable file is read again from
the topic. Keys older than the dedup window are pruned, except those that decide
forever: an Idempotency-Key, an axis docId, a replayed dead letter (their senders
start with "@"). Written from the follower's thread, read from the event loop and
the pipeline's threads: a connection for each, each behind a lock.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterable, Sequence
from pathlib import Path

from broker.core.logrecords import Record, TopicPartition
from broker.core.records import FirstSeen
from broker.log.sqlite_store import (
    POSITIONS_SCHEMA,
    open_store,
    store_position,
    stored_positions,
    transaction,
)

SCHEMA_VERSION = 1
SCHEMA = """
CREATE TABLE IF NOT EXISTS first_seen(
    sender TEXT NOT NULL, document_id TEXT NOT NULL, at_ms INTEGER NOT NULL,
    message_id TEXT NOT NULL, sha256 TEXT NOT NULL, committed INTEGER NOT NULL,
    PRIMARY KEY(sender, document_id)) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS first_seen_at ON first_seen(at_ms);
CREATE TABLE IF NOT EXISTS nonces(
    system_id TEXT NOT NULL, nonce TEXT NOT NULL, at_ms INTEGER NOT NULL,
    PRIMARY KEY(system_id, nonce)) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS nonces_at ON nonces(at_ms);
"""
TABLES = ("first_seen", "nonces")
LASTING = "@"  # keys whose sender starts so are never pruned (idempotency, axis, replay)

# The first entry of a key stays, but a committed one replaces a claim.
UPSERT = """
INSERT INTO first_seen VALUES (?, ?, ?, ?, ?, ?)
ON CONFLICT(sender, document_id) DO UPDATE SET
    at_ms = excluded.at_ms, message_id = excluded.message_id,
    sha256 = excluded.sha256, committed = 1
WHERE first_seen.committed = 0 AND excluded.committed = 1
"""

GET = (
    "SELECT at_ms, message_id, sha256, committed FROM first_seen "
    "WHERE sender = ? AND document_id = ?"
)

Key = tuple[str, str]


class DedupStore:
    """The followed part of the dedup index (what the topic said), on disk."""

    def __init__(self, path: Path | None) -> None:
        if path is None:  # no data folder: kept in memory, read from the topic each start
            conn = sqlite3.connect(":memory:", isolation_level=None, check_same_thread=False)
            conn.executescript(SCHEMA + POSITIONS_SCHEMA)
            self._conn = self._reader = conn
            self._lock = self._read_lock = threading.Lock()
            return
        # A writer (the follower's thread) and a reader (lookups): in WAL mode a lookup
        # does not wait for a write transaction.
        self._conn = open_store(path, SCHEMA_VERSION, SCHEMA, TABLES)
        self._reader = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self._lock, self._read_lock = threading.Lock(), threading.Lock()

    def positions(self) -> dict[TopicPartition, int]:
        with self._lock:
            return stored_positions(self._conn)

    def apply(
        self,
        firsts: Sequence[tuple[Key, FirstSeen]],
        nonces: Sequence[tuple[Key, int]],
        records: Sequence[Record],
    ) -> None:
        """The entries of `records` and their positions, in one transaction."""
        last: dict[TopicPartition, Record] = {}
        for r in records:
            last[r.tp] = r
        with self._lock, transaction(self._conn):
            self._conn.executemany(
                UPSERT,
                [
                    (k[0], k[1], f.at_ms, f.message_id, f.sha256, int(f.committed))
                    for k, f in firsts
                ],
            )
            self._conn.executemany(
                "INSERT OR IGNORE INTO nonces VALUES (?, ?, ?)",
                [(k[0], k[1], at) for k, at in nonces],
            )
            for r in last.values():
                store_position(self._conn, r)

    def get(self, key: Key) -> FirstSeen | None:
        with self._read_lock:
            row = self._reader.execute(GET, key).fetchone()
        return None if row is None else FirstSeen(row[0], row[1], row[2], bool(row[3]))

    def get_many(self, keys: Iterable[Key]) -> dict[Key, FirstSeen]:
        """The stored entries of those keys that have one, under one lock: a point query
        each (a row-value IN list made SQLite scan the table)."""
        found: dict[Key, FirstSeen] = {}
        with self._read_lock:
            for key in dict.fromkeys(keys):
                row = self._reader.execute(GET, key).fetchone()
                if row is not None:
                    found[key] = FirstSeen(row[0], row[1], row[2], bool(row[3]))
        return found

    def nonce_at(self, key: Key) -> int | None:
        with self._read_lock:
            row = self._reader.execute(
                "SELECT at_ms FROM nonces WHERE system_id = ? AND nonce = ?", key
            ).fetchone()
        return None if row is None else int(row[0])

    def prune(self, before_ms: int) -> tuple[int, int]:
        """Remove document keys and nonces first seen before `before_ms` (outside the
        window: they decide nothing any more); how many of each."""
        with self._lock, transaction(self._conn):
            keys = self._conn.execute(
                "DELETE FROM first_seen WHERE at_ms < ? AND substr(sender, 1, 1) != ?",
                (before_ms, LASTING),
            ).rowcount
            nonces = self._conn.execute("DELETE FROM nonces WHERE at_ms < ?", (before_ms,)).rowcount
        return keys, nonces

    def count(self) -> int:
        with self._read_lock:
            return int(self._reader.execute("SELECT count(*) FROM first_seen").fetchone()[0])

    def close(self) -> None:
        with self._lock:
            self._conn.close()
        with self._read_lock:  # the same connection, when in memory: closed twice is fine
            self._reader.close()
