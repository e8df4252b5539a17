"""The embedded log's schema version, and the upgrade of an older file in place.

The version lives in the file's `meta` table (`schema_version`). A file without
it but with the log's tables was made before versions were written down: it is
version 1. On open: the same version goes on; an older one is upgraded in one
transaction, one small named migration after another (a crash mid-way leaves
the old version, whole); a newer one is refused (`SchemaTooNew`, exit status 2):
this docbroker cannot know what a later one changed. A new, empty file is
created by running every migration from nothing.

Each migration is a function of the open transaction, listed in `MIGRATIONS`
with the version it makes; add one at the end, never change a released one.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from pathlib import Path

import structlog

from broker.core.errors import SchemaTooNew

log = structlog.get_logger(__name__)

Migration = Callable[[sqlite3.Connection], None]


def create_log_tables(conn: sqlite3.Connection, schema: str) -> None:
    """Version 1: the log's tables (records, heads, compaction keys, groups)."""
    for statement in schema.split(";"):
        if statement.strip():
            conn.execute(statement)


# A record's size: key + value + headers, as stored (what `docbroker status` shows).
SIZES_SCHEMA = (
    """CREATE TABLE topic_sizes(
        topic TEXT PRIMARY KEY, records INTEGER NOT NULL, bytes INTEGER NOT NULL)""",
    """CREATE TRIGGER topic_sizes_insert AFTER INSERT ON records BEGIN
        INSERT INTO topic_sizes(topic, records, bytes) VALUES (NEW.topic, 1,
            ifnull(length(NEW.key), 0) + ifnull(length(NEW.value), 0) + length(NEW.headers))
        ON CONFLICT(topic) DO UPDATE SET records = records + 1, bytes = bytes
            + ifnull(length(NEW.key), 0) + ifnull(length(NEW.value), 0) + length(NEW.headers);
    END""",
    """CREATE TRIGGER topic_sizes_delete AFTER DELETE ON records BEGIN
        UPDATE topic_sizes SET records = records - 1, bytes = bytes
            - ifnull(length(OLD.key), 0) - ifnull(length(OLD.value), 0) - length(OLD.headers)
        WHERE topic = OLD.topic;
    END""",
    """INSERT INTO topic_sizes(topic, records, bytes)
        SELECT topic, count(*),
            sum(ifnull(length(key), 0) + ifnull(length(value), 0) + length(headers))
        FROM records GROUP BY topic""",
)


def add_topic_sizes(conn: sqlite3.Connection) -> None:
    """Version 2: records and bytes (key + value + headers) per topic, kept by triggers
    on every insert and delete (compaction, pruning), counted once from what is there."""
    for statement in SIZES_SCHEMA:
        conn.execute(statement)


def add_log_starts(conn: sqlite3.Connection) -> None:
    """Version 3: where each partition starts once retention removed its first records
    (no row: at offset 0)."""
    conn.execute(
        """CREATE TABLE IF NOT EXISTS log_starts(
        topic TEXT NOT NULL, partition INTEGER NOT NULL, start_offset INTEGER NOT NULL,
        PRIMARY KEY(topic, partition)) WITHOUT ROWID"""
    )


def migrations(schema: str) -> list[tuple[int, str, Migration]]:
    """(version it makes, name, function), in order; `schema` is version 1's DDL."""
    return [
        (1, "create_log_tables", lambda conn: create_log_tables(conn, schema)),
        (2, "add_topic_sizes", add_topic_sizes),
        (3, "add_log_starts", add_log_starts),
    ]


LATEST = 3  # the version this docbroker writes; the last of `migrations`


def stored_version(conn: sqlite3.Connection) -> int:
    """The file's schema version: 0 for an empty file, 1 for the log's tables without
    a recorded version (the files of the first release)."""
    tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    if "meta" in tables:
        row = conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
        if row is not None:
            return int(row[0])
    return 1 if "records" in tables else 0


def refusal(path: Path, found: int) -> SchemaTooNew:
    return SchemaTooNew(
        f"{path.name} has schema {found}, this docbroker knows up to {LATEST}: upgrade "
        f"docbroker (the file was written by a newer release; {path} is left unchanged)"
    )


def open_schema(conn: sqlite3.Connection, path: Path, schema: str) -> int:
    """Bring the file to `LATEST` (or refuse a newer one); returns the version found."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        found = stored_version(conn)
        if found > LATEST:
            raise refusal(path, found)
        steps = [(v, name, fn) for v, name, fn in migrations(schema) if v > found]
        if steps and found > 0:
            log.warning(
                "upgrading the embedded log in place",
                path=str(path),
                schema_from=found,
                schema_to=LATEST,
                steps=[name for _, name, _ in steps],
                hint=f"a copy first (docbroker backup DIR) lets you go back to schema {found}",
            )
        for _, _, fn in steps:
            fn(conn)
        if steps:
            conn.execute(
                "INSERT OR REPLACE INTO meta(key, value) VALUES ('schema_version', ?)",
                (str(LATEST),),
            )
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    if found and found < LATEST:
        log.info("embedded log upgraded", path=str(path), schema=LATEST)
    return found
