"""What the simulator keeps: packages, each recipient's copy of them, and the agencies
systems registered. SQLite (a file in WAL mode, or memory); each change is committed
before the caller answers, so a restart loses nothing it confirmed. Calls are
synchronous: a simulator's transactions are tiny. Time is passed in (ms)."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from broker.vdxp import MESSAGE_TYPES, TRANSPORT, TRANSPORT_DONE

# The transport states (vdxp.TRANSPORT) are written literally in the SQL below:
# initial -> processing (fetched) -> done, or fail (reported; listed again).


@dataclass(frozen=True, slots=True)
class Package:
    """One sendEdoc: the bytes once, with what the sent list says about them."""

    sender_doc_id: str  # the DocId sendEdoc answered
    body: bytes
    sha256: str
    from_system: str
    sender: str  # `from` as sent
    messagetype: str
    document_id: str  # its DocumentId, or for a status the one it answers ("" unread)
    title: str
    notation: str
    created_ms: int


@dataclass(frozen=True, slots=True)
class Copy:
    """One recipient agency's copy of a package."""

    doc_id: str  # the receiverDocId: what the receiving system lists and takes
    recipient: str  # `to` as sent
    recipient_key: str  # the agency's QĐ 20 code (one copy per agency)
    to_system: str


@dataclass(frozen=True, slots=True)
class Entry:
    """A copy with its package's fields, as the lists show it."""

    doc_id: str
    sender_doc_id: str
    sender: str
    recipient: str
    messagetype: str
    from_system: str
    to_system: str
    created_ms: int
    updated_ms: int
    received_ms: int  # when the recipient confirmed it (0: not yet)
    status: str  # initial | processing | done | fail (TRANSPORT)
    fails: int
    title: str
    notation: str
    status_code: str  # the latest business status the recipient's system sent about it


@dataclass(frozen=True, slots=True)
class Registered:
    """An agency a system registered (registerAgency)."""

    code: str
    code102: str
    name: str
    mail: str
    pid: str
    system: str
    version: int
    modified_ms: int
    deleted: bool


_SCHEMA = """
CREATE TABLE IF NOT EXISTS packages (
    sender_doc_id TEXT PRIMARY KEY,
    body BLOB NOT NULL,
    sha256 TEXT NOT NULL,
    from_system TEXT NOT NULL,
    sender TEXT NOT NULL,
    messagetype TEXT NOT NULL,
    document_id TEXT NOT NULL,
    title TEXT NOT NULL,
    notation TEXT NOT NULL,
    created_ms INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS entries (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    doc_id TEXT NOT NULL,
    sender_doc_id TEXT NOT NULL REFERENCES packages (sender_doc_id),
    recipient TEXT NOT NULL,
    recipient_key TEXT NOT NULL,
    to_system TEXT NOT NULL,
    updated_ms INTEGER NOT NULL,
    received_ms INTEGER NOT NULL DEFAULT 0,
    status TEXT NOT NULL DEFAULT 'initial',
    fails INTEGER NOT NULL DEFAULT 0,
    status_code TEXT NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS entries_inbox ON entries (to_system, status);
CREATE INDEX IF NOT EXISTS entries_doc ON entries (doc_id, to_system);
CREATE INDEX IF NOT EXISTS entries_package ON entries (sender_doc_id);
CREATE INDEX IF NOT EXISTS packages_sent ON packages (from_system, sha256);
CREATE INDEX IF NOT EXISTS packages_document ON packages (document_id);
CREATE TABLE IF NOT EXISTS agencies (
    code TEXT PRIMARY KEY,
    code102 TEXT NOT NULL,
    name TEXT NOT NULL,
    mail TEXT NOT NULL,
    pid TEXT NOT NULL,
    system TEXT NOT NULL,
    version INTEGER NOT NULL,
    modified_ms INTEGER NOT NULL,
    deleted INTEGER NOT NULL DEFAULT 0
);
"""
_ENTRY = (
    "SELECT e.doc_id, e.sender_doc_id, p.sender, e.recipient, p.messagetype, p.from_system,"
    " e.to_system, p.created_ms, e.updated_ms, e.received_ms, e.status, e.fails, p.title,"
    " p.notation, e.status_code FROM entries e JOIN packages p USING (sender_doc_id) "
)
_REGISTERED_COLUMNS = ", ".join(f.name for f in fields(Registered))


class Store:
    def __init__(self, path: Path | None) -> None:
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
        self.db = sqlite3.connect(str(path) if path else ":memory:")
        if path is not None:
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA synchronous=NORMAL")  # durable across process crashes
        self.db.executescript(_SCHEMA)

    def close(self) -> None:
        self.db.close()

    # -- packages and their copies

    def add(self, package: Package, copies: Sequence[Copy]) -> None:
        """Keep a package and its copies, all or nothing."""
        p = package
        with self.db:
            self.db.execute(
                "INSERT INTO packages VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (p.sender_doc_id, p.body, p.sha256, p.from_system, p.sender, p.messagetype,
                 p.document_id, p.title, p.notation, p.created_ms),
            )  # fmt: skip
            self.db.executemany(
                "INSERT INTO entries (doc_id, sender_doc_id, recipient, recipient_key,"
                " to_system, updated_ms) VALUES (?, ?, ?, ?, ?, ?)",
                [(c.doc_id, p.sender_doc_id, c.recipient, c.recipient_key, c.to_system,
                  p.created_ms) for c in copies],
            )  # fmt: skip

    def already_sent(self, from_system: str, sha256: str, keys: Iterable[str]) -> dict[str, str]:
        """Which of these recipient keys already got these bytes from this system, each
        with the DocId it was answered then."""
        found: dict[str, str] = {}
        for key in keys:
            row = self.db.execute(
                "SELECT p.sender_doc_id FROM packages p JOIN entries e USING (sender_doc_id)"
                " WHERE p.from_system = ? AND p.sha256 = ? AND e.recipient_key = ?"
                " ORDER BY e.seq LIMIT 1",
                (from_system, sha256, key),
            ).fetchone()
            if row:
                found[key] = row[0]
        return found

    def pending(self, to_system: str, messagetype: str) -> list[Entry]:
        """What waits for a system, oldest first."""
        return self._entries(
            "WHERE e.to_system = ? AND p.messagetype = ? AND e.status != 'done' ORDER BY e.seq",
            (to_system, messagetype),
        )

    def count_pending(self, to_system: str, messagetype: str) -> int:
        row = self.db.execute(
            "SELECT COUNT(*) FROM entries e JOIN packages p USING (sender_doc_id)"
            " WHERE e.to_system = ? AND p.messagetype = ? AND e.status != 'done'",
            (to_system, messagetype),
        ).fetchone()
        return int(row[0])

    def sent(self, from_system: str, messagetype: str | None) -> list[Entry]:
        """What a system sent, one entry per copy, newest first."""
        if messagetype is None:
            return self._entries("WHERE p.from_system = ? ORDER BY e.seq DESC", (from_system,))
        return self._entries(
            "WHERE p.from_system = ? AND p.messagetype = ? ORDER BY e.seq DESC",
            (from_system, messagetype),
        )

    def fetch(self, to_system: str, doc_id: str, now_ms: int) -> bytes | None:
        """A system's package by its docId (None: it has none such); a copy not yet
        confirmed is now being taken (`processing`)."""
        with self.db:
            row = self.db.execute(
                "SELECT p.body FROM entries e JOIN packages p USING (sender_doc_id)"
                " WHERE e.to_system = ? AND e.doc_id = ? LIMIT 1",
                (to_system, doc_id),
            ).fetchone()
            if row is None:
                return None
            self.db.execute(
                "UPDATE entries SET status = 'processing', updated_ms = ?"
                " WHERE to_system = ? AND doc_id = ? AND status = 'initial'",
                (now_ms, to_system, doc_id),
            )
        return bytes(row[0])

    def mark(self, to_system: str, doc_id: str, outcome: str, now_ms: int) -> bool:
        """A transport acknowledgement on all of a system's copies of a docId: done is
        final; fail is counted and leaves them listed. False: no such copy."""
        key = (now_ms, to_system, doc_id)
        with self.db:
            if outcome == TRANSPORT_DONE:
                cursor = self.db.execute(
                    "UPDATE entries SET status = 'done', updated_ms = ?1,"
                    " received_ms = CASE received_ms WHEN 0 THEN ?1 ELSE received_ms END"
                    " WHERE to_system = ?2 AND doc_id = ?3",
                    key,
                )
            else:
                cursor = self.db.execute(
                    "UPDATE entries SET fails = fails + 1, updated_ms = ?1, status = CASE"
                    " status WHEN 'done' THEN status ELSE 'fail' END"
                    " WHERE to_system = ?2 AND doc_id = ?3",
                    key,
                )
        return cursor.rowcount > 0

    def record_status(self, by_system: str, document_id: str, code: str) -> int:
        """A business status `by_system` sent about `document_id`: the latest one of the
        copies of that document it received. Returns how many copies it concerns."""
        with self.db:
            cursor = self.db.execute(
                "UPDATE entries SET status_code = ? WHERE to_system = ? AND sender_doc_id IN"
                " (SELECT sender_doc_id FROM packages WHERE document_id = ?"
                " AND messagetype = 'edoc')",
                (code, by_system, document_id),
            )
        return cursor.rowcount

    def stats(self) -> dict[str, Any]:
        """Copies by message type and transport state, and fail counts by docId."""
        entries = {t: dict.fromkeys(TRANSPORT, 0) for t in MESSAGE_TYPES}
        for kind, status, n in self.db.execute(
            "SELECT p.messagetype, e.status, COUNT(*) FROM entries e JOIN packages p"
            " USING (sender_doc_id) GROUP BY p.messagetype, e.status"
        ):
            entries.setdefault(kind, {})[status] = n
        fails = dict(
            self.db.execute(
                "SELECT doc_id, MAX(fails) FROM entries GROUP BY doc_id HAVING MAX(fails) > 0"
            ).fetchall()
        )
        return {"entries": entries, "fails": fails}

    def _entries(self, clause: str, args: tuple[Any, ...]) -> list[Entry]:
        return [Entry(*row) for row in self.db.execute(_ENTRY + clause, args)]

    # -- registered agencies

    def registered(self) -> list[Registered]:
        """Every agency ever registered (deleted ones too), oldest version first."""
        rows = self.db.execute(
            f"SELECT {_REGISTERED_COLUMNS} FROM agencies ORDER BY version"  # noqa: S608
        )
        return [Registered(*row[:-1], bool(row[-1])) for row in rows]

    def find_registered(self, code: str) -> Registered | None:
        """A registered agency (deleted or not) by either of its codes."""
        return next((a for a in self.registered() if code in (a.code, a.code102)), None)

    def register(self, agency: Registered) -> Registered:
        """Add or replace an agency; it gets the next version."""
        with self.db:
            (top,) = self.db.execute("SELECT COALESCE(MAX(version), 0) FROM agencies").fetchone()
            stored = Registered(**{**_as_dict(agency), "version": int(top) + 1})
            self.db.execute(
                f"INSERT OR REPLACE INTO agencies ({_REGISTERED_COLUMNS})"  # noqa: S608
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                tuple(_as_dict(stored).values()),
            )
        return stored


def _as_dict(agency: Registered) -> dict[str, Any]:
    return {f.name: getattr(agency, f.name) for f in fields(agency)}
