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

A full disk (or a file that may not grow) fails writes with `StorageFull`, a
`BackendUnavailable` with a Retry-After: nothing of them is kept, and they work
again once there is room, without a restart. Meanwhile `ping` (readiness) fails
naming the full disk; it tries a small write now and then, so that readiness
comes back even when nothing else writes.
"""

from __future__ import annotations

import asyncio
import itertools
import sqlite3
import threading
import time
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import structlog

from broker.core.errors import BackendUnavailable, RecordTooLarge, StorageFull
from broker.core.logrecords import NewRecord, Position, Record, TopicPartition, TopicSpec
from broker.log.embedded_consumers import EmbeddedGroupConsumer, EmbeddedTailer
from broker.log.embedded_store import (
    Notifier,
    TopicMeta,
    Writer,
    connect,
    decode_headers,
    encode_headers,
    now_ms,
    partition_for_key,
)
from broker.log.interface import BeforeCommitHook, DurableLog, GroupConsumer, Tailer, TopicSize
from broker.log.sqlite_space import is_full, storage_full

log = structlog.get_logger(__name__)

PROBE_BYTES = 64 * 1024  # what a readiness probe writes while the disk is full
PROBE_INTERVAL = 1.0  # seconds between two probes


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
        self._writer: Writer | None = None
        self._readers: ThreadPoolExecutor | None = None
        self._local = threading.local()
        self._reader_conns: list[sqlite3.Connection] = []
        self._reader_lock = threading.Lock()
        self._topics: dict[str, TopicMeta] = {}
        self._round_robin: dict[str, itertools.count[int]] = {}
        self._probed_at = 0.0
        self.notifier = Notifier()

    # -- lifecycle

    async def start(self) -> None:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise BackendUnavailable(f"cannot create the folder of {self.path}: {exc}") from exc
        loop = asyncio.get_running_loop()
        self._writer = Writer(self.path, self._synchronous, loop, self.notifier.notify)
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
            conn = connect(self.path, self._synchronous)
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
            if is_full(exc):
                raise storage_full(self.path, exc) from exc
            raise BackendUnavailable(f"SQLite read failed: {exc}") from exc

    async def _write(
        self,
        fn: Callable[[sqlite3.Connection], Any],
        *,
        before_commit: BeforeCommitHook | None = None,
        appends: bool = False,
        probe: bool = False,
    ) -> Any:
        if self._writer is None:
            raise BackendUnavailable("the embedded log is not started")
        return await self._writer.submit(
            fn, before_commit=before_commit, appends=appends, probe=probe
        )

    # -- topics

    async def _load_topics(self) -> None:
        rows = await self._read(
            lambda c: c.execute(
                "SELECT name, partitions, compacted, max_record_bytes FROM topics"
            ).fetchall()
        )
        self._topics = {r[0]: TopicMeta(r[1], bool(r[2]), r[3]) for r in rows}

    async def _meta(self, topic: str) -> TopicMeta:
        if self._readers is None:  # closed: a tailer starting now must not start
            raise BackendUnavailable("the embedded log is not started")
        if topic not in self._topics:
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
        now = now_ms()
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
        lagging: bool = False,  # the embedded log reads what is there either way
    ) -> Tailer:
        only_ = frozenset(only) if only is not None else None
        return EmbeddedTailer(self, list(topics), dict(positions), only=only_)

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

    async def topic_sizes(self) -> dict[str, TopicSize]:
        """From the counters the file's triggers keep (schema 2): no scan of records."""
        rows = await self._read(
            lambda c: c.execute("SELECT topic, records, bytes FROM topic_sizes").fetchall()
        )
        return {topic: TopicSize(n, size) for topic, n, size in rows}

    # -- retention

    async def start_offsets(self, topics: Sequence[str]) -> dict[TopicPartition, int]:
        tps = await self.partitions_of(topics)

        def read(conn: sqlite3.Connection) -> dict[TopicPartition, int]:
            rows = conn.execute("SELECT topic, partition, start_offset FROM log_starts").fetchall()
            starts = {TopicPartition(t, p): n for t, p, n in rows}
            return {tp: starts.get(tp, 0) for tp in tps}

        return await self._read(read)

    async def offsets_for_time(
        self, topics: Sequence[str], timestamp_ms: int
    ) -> dict[TopicPartition, int]:
        ends = await self.end_offsets(topics)

        def read(conn: sqlite3.Connection) -> dict[TopicPartition, int]:
            out = {}
            for tp, end in ends.items():
                row = conn.execute(
                    "SELECT MIN(offset) FROM records WHERE topic = ? AND partition = ? AND ts >= ?",
                    (tp.topic, tp.partition, timestamp_ms),
                ).fetchone()
                out[tp] = end if row[0] is None else row[0]
            return out

        return await self._read(read)

    async def committed_offsets(
        self, group: str, topics: Sequence[str]
    ) -> dict[TopicPartition, int]:
        tps = await self.partitions_of(topics)

        def read(conn: sqlite3.Connection) -> dict[TopicPartition, int]:
            rows = conn.execute(
                "SELECT topic, partition, next_offset FROM group_offsets WHERE grp = ?", (group,)
            ).fetchall()
            done = {TopicPartition(t, p): n for t, p, n in rows}
            return {tp: done.get(tp, 0) for tp in tps}

        return await self._read(read)

    async def delete_before(
        self, offsets: Mapping[TopicPartition, int]
    ) -> dict[TopicPartition, int]:
        """Rows go in chunks (each its own short write, so that appends are not held
        up), then the freed pages go back to the file system a chunk at a time."""
        ends = await self.end_offsets(sorted({tp.topic for tp in offsets}))
        for tp, offset in offsets.items():
            if offset > ends.get(tp, 0):
                raise BackendUnavailable(
                    f"cannot delete {tp} below {offset}: it ends at {ends[tp]}"
                )
            while await self._write(lambda c, tp=tp, offset=offset: _delete_chunk(c, tp, offset)):
                pass
        for _ in range(MAX_VACUUM_CHUNKS):
            if not await self._write(_vacuum_chunk):
                break
        return {
            tp: v
            for tp, v in (await self.start_offsets(sorted({tp.topic for tp in offsets}))).items()
            if tp in offsets
        }

    async def space(self) -> dict[str, int]:
        """The file's pages: in use and free (what retention could still give back)."""
        return await self._read(_space)

    async def ping(self) -> None:
        """Reads work; and writes, unless the last ones failed for lack of room and a
        probe (at most one a second) still does."""
        await self._read(lambda c: c.execute("SELECT 1").fetchone())
        full = self._writer.space.problem if self._writer is not None else None
        if full is None:
            return
        if time.monotonic() - self._probed_at < PROBE_INTERVAL:
            raise StorageFull(str(full), retry_after=full.retry_after)
        self._probed_at = time.monotonic()
        blob = bytes(PROBE_BYTES)
        await self._write(
            lambda c: c.execute(
                "INSERT OR REPLACE INTO meta(key, value) VALUES ('space_probe', ?)", (blob,)
            ),
            probe=True,
        )


DELETE_CHUNK = 2000  # rows removed per write
VACUUM_CHUNK = 2000  # pages given back per write
MAX_VACUUM_CHUNKS = 10_000  # per prune (80 GB of 4 KiB pages); the next prune goes on


def _delete_chunk(conn: sqlite3.Connection, tp: TopicPartition, offset: int) -> bool:
    """Remove up to DELETE_CHUNK rows of `tp` below `offset` and move its start there
    (never back); whether rows are left to remove."""
    row = conn.execute(
        "SELECT start_offset FROM log_starts WHERE topic = ? AND partition = ?",
        (tp.topic, tp.partition),
    ).fetchone()
    if row is not None and row[0] >= offset:
        return False
    gone = conn.execute(
        "DELETE FROM records WHERE id IN (SELECT id FROM records WHERE topic = ? AND "
        "partition = ? AND offset < ? ORDER BY offset LIMIT ?)",
        (tp.topic, tp.partition, offset, DELETE_CHUNK),
    ).rowcount
    conn.execute(
        "DELETE FROM latest_keys WHERE topic = ? AND partition = ? AND offset < ?",
        (tp.topic, tp.partition, offset),
    )
    if gone < DELETE_CHUNK:
        conn.execute(
            "INSERT OR REPLACE INTO log_starts VALUES (?, ?, ?)", (tp.topic, tp.partition, offset)
        )
        return False
    return True


def _vacuum_chunk(conn: sqlite3.Connection) -> bool:
    """Give up to VACUUM_CHUNK free pages back (a file made before auto_vacuum was set
    only reuses them); whether free pages are left."""
    if conn.execute("PRAGMA auto_vacuum").fetchone()[0] != 2:  # 2 = incremental
        return False
    # Python's sqlite3 steps a PRAGMA once, and one step of incremental_vacuum gives
    # back one page (executescript would step it to the end, but commits first)
    free = conn.execute("PRAGMA freelist_count").fetchone()[0]
    for _ in range(min(free, VACUUM_CHUNK)):
        conn.execute("PRAGMA incremental_vacuum")
    return bool(conn.execute("PRAGMA freelist_count").fetchone()[0])


def _space(conn: sqlite3.Connection) -> dict[str, int]:
    return {
        "page_size": conn.execute("PRAGMA page_size").fetchone()[0],
        "pages": conn.execute("PRAGMA page_count").fetchone()[0],
        "free_pages": conn.execute("PRAGMA freelist_count").fetchone()[0],
        "auto_vacuum": conn.execute("PRAGMA auto_vacuum").fetchone()[0],
    }
