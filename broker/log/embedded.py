"""The embedded backend of the durable log: one SQLite file in WAL mode.

Same semantics as Kafka, so that a new user runs the whole broker with no server:

- topics of numbered partitions, offsets assigned per partition at commit;
- appends are durable when acknowledged (synchronous=FULL), and concurrent
  appends share one transaction and one fsync (group commit);
- consumer groups: members heartbeat into the file, partitions are spread
  round-robin over the live members, ownership carries an epoch, and a commit
  checks the epoch inside the same SQLite transaction that writes the outputs
  and the offset. A member that lost a partition is fenced: nothing it wrote
  becomes visible. This works across processes sharing the file, too.

All SQLite calls run in threads: one writer thread owning the only write
connection, and a small pool of reader threads with their own connections.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import queue
import sqlite3
import struct
import threading
import time
import uuid
import zlib
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import structlog

from broker.core.errors import BackendUnavailable, Fenced, RecordTooLarge
from broker.core.logrecords import Headers, NewRecord, Position, Record, TopicPartition, TopicSpec
from broker.log.interface import BeforeCommitHook, DurableLog, GroupConsumer, Tailer

log = structlog.get_logger(__name__)

SCHEMA_VERSION = "1"
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


def _now_ms() -> int:
    return int(time.time() * 1000)


def rotated(tps: Sequence[TopicPartition], turn: int) -> list[TopicPartition]:
    """Partitions in order, starting one further each turn, so none starves."""
    if not tps:
        return []
    k = turn % len(tps)
    return [*tps[k:], *tps[:k]]


class _Notifier:
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
class _Job:
    fn: Callable[[sqlite3.Connection], Any]
    future: asyncio.Future[Any]
    before_commit: BeforeCommitHook | None = None
    appends: bool = False
    result: Any = None
    error: BaseException | None = None


@dataclass
class _TopicMeta:
    partitions: int
    compacted: bool
    max_record_bytes: int


def _connect(path: Path, synchronous: str) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=30.0)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute(f"PRAGMA synchronous={'FULL' if synchronous == 'full' else 'NORMAL'}")
    conn.execute("PRAGMA busy_timeout=30000")
    return conn


class _Writer:
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
        self._queue: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="sqlite-writer", daemon=True)
        self._conn: sqlite3.Connection | None = None
        self._ready = threading.Event()
        self._start_error: BaseException | None = None

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
    ) -> asyncio.Future[Any]:
        fut = self._loop.create_future()
        self._queue.put(_Job(fn, fut, before_commit, appends))
        return fut

    def _run(self) -> None:
        try:
            self._conn = _connect(self._path, self._synchronous)
            self._conn.executescript(SCHEMA)
            self._conn.execute(
                "INSERT OR IGNORE INTO meta(key, value) VALUES ('schema_version', ?)",
                (SCHEMA_VERSION,),
            )
        except BaseException as exc:  # reported to start()
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

    def _run_group(self, jobs: list[_Job]) -> None:
        conn = self._conn
        assert conn is not None
        try:
            conn.execute("BEGIN IMMEDIATE")
            for i, job in enumerate(jobs):
                conn.execute(f"SAVEPOINT job{i}")
                try:
                    job.result = job.fn(conn)
                    conn.execute(f"RELEASE job{i}")
                except Exception as exc:
                    conn.execute(f"ROLLBACK TO job{i}")
                    conn.execute(f"RELEASE job{i}")
                    job.error = exc
            for job in jobs:
                if job.before_commit is not None and job.error is None:
                    job.before_commit()
            conn.execute("COMMIT")
        except Exception as exc:
            with contextlib.suppress(sqlite3.Error):
                conn.execute("ROLLBACK")
            failure = BackendUnavailable(f"SQLite transaction failed: {exc}")
            for job in jobs:
                job.error = job.error or failure
        for job in jobs:
            self._loop.call_soon_threadsafe(self._settle, job)
        if any(j.appends and j.error is None for j in jobs):
            self._loop.call_soon_threadsafe(self._on_appended)

    @staticmethod
    def _settle(job: _Job) -> None:
        if job.future.done():
            return
        if job.error is not None:
            job.future.set_exception(job.error)
        else:
            job.future.set_result(job.result)


class EmbeddedLog(DurableLog):
    """The durable log in one SQLite file."""

    name = "embedded"

    def __init__(
        self,
        path: Path | str,
        *,
        synchronous: str = "full",
        session_timeout: float = 10.0,
        poll_interval: float = 0.05,
    ) -> None:
        self.path = Path(path)
        self._synchronous = synchronous
        self.session_timeout = session_timeout
        self.poll_interval = poll_interval
        self._writer: _Writer | None = None
        self._readers: ThreadPoolExecutor | None = None
        self._local = threading.local()
        self._reader_conns: list[sqlite3.Connection] = []
        self._reader_lock = threading.Lock()
        self._topics: dict[str, _TopicMeta] = {}
        self._round_robin: dict[str, itertools.count[int]] = {}
        self.notifier = _Notifier()

    # -- lifecycle

    async def start(self) -> None:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise BackendUnavailable(f"cannot create the folder of {self.path}: {exc}") from exc
        loop = asyncio.get_running_loop()
        self._writer = _Writer(self.path, self._synchronous, loop, self.notifier.notify)
        await asyncio.to_thread(self._writer.start)
        self._readers = ThreadPoolExecutor(max_workers=4, thread_name_prefix="sqlite-read")
        await self._load_topics()

    async def close(self) -> None:
        if self._writer is not None:
            await asyncio.to_thread(self._writer.stop)
            self._writer = None
        if self._readers is not None:
            self._readers.shutdown(wait=True)
            self._readers = None
        with self._reader_lock:
            for conn in self._reader_conns:
                conn.close()
            self._reader_conns.clear()

    # -- threads

    def _reader_conn(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = _connect(self.path, self._synchronous)
            conn.execute("PRAGMA query_only=1")
            self._local.conn = conn
            with self._reader_lock:
                self._reader_conns.append(conn)
        return conn

    async def _read(self, fn: Callable[[sqlite3.Connection], Any]) -> Any:
        if self._readers is None:
            raise BackendUnavailable("the embedded log is not started")
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self._readers, lambda: fn(self._reader_conn()))
        except sqlite3.Error as exc:
            raise BackendUnavailable(f"SQLite read failed: {exc}") from exc

    async def _write(
        self,
        fn: Callable[[sqlite3.Connection], Any],
        *,
        before_commit: BeforeCommitHook | None = None,
        appends: bool = False,
    ) -> Any:
        if self._writer is None:
            raise BackendUnavailable("the embedded log is not started")
        return await self._writer.submit(fn, before_commit=before_commit, appends=appends)

    # -- topics

    async def _load_topics(self) -> None:
        rows = await self._read(
            lambda c: c.execute(
                "SELECT name, partitions, compacted, max_record_bytes FROM topics"
            ).fetchall()
        )
        self._topics = {r[0]: _TopicMeta(r[1], bool(r[2]), r[3]) for r in rows}

    async def _meta(self, topic: str) -> _TopicMeta:
        meta = self._topics.get(topic)
        if meta is None:
            await self._load_topics()  # another process may have created it
            meta = self._topics.get(topic)
        if meta is None:
            raise BackendUnavailable(f"topic {topic!r} does not exist")
        return meta

    async def ensure_topics(self, specs: Sequence[TopicSpec]) -> None:
        def create(conn: sqlite3.Connection) -> None:
            for s in specs:
                row = conn.execute(
                    "SELECT partitions, max_record_bytes FROM topics WHERE name = ?", (s.name,)
                ).fetchone()
                if row is None:
                    conn.execute(
                        "INSERT INTO topics VALUES (?, ?, ?, ?)",
                        (s.name, s.partitions, int(s.compacted), s.max_record_bytes),
                    )
                elif row[0] != s.partitions or row[1] < s.max_record_bytes:
                    # Partitions can only grow; the size limit follows the configuration.
                    conn.execute(
                        "UPDATE topics SET partitions = MAX(partitions, ?), "
                        "max_record_bytes = ? WHERE name = ?",
                        (s.partitions, s.max_record_bytes, s.name),
                    )

        await self._write(create)
        await self._load_topics()

    # -- appending

    def _insert(self, conn: sqlite3.Connection, rec: NewRecord, now_ms: int) -> Position:
        meta = self._topics.get(rec.topic)
        if meta is None:
            raise BackendUnavailable(f"topic {rec.topic!r} does not exist")
        if rec.size > meta.max_record_bytes:
            raise RecordTooLarge(
                f"record of {rec.size} bytes exceeds {meta.max_record_bytes} on {rec.topic}"
            )
        if rec.partition is not None:
            if not 0 <= rec.partition < meta.partitions:
                raise BackendUnavailable(f"{rec.topic} has no partition {rec.partition}")
            partition = rec.partition
        elif rec.key is not None:
            partition = partition_for_key(rec.key, meta.partitions)
        else:
            counter = self._round_robin.setdefault(rec.topic, itertools.count())
            partition = next(counter) % meta.partitions
        row = conn.execute(
            "SELECT next_offset FROM heads WHERE topic = ? AND partition = ?",
            (rec.topic, partition),
        ).fetchone()
        offset = row[0] if row else 0
        conn.execute(
            "INSERT OR REPLACE INTO heads(topic, partition, next_offset) VALUES (?, ?, ?)",
            (rec.topic, partition, offset + 1),
        )
        conn.execute(
            "INSERT INTO records(topic, partition, offset, key, value, headers, ts) "
            "VALUES (?, ?, ?, ?, ?, ?, ?)",
            (rec.topic, partition, offset, rec.key, rec.value, encode_headers(rec.headers), now_ms),
        )
        if meta.compacted and rec.key is not None:
            prev = conn.execute(
                "SELECT offset FROM latest_keys WHERE topic = ? AND partition = ? AND key = ?",
                (rec.topic, partition, rec.key),
            ).fetchone()
            if prev is not None:
                conn.execute(
                    "DELETE FROM records WHERE topic = ? AND partition = ? AND offset = ?",
                    (rec.topic, partition, prev[0]),
                )
            conn.execute(
                "INSERT OR REPLACE INTO latest_keys VALUES (?, ?, ?, ?)",
                (rec.topic, partition, rec.key, offset),
            )
        return Position(rec.topic, partition, offset)

    async def _check_topics(self, records: Iterable[NewRecord]) -> None:
        for topic in {r.topic for r in records}:
            await self._meta(topic)

    async def append(self, records: Sequence[NewRecord]) -> list[Position]:
        if not records:
            return []
        await self._check_topics(records)
        now = _now_ms()
        return await self._write(
            lambda conn: [self._insert(conn, r, now) for r in records], appends=True
        )

    # -- reading

    @staticmethod
    def _select(
        conn: sqlite3.Connection,
        tp: TopicPartition,
        start: int,
        limit: int,
        budget: int,
    ) -> list[Record]:
        cur = conn.execute(
            "SELECT offset, key, value, headers, ts FROM records "
            "WHERE topic = ? AND partition = ? AND offset >= ? ORDER BY offset LIMIT ?",
            (tp.topic, tp.partition, start, limit),
        )
        out: list[Record] = []
        used = 0
        for offset, key, value, headers, ts in cur:
            out.append(
                Record(tp.topic, tp.partition, offset, key, value, decode_headers(headers), ts)
            )
            used += len(value or b"")
            if used >= budget:
                break
        cur.close()
        return out

    async def _read_partitions(
        self,
        positions: Mapping[TopicPartition, int],
        max_records: int,
        budget: int,
    ) -> dict[TopicPartition, list[Record]]:
        def read(conn: sqlite3.Connection) -> dict[TopicPartition, list[Record]]:
            out: dict[TopicPartition, list[Record]] = {}
            left, left_bytes = max_records, budget
            conn.execute("BEGIN")  # one snapshot for all partitions
            try:
                for tp, start in positions.items():
                    if left <= 0 or left_bytes <= 0:
                        break
                    recs = self._select(conn, tp, start, left, left_bytes)
                    if recs:
                        out[tp] = recs
                        left -= len(recs)
                        left_bytes -= sum(len(r.value or b"") for r in recs)
            finally:
                conn.execute("COMMIT")
            return out

        return await self._read(read)

    async def partitions_of(self, topics: Sequence[str]) -> list[TopicPartition]:
        out = []
        for topic in topics:
            meta = await self._meta(topic)
            out.extend(TopicPartition(topic, p) for p in range(meta.partitions))
        return out

    def group_consumer(
        self, group: str, topics: Sequence[str], *, max_batch_bytes: int | None = None
    ) -> GroupConsumer:
        return EmbeddedGroupConsumer(self, group, list(topics), max_batch_bytes or 64 * 1024**2)

    def tailer(
        self,
        topics: Sequence[str],
        positions: Mapping[TopicPartition, int],
        *,
        only: Collection[TopicPartition] | None = None,
    ) -> Tailer:
        return EmbeddedTailer(
            self, list(topics), dict(positions), only=frozenset(only) if only is not None else None
        )

    async def partition_for(self, topic: str, key: bytes) -> int:
        return partition_for_key(key, (await self._meta(topic)).partitions)

    async def read_at(self, topic: str, partition: int, offset: int) -> Record | None:
        tp = TopicPartition(topic, partition)

        def read(conn: sqlite3.Connection) -> Record | None:
            recs = self._select(conn, tp, offset, 1, 1)
            return recs[0] if recs and recs[0].offset == offset else None

        return await self._read(read)

    async def end_offsets(self, topics: Sequence[str]) -> dict[TopicPartition, int]:
        tps = await self.partitions_of(topics)

        def read(conn: sqlite3.Connection) -> dict[TopicPartition, int]:
            rows = conn.execute("SELECT topic, partition, next_offset FROM heads").fetchall()
            heads = {TopicPartition(t, p): n for t, p, n in rows}
            return {tp: heads.get(tp, 0) for tp in tps}

        return await self._read(read)

    async def ping(self) -> None:
        await self._read(lambda c: c.execute("SELECT 1").fetchone())


@dataclass
class _Assignment:
    owned: dict[TopicPartition, int]  # partition -> ownership epoch
    committed: dict[TopicPartition, int]


@dataclass
class EmbeddedGroupConsumer(GroupConsumer):
    """A consumer-group member whose coordinator is the SQLite file itself."""

    log_: EmbeddedLog
    group: str
    topics: list[str]
    max_batch_bytes: int
    member_id: str = field(default_factory=lambda: uuid.uuid4().hex)
    _owned: dict[TopicPartition, int] = field(default_factory=dict)
    _positions: dict[TopicPartition, int] = field(default_factory=dict)
    _committed: dict[TopicPartition, int] = field(default_factory=dict)
    _inflight: set[TopicPartition] = field(default_factory=set)
    _paused: set[TopicPartition] = field(default_factory=set)
    _lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    _task: asyncio.Task[None] | None = None
    _closed: bool = False
    _turn: int = 0

    @property
    def _interval(self) -> float:
        return min(0.5, self.log_.session_timeout / 4)

    async def start(self) -> None:
        self._tps = await self.log_.partitions_of(self.topics)
        await self._reconcile()
        self._task = asyncio.create_task(self._heartbeat(), name=f"heartbeat-{self.group}")

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        grp, me = self.group, self.member_id

        def leave(conn: sqlite3.Connection) -> None:
            conn.execute("DELETE FROM group_members WHERE grp = ? AND member_id = ?", (grp, me))
            conn.execute(
                "UPDATE partition_owners SET member_id = NULL WHERE grp = ? AND member_id = ?",
                (grp, me),
            )

        with contextlib.suppress(BackendUnavailable):
            await self.log_._write(leave)
        self._owned.clear()

    async def _heartbeat(self) -> None:
        while True:
            await asyncio.sleep(self._interval)
            try:
                await self._reconcile()
            except BackendUnavailable as exc:
                log.warning("group heartbeat failed", group=self.group, error=str(exc))

    def _reconcile_txn(
        self, conn: sqlite3.Connection, keep: frozenset[TopicPartition]
    ) -> _Assignment:
        grp, me, now = self.group, self.member_id, _now_ms()
        conn.execute(
            "INSERT OR REPLACE INTO group_members(grp, member_id, heartbeat_ms) VALUES (?, ?, ?)",
            (grp, me, now),
        )
        cutoff = now - int(self.log_.session_timeout * 1000)
        expired = [
            r[0]
            for r in conn.execute(
                "SELECT member_id FROM group_members WHERE grp = ? AND heartbeat_ms < ?",
                (grp, cutoff),
            ).fetchall()
        ]
        for member in expired:
            conn.execute("DELETE FROM group_members WHERE grp = ? AND member_id = ?", (grp, member))
            conn.execute(
                "UPDATE partition_owners SET member_id = NULL WHERE grp = ? AND member_id = ?",
                (grp, member),
            )
        live = sorted(
            r[0]
            for r in conn.execute(
                "SELECT member_id FROM group_members WHERE grp = ?", (grp,)
            ).fetchall()
        )
        owners = {
            TopicPartition(t, p): (m, e)
            for t, p, m, e in conn.execute(
                "SELECT topic, partition, member_id, epoch FROM partition_owners WHERE grp = ?",
                (grp,),
            ).fetchall()
        }
        mine = {tp for i, tp in enumerate(self._tps) if live[i % len(live)] == me}
        owned: dict[TopicPartition, int] = {}
        for tp, (member, epoch) in owners.items():
            if member != me:
                continue
            if tp in mine or tp in keep:
                owned[tp] = epoch
            else:  # desired elsewhere: hand it over between batches
                conn.execute(
                    "UPDATE partition_owners SET member_id = NULL "
                    "WHERE grp = ? AND topic = ? AND partition = ?",
                    (grp, tp.topic, tp.partition),
                )
        for tp in mine:
            member, epoch = owners.get(tp, (None, 0))
            if member is None:
                conn.execute(
                    "INSERT OR REPLACE INTO partition_owners VALUES (?, ?, ?, ?, ?)",
                    (grp, tp.topic, tp.partition, me, epoch + 1),
                )
                owned[tp] = epoch + 1
        committed = {
            TopicPartition(t, p): n
            for t, p, n in conn.execute(
                "SELECT topic, partition, next_offset FROM group_offsets WHERE grp = ?", (grp,)
            ).fetchall()
        }
        return _Assignment(owned, {tp: committed.get(tp, 0) for tp in owned})

    async def _reconcile(self) -> None:
        async with self._lock:
            if self._closed:
                return
            keep = frozenset(self._inflight)
            result: _Assignment = await self.log_._write(lambda c: self._reconcile_txn(c, keep))
            for tp in list(self._owned):
                if tp not in result.owned or result.owned[tp] != self._owned[tp]:
                    self._drop(tp)
            for tp, epoch in result.owned.items():
                if tp not in self._owned:
                    self._owned[tp] = epoch
                    self._committed[tp] = result.committed[tp]
                    self._positions[tp] = result.committed[tp]

    def _drop(self, tp: TopicPartition) -> None:
        self._owned.pop(tp, None)
        self._positions.pop(tp, None)
        self._committed.pop(tp, None)
        self._inflight.discard(tp)
        self._paused.discard(tp)

    def assignment(self) -> frozenset[TopicPartition]:
        return frozenset(self._owned)

    def pause(self, tps: Collection[TopicPartition]) -> None:
        self._paused.update(tp for tp in tps if tp in self._owned)

    def resume(self, tps: Collection[TopicPartition]) -> None:
        self._paused.difference_update(tps)

    async def poll(
        self, timeout: float, max_records: int
    ) -> Mapping[TopicPartition, Sequence[Record]]:
        deadline = time.monotonic() + timeout
        while True:
            async with self._lock:
                self._turn += 1
                order = rotated(sorted(set(self._owned) - self._paused), self._turn)
                positions = {tp: self._positions[tp] for tp in order}
                batches = (
                    await self.log_._read_partitions(positions, max_records, self.max_batch_bytes)
                    if positions
                    else {}
                )
                for tp, recs in batches.items():
                    self._positions[tp] = recs[-1].offset + 1
                    self._inflight.add(tp)
            if batches:
                return batches
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return {}
            await self.log_.notifier.wait(min(remaining, self.log_.poll_interval))

    async def commit(
        self,
        tp: TopicPartition,
        next_offset: int,
        outputs: Sequence[NewRecord] = (),
        *,
        before_commit: BeforeCommitHook | None = None,
    ) -> list[Position]:
        epoch = self._owned.get(tp)
        if epoch is None:
            raise Fenced(f"{tp} is not assigned to this member")
        await self.log_._check_topics(outputs)
        grp, me, now = self.group, self.member_id, _now_ms()

        def txn(conn: sqlite3.Connection) -> list[Position]:
            row = conn.execute(
                "SELECT member_id, epoch FROM partition_owners "
                "WHERE grp = ? AND topic = ? AND partition = ?",
                (grp, tp.topic, tp.partition),
            ).fetchone()
            if row is None or row[0] != me or row[1] != epoch:
                raise Fenced(f"{tp} was reassigned (group {grp})")
            positions = [self.log_._insert(conn, r, now) for r in outputs]
            conn.execute(
                "INSERT OR REPLACE INTO group_offsets VALUES (?, ?, ?, ?)",
                (grp, tp.topic, tp.partition, next_offset),
            )
            conn.execute(
                "UPDATE group_members SET heartbeat_ms = ? WHERE grp = ? AND member_id = ?",
                (now, grp, me),
            )
            return positions

        try:
            positions = await self.log_._write(
                txn, before_commit=before_commit, appends=bool(outputs)
            )
        except Fenced:
            self._drop(tp)
            raise
        except BaseException:
            await self.rewind(tp)
            raise
        self._committed[tp] = next_offset
        self._inflight.discard(tp)
        return positions

    async def rewind(self, tp: TopicPartition) -> None:
        if tp in self._owned:
            self._positions[tp] = self._committed[tp]
        self._inflight.discard(tp)


@dataclass
class EmbeddedTailer(Tailer):
    log_: EmbeddedLog
    topics: list[str]
    positions_: dict[TopicPartition, int]
    only: frozenset[TopicPartition] | None = None
    max_batch_bytes: int = 64 * 1024**2
    _turn: int = 0

    async def start(self) -> None:
        for tp in await self.log_.partitions_of(self.topics):
            if self.only is None or tp in self.only:
                self.positions_.setdefault(tp, 0)

    async def close(self) -> None:
        return None

    async def positions(self) -> dict[TopicPartition, int]:
        return dict(self.positions_)

    async def poll(self, timeout: float, max_records: int) -> Sequence[Record]:
        deadline = time.monotonic() + timeout
        while True:
            self._turn += 1
            order = rotated(sorted(self.positions_), self._turn)
            batches = await self.log_._read_partitions(
                {tp: self.positions_[tp] for tp in order}, max_records, self.max_batch_bytes
            )
            if batches:
                out: list[Record] = []
                for tp, recs in batches.items():
                    self.positions_[tp] = recs[-1].offset + 1
                    out.extend(recs)
                return out
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return []
            await self.log_.notifier.wait(min(remaining, self.log_.poll_interval))
