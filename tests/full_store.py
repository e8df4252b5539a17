"""A full store without a full disk: SQLite's `PRAGMA max_page_count` on the embedded
log's write connection (a per-connection setting: nothing in the file changes), and
a genuine SQLITE_FULL error for stores whose writes a test replaces."""

from __future__ import annotations

import sqlite3

from broker.log.embedded import EmbeddedLog

UNLIMITED = 1073741823  # SQLite's default max_page_count on older builds; ample here


async def limit_pages(log: EmbeddedLog, extra: int | None) -> None:
    """Let the log's file grow by at most `extra` pages from now on (None: no limit
    but SQLite's own)."""

    def limit(conn: sqlite3.Connection) -> None:
        pages = conn.execute("PRAGMA page_count").fetchone()[0]
        conn.execute(f"PRAGMA max_page_count = {UNLIMITED if extra is None else pages + extra}")

    await log._write(limit)


def sqlite_full_error() -> sqlite3.OperationalError:
    """A real "database or disk is full" from SQLite (with its error code)."""
    conn = sqlite3.connect(":memory:")
    try:
        conn.execute("CREATE TABLE t(x)")
        conn.execute("PRAGMA max_page_count = 2")
        conn.execute("INSERT INTO t VALUES (zeroblob(100000))")
    except sqlite3.OperationalError as exc:
        return exc
    finally:
        conn.close()
    raise AssertionError("SQLite wrote 100 kB into two pages")
