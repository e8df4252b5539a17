"""A SQLite file kept beside the log, built by tailing topics: the read models'
(broker/views/readmodel.py) and the dedup index's (broker/state/dedup_store.py).

A rebuildable cache, so a file of another schema version is emptied and read again
from the log. It stores the next offset of every partition it applied in the
transaction that applies the records, so a restart continues where it stopped.
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Iterable, Iterator
from pathlib import Path

import structlog

from broker.core.logrecords import Record, TopicPartition

log = structlog.get_logger(__name__)

POSITIONS_SCHEMA = """
CREATE TABLE IF NOT EXISTS positions(
    topic TEXT NOT NULL, partition INTEGER NOT NULL, next_offset INTEGER NOT NULL,
    PRIMARY KEY(topic, partition)) WITHOUT ROWID;
"""


def open_store(path: Path, version: int, schema: str, tables: Iterable[str]) -> sqlite3.Connection:
    """The read model's file with `schema` and a positions table; the tables of another
    schema version (`tables` and positions) are dropped first, so the model is rebuilt
    from the log (a log line says so). A file SQLite cannot read is removed and made
    anew: it is a cache, never a reason not to start."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        return _open_store(path, version, schema, tables)
    except sqlite3.OperationalError:  # locked, full, not allowed: not the file's fault
        raise
    except sqlite3.DatabaseError as exc:  # not a database, malformed
        log.warning("read model unreadable: made anew from the log", path=str(path), error=str(exc))
        for suffix in ("", "-wal", "-shm"):
            path.with_name(path.name + suffix).unlink(missing_ok=True)
        return _open_store(path, version, schema, tables)


def _open_store(path: Path, version: int, schema: str, tables: Iterable[str]) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    try:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")  # a rebuildable view: losing the tail is fine
        found = conn.execute("PRAGMA user_version").fetchone()[0]
        if found != version:
            if found:
                log.warning(
                    "read model of another schema version: rebuilt from the log",
                    path=str(path),
                    schema_found=found,
                    schema=version,
                )
            for table in (*tables, "positions"):
                conn.execute(f"DROP TABLE IF EXISTS {table}")
            conn.execute(f"PRAGMA user_version = {int(version)}")
        conn.executescript(schema + POSITIONS_SCHEMA)
    except BaseException:
        conn.close()
        raise
    return conn


def stored_positions(conn: sqlite3.Connection) -> dict[TopicPartition, int]:
    """The next offset to read of every partition applied so far."""
    rows = conn.execute("SELECT topic, partition, next_offset FROM positions")
    return {TopicPartition(t, p): n for t, p, n in rows}


def store_position(conn: sqlite3.Connection, record: Record) -> None:
    """Remember that `record` is applied (in the transaction that applies it). Never
    backwards: another process sharing the file (a CLI beside the daemon) may have
    applied further already."""
    conn.execute(
        "INSERT INTO positions VALUES (?, ?, ?) ON CONFLICT(topic, partition) "
        "DO UPDATE SET next_offset = MAX(next_offset, excluded.next_offset)",
        (record.topic, record.partition, record.offset + 1),
    )


@contextlib.contextmanager
def transaction(conn: sqlite3.Connection) -> Iterator[None]:
    """All or nothing: rows and positions change together. IMMEDIATE: the write lock
    is taken (waiting out another process's transaction) before anything is read, so
    a transaction never has to give up upgrading a stale read to a write."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:  # SQLite itself rolls back on some errors (SQLITE_FULL)
            conn.execute("ROLLBACK")
        raise
