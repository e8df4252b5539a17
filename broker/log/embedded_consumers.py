"""The embedded backend's readers: consumer-group members (heartbeats, round-robin
assignment, epochs checked at commit so that a member that lost a partition is
fenced) and tailers."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import time
import uuid
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import structlog

from broker.core.errors import BackendUnavailable, Fenced, RecordTooLarge, StorageFull
from broker.core.logrecords import NewRecord, Position, Record, TopicPartition
from broker.log.embedded_store import (
    now_ms,
    rotated,
)
from broker.log.interface import BeforeCommitHook, GroupConsumer, Tailer

if TYPE_CHECKING:
    from broker.log.embedded import EmbeddedLog

log = structlog.get_logger(__name__)


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
    _generations: dict[TopicPartition, int] = field(default_factory=dict)
    _last_generation: int = 0
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
            except StorageFull as exc:  # the log warned once for the episode
                log.debug("group heartbeat failed", group=self.group, error=str(exc))
            except BackendUnavailable as exc:
                log.warning("group heartbeat failed", group=self.group, error=str(exc))

    def _live_members(self, conn: sqlite3.Connection) -> list[str]:
        """Heartbeat, drop the members whose heartbeat is older than the session timeout
        (their partitions lose their owner), and list the live ones."""
        grp, me, now = self.group, self.member_id, now_ms()
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
        return sorted(
            r[0]
            for r in conn.execute(
                "SELECT member_id FROM group_members WHERE grp = ?", (grp,)
            ).fetchall()
        )

    def _reconcile_txn(
        self, conn: sqlite3.Connection, keep: frozenset[TopicPartition]
    ) -> _Assignment:
        grp, me = self.group, self.member_id
        live = self._live_members(conn)
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
                    self._restart(tp)

    def _restart(self, tp: TopicPartition) -> None:
        """Read tp again from its committed offset, in a new generation."""
        self._positions[tp] = self._committed[tp]
        self._last_generation += 1
        self._generations[tp] = self._last_generation

    def _drop(self, tp: TopicPartition) -> None:
        self._owned.pop(tp, None)
        self._generations.pop(tp, None)
        self._positions.pop(tp, None)
        self._committed.pop(tp, None)
        self._inflight.discard(tp)
        self._paused.discard(tp)

    def assignment(self) -> frozenset[TopicPartition]:
        return frozenset(self._owned)

    def generation(self, tp: TopicPartition) -> int | None:
        return self._generations.get(tp)

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
        generation: int | None = None,
        before_commit: BeforeCommitHook | None = None,
    ) -> list[Position]:
        epoch = self._owned.get(tp)
        if epoch is None:
            raise Fenced(f"{tp} is not assigned to this member")
        if generation is not None and generation != self._generations.get(tp):
            raise Fenced(f"{tp}: polled in generation {generation}, read again since")
        await self.log_._check_topics(outputs)
        grp, me, now = self.group, self.member_id, now_ms()

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
        except RecordTooLarge:
            raise  # nothing written, nothing to read again: the caller commits without it
        except BaseException:
            await self.rewind(tp)
            raise
        self._committed[tp] = next_offset
        self._inflight.discard(tp)
        return positions

    async def rewind(self, tp: TopicPartition) -> None:
        if tp in self._owned:
            self._restart(tp)
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
