"""The embedded backend's SQLite file: its schema, how records and headers are
stored, and the one writer thread that commits appends in groups (one fsync for
concurrent appends). A group that cannot be written for lack of room fails as a
whole with `StorageFull`; the writer follows such episodes (`Writer.space`)."""

from __future__ import annotations

import asyncio
import contextlib
import queue
import sqlite3
import struct
import threading
import time
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import structlog

from broker.core.errors import BackendUnavailable, SchemaTooNew, StorageFull
from broker.core.logrecords import Headers, TopicPartition
from broker.log.embedded_schema import open_schema
from broker.log.interface import BeforeCommitHook
from broker.log.sqlite_space import FullDisk, write_failure

log = structlog.get_logger(__name__)

# Version 1 of the file's tables; later versions are migrations (embedded_schema).
SCHEMA = """
CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS topics(
    name TEXT PRIMARY KEY, partitions INTEGER NOT NULL,
    compacted INTEGER NOT NULL, max_record_bytes INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS heads(
    topic TEXT NOT NULL, partition INTEGER NOT NULL, next_offset INTEGER NOT NULL,
    PRIMARY KEY(topic, partition)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS records(
    id INTEGER PRIMARY KEY, topic TEXT NOT NULL, partition INTEGER NOT NULL,
    offset INTEGER NOT NULL, key BLOB, value BLOB, headers BLOB NOT NULL, ts INTEGER NOT NULL);
CREATE UNIQUE INDEX IF NOT EXISTS records_position ON records(topic, partition, offset);
CREATE TABLE IF NOT EXISTS latest_keys(
    topic TEXT NOT NULL, partition INTEGER NOT NULL, key BLOB NOT NULL, offset INTEGER NOT NULL,
    PRIMARY KEY(topic, partition, key)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS group_offsets(
    grp TEXT NOT NULL, topic TEXT NOT NULL, partition INTEGER NOT NULL,
    next_offset INTEGER NOT NULL, PRIMARY KEY(grp, topic, partition)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS group_members(
    grp TEXT NOT NULL, member_id TEXT NOT NULL, heartbeat_ms INTEGER NOT NULL,
    PRIMARY KEY(grp, member_id)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS partition_owners(
    grp TEXT NOT NULL, topic TEXT NOT NULL, partition INTEGER NOT NULL,
    member_id TEXT, epoch INTEGER NOT NULL,
    PRIMARY KEY(grp, topic, partition)) WITHOUT ROWID;
"""


def encode_headers(headers: Headers) -> bytes:
    """Length-prefixed (name, value) pairs: compact and exact for binary values."""
    out = bytearray()
    for name, value in headers:
        raw = name.encode("utf-8")
        out += struct.pack(">HI", len(raw), len(value))
        out += raw
        out += value
    return bytes(out)


def decode_headers(blob: bytes) -> Headers:
    items = []
    pos = 0
    while pos < len(blob):
        nlen, vlen = struct.unpack_from(">HI", blob, pos)
        pos += 6
        name = blob[pos : pos + nlen].decode("utf-8")
        pos += nlen
        items.append((name, bytes(blob[pos : pos + vlen])))
        pos += vlen
    return tuple(items)


def partition_for_key(key: bytes, partitions: int) -> int:
    """Same key, same partition (the embedded log's own hash; Kafka uses murmur2)."""
    return zlib.crc32(key) % partitions


def now_ms() -> int:
    return int(time.time() * 1000)


def rotated(tps: Sequence[TopicPartition], turn: int) -> list[TopicPartition]:
    """Partitions in order, starting one further each turn, so none starves."""
    if not tps:
        return []
    k = turn % len(tps)
    return [*tps[k:], *tps[:k]]


class Notifier:
    """Wakes every waiter when records were committed by this process."""

    def __init__(self) -> None:
        self._waiter: asyncio.Future[None] | None = None

    def notify(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)
        self._waiter = None

    async def wait(self, timeout: float) -> None:
        if timeout <= 0:
            return
        if self._waiter is None or self._waiter.done():
            self._waiter = asyncio.get_running_loop().create_future()
        # asyncio.timeout, not wait_for: on Python 3.11 wait_for can swallow a
        # cancellation that arrives as the waiter completes, and the poll loop
        # around this would then never stop.
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                await asyncio.shield(self._waiter)


@dataclass
class Job:
    fn: Callable[[sqlite3.Connection], Any]
    future: asyncio.Future[Any]
    before_commit: BeforeCommitHook | None = None
    appends: bool = False
    # Its commit shows that there is room again (an append, a probe; not a heartbeat,
    # which may fit where a submission does not).
    proves_space: bool = False
    result: Any = None
    error: BaseException | None = None


@dataclass
class TopicMeta:
    partitions: int
    compacted: bool
    max_record_bytes: int


def connect(path: Path, synchronous: str, *, writer: bool = False) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=30.0)
    if writer:
        # Takes effect on a new file only (before journal_mode and the first table): the
        # pages retention frees then go back to the file system (`incremental_vacuum`).
        # A file made before keeps reusing them, without shrinking.
        conn.execute("PRAGMA auto_vacuum=INCREMENTAL")
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute(f"PRAGMA synchronous={'FULL' if synchronous == 'full' else 'NORMAL'}")
    conn.execute("PRAGMA busy_timeout=30000")
    return conn


class Writer:
    """The one thread that writes: jobs queued together share one transaction."""

    MAX_GROUP = 256

    def __init__(
        self,
        path: Path,
        synchronous: str,
        loop: asyncio.AbstractEventLoop,
        on_appended: Callable[[], None],
    ) -> None:
        self._path = path
        self._synchronous = synchronous
        self._loop = loop
        self._on_appended = on_appended
        self._queue: queue.SimpleQueue[Job | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="sqlite-writer", daemon=True)
        self._conn: sqlite3.Connection | None = None
        self._ready = threading.Event()
        self._start_error: BaseException | None = None
        self.space = FullDisk("embedded log", path)

    def start(self) -> None:
        self._thread.start()
        self._ready.wait()
        if self._start_error is not None:
            raise self._start_error

    def stop(self) -> None:
        self._queue.put(None)
        self._thread.join()

    def submit(
        self,
        fn: Callable[[sqlite3.Connection], Any],
        *,
        before_commit: BeforeCommitHook | None = None,
        appends: bool = False,
        probe: bool = False,
    ) -> asyncio.Future[Any]:
        fut = self._loop.create_future()
        self._queue.put(Job(fn, fut, before_commit, appends, proves_space=appends or probe))
        return fut

    def _run(self) -> None:
        try:
            self._conn = connect(self._path, self._synchronous, writer=True)
            open_schema(self._conn, self._path, SCHEMA)  # upgraded in place, or refused
        except BaseException as exc:  # reported to start()
            failure = write_failure(self._path, exc)
            if isinstance(exc, SchemaTooNew):
                self._start_error = exc
            elif isinstance(failure, StorageFull):
                self._start_error = failure
            else:
                self._start_error = BackendUnavailable(f"cannot open {self._path}: {exc}")
            self._ready.set()
            return
        self._ready.set()
        stopping = False
        while not stopping:
            job = self._queue.get()
            if job is None:
                break
            jobs = [job]
            while len(jobs) < self.MAX_GROUP:
                try:
                    nxt = self._queue.get_nowait()
                except queue.Empty:
                    break
                if nxt is None:
                    stopping = True
                    break
                jobs.append(nxt)
            self._run_group(jobs)
        self._conn.close()

    def _run_group(self, jobs: list[Job]) -> None:
        conn = self._conn
        assert conn is not None
        try:
            conn.execute("BEGIN IMMEDIATE")
            for i, job in enumerate(jobs):
                conn.execute(f"SAVEPOINT job{i}")
                try:
                    job.result = job.fn(conn)
                    conn.execute(f"RELEASE job{i}")
                except sqlite3.Error as exc:
                    if not conn.in_transaction:
                        # SQLite rolled the whole transaction back (it does on
                        # SQLITE_FULL): no job of the group is written.
                        raise
                    conn.execute(f"ROLLBACK TO job{i}")
                    conn.execute(f"RELEASE job{i}")
                    job.error = write_failure(self._path, exc)
                except Exception as exc:
                    conn.execute(f"ROLLBACK TO job{i}")
                    conn.execute(f"RELEASE job{i}")
                    job.error = exc
            for job in jobs:
                if job.before_commit is not None and job.error is None:
                    job.before_commit()
            conn.execute("COMMIT")
        except Exception as exc:
            if conn.in_transaction:
                with contextlib.suppress(sqlite3.Error):
                    conn.execute("ROLLBACK")
            failure = write_failure(self._path, exc)
            for job in jobs:
                job.error = job.error or failure
        self._note_space(jobs)
        for job in jobs:
            self._loop.call_soon_threadsafe(self._settle, job)
        if any(j.appends and j.error is None for j in jobs):
            self._loop.call_soon_threadsafe(self._on_appended)

    def _note_space(self, jobs: list[Job]) -> None:
        """Follow the episodes of a full disk: a group that failed for lack of room
        begins or continues one; an append or a probe written (and no job failing
        for lack of room) shows that there is room again."""
        full = next((j.error for j in jobs if isinstance(j.error, StorageFull)), None)
        if full is not None:
            self.space.failed(full)
        elif any(j.proves_space and j.error is None for j in jobs):
            self.space.wrote()

    @staticmethod
    def _settle(job: Job) -> None:
        if job.future.done():
            return
        if job.error is not None:
            job.future.set_exception(job.error)
        else:
            job.future.set_result(job.result)
