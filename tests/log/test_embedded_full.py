"""The embedded log on a full store (SQLite's max_page_count standing in for a full
disk; tests/e2e/test_fault_disk_full.py fills a real filesystem): writes fail as
`StorageFull`, a `BackendUnavailable` with a Retry-After, nothing of them is kept,
readiness names the full disk, one warning per episode; once there is room again
everything works without a restart."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from broker.core.errors import BackendUnavailable, StorageFull
from broker.core.logrecords import NewRecord, Record, TopicPartition, TopicSpec
from broker.log import embedded, sqlite_space
from broker.log.embedded import EmbeddedLog
from broker.log.interface import GroupConsumer
from broker.log.sqlite_space import FullDisk, is_full, storage_full
from broker.views.readmodel import transaction
from tests.full_store import limit_pages, sqlite_full_error

pytestmark = pytest.mark.usefixtures("no_blocking_loop")

SRC, DST = "in", "out"
BIG = bytes(range(256)) * 80  # 20 kB: needs pages of its own
WARNING = "embedded log: disk full; writes fail until space is freed"


@pytest.fixture
async def log(tmp_path: Path) -> AsyncIterator[EmbeddedLog]:
    log = EmbeddedLog(tmp_path / "log.sqlite", session_timeout=3.0)
    await log.start()
    await log.ensure_topics([TopicSpec(SRC, 1, 1024**2), TopicSpec(DST, 1, 1024**2)])
    yield log
    await log.close()


async def values(log: EmbeddedLog, topic: str) -> list[bytes | None]:
    ends = await log.end_offsets([topic])
    out: list[Record] = []
    async with log.tailer([topic], {}) as tailer:
        while not await tailer.caught_up(ends):
            out.extend(await tailer.poll(0.5, 1000))
    return [r.value for r in out]


async def first_batch(
    consumer: GroupConsumer, tp: TopicPartition, timeout: float = 20
) -> Sequence[Record]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        batch = (await consumer.poll(0.5, 100)).get(tp)
        if batch:
            return batch
    raise AssertionError("no batch")


def warnings(logs: list[dict]) -> list[str]:
    return [e["event"] for e in logs if e["log_level"] == "warning"]


class TestAppendOnAFullStore:
    async def test_an_append_without_room_is_503_and_kept_nowhere_until_room_returns(
        self, log: EmbeddedLog, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """Every append fails while the file may not grow (retry after a few seconds, the
        problem says why); readiness fails too; one warning for all of it. Room again:
        the next append works, readiness too, and only what was acknowledged is there."""
        monkeypatch.setattr(FullDisk, "SETTLE", 0.0)  # the episode ends at the first write
        await log.append([NewRecord(SRC, b"before")])
        await limit_pages(log, 0)
        with capture_logs() as logs:
            for _ in range(3):
                with pytest.raises(StorageFull, match=r"^disk full: no room to write") as failed:
                    await log.append([NewRecord(SRC, BIG)])
                assert isinstance(failed.value, BackendUnavailable)
                assert failed.value.retry_after and failed.value.code == "backend-unavailable"
            with pytest.raises(StorageFull, match=r"^disk full"):
                await log.ping()
            await limit_pages(log, None)
            await log.append([NewRecord(SRC, BIG), NewRecord(SRC, b"after")])
            await log.ping()
        assert await values(log, SRC) == [b"before", BIG, b"after"]
        assert warnings(logs) == [WARNING]
        assert [e["event"] for e in logs if e["log_level"] == "info"] == [
            "embedded log: writes succeed again"
        ]

    async def test_readiness_comes_back_by_itself_when_nothing_else_writes(
        self, log: EmbeddedLog, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """While full, each readiness check tries a small write (at most one a second);
        once it goes through, the log is ready again without any append."""
        monkeypatch.setattr(embedded, "PROBE_INTERVAL", 0.0)
        await limit_pages(log, 0)
        with pytest.raises(StorageFull):
            await log.append([NewRecord(SRC, BIG)])
        with pytest.raises(StorageFull):
            await log.ping()  # the probe does not fit either
        await limit_pages(log, None)
        await log.ping()
        await log.ping()
        assert await values(log, SRC) == []

    async def test_concurrent_appends_each_land_whole_or_fail_whole(self, log: EmbeddedLog) -> None:
        """Appends that share a transaction with one that does not fit: each either is
        acknowledged and there, or fails with StorageFull and is nowhere."""
        await limit_pages(log, 3)
        payloads = [f"small {i}".encode() for i in range(8)]
        payloads.insert(4, BIG * 4)
        results = await asyncio.gather(
            *(log.append([NewRecord(SRC, p)]) for p in payloads), return_exceptions=True
        )
        assert all(not isinstance(r, BaseException) or isinstance(r, StorageFull) for r in results)
        assert isinstance(results[4], StorageFull)
        acknowledged = [p for p, r in zip(payloads, results, strict=True) if isinstance(r, list)]
        assert await values(log, SRC) == acknowledged


class TestCommitOnAFullStore:
    async def test_a_commit_without_room_rewinds_and_its_batch_commits_once_later(
        self, log: EmbeddedLog
    ) -> None:
        """The pipeline's transaction (outputs + offset) does not fit: nothing of it is
        visible, the partition is read again in a new generation, and once there is
        room the same records commit, their outputs there once."""
        await log.append([NewRecord(SRC, b"a"), NewRecord(SRC, b"b")])
        tp = TopicPartition(SRC, 0)
        async with log.group_consumer("g", [SRC]) as consumer:
            batch = await first_batch(consumer, tp)
            generation = consumer.generation(tp)
            await limit_pages(log, 0)
            with pytest.raises(StorageFull):
                await consumer.commit(
                    tp, batch[-1].offset + 1, [NewRecord(DST, BIG)], generation=generation
                )
            assert consumer.generation(tp) not in (None, generation)
            await limit_pages(log, None)
            again = await first_batch(consumer, tp)
            assert [r.value for r in again] == [b"a", b"b"]
            await consumer.commit(
                tp, again[-1].offset + 1, [NewRecord(DST, BIG)], generation=consumer.generation(tp)
            )
        assert await values(log, DST) == [BIG]


class TestFullDiskErrors:
    def test_sqlite_full_is_told_apart_from_other_failures(self) -> None:
        assert is_full(sqlite_full_error())
        assert not is_full(sqlite3.OperationalError("database or disk is full"))  # no code
        assert not is_full(OSError(28, "No space left on device"))

    def test_a_read_model_transaction_keeps_the_full_disk_error(self, tmp_path: Path) -> None:
        """SQLite rolls the transaction back itself on SQLITE_FULL: the error that
        leaves is that one, not a failed ROLLBACK."""
        conn = sqlite3.connect(tmp_path / "view.sqlite", isolation_level=None)
        conn.execute("CREATE TABLE t(x)")
        conn.execute("INSERT INTO t VALUES (1)")
        conn.execute(f"PRAGMA max_page_count = {conn.execute('PRAGMA page_count').fetchone()[0]}")
        with pytest.raises(sqlite3.OperationalError) as failed, transaction(conn):
            conn.execute("INSERT INTO t VALUES (?)", (BIG,))
        assert is_full(failed.value)
        assert not conn.in_transaction
        conn.close()


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def monotonic(self) -> float:
        return self.now


class TestEpisodes:
    """One warning per episode of a full disk, however its writes come and go."""

    @pytest.fixture
    def clock(self, monkeypatch: pytest.MonkeyPatch) -> Clock:
        clock = Clock()
        monkeypatch.setattr(sqlite_space, "time", clock)
        return clock

    def test_writes_that_fit_at_the_edge_of_a_full_disk_do_not_end_the_episode(
        self, clock: Clock, tmp_path: Path
    ) -> None:
        """A small write that still fits between failures clears readiness for the
        moment, but the episode (and its one warning) goes on until writes have worked
        for a while; a failure after that is a new episode, warned about again."""
        space = FullDisk("embedded log", tmp_path / "log.sqlite")
        full = storage_full(space.path, sqlite_full_error())
        with capture_logs() as logs:
            for _ in range(5):
                space.failed(full)
                assert space.problem is full
                clock.now += 1
                space.wrote()
                assert space.problem is None
                clock.now += 1
            clock.now += FullDisk.SETTLE
            space.wrote()
            clock.now += 3600
            space.failed(full)
        assert [(e["log_level"], e["event"]) for e in logs] == [
            ("warning", WARNING),
            ("info", "embedded log: writes succeed again"),
            ("warning", WARNING),
        ]
        assert logs[1]["failed_writes"] == 5 and logs[1]["full_for_seconds"] == 9.0

    def test_a_quiet_file_still_begins_a_new_episode(self, clock: Clock, tmp_path: Path) -> None:
        """No write between the recovery and a failure long after it: that failure
        begins a new episode (the old one is noted as over first)."""
        space = FullDisk("embedded log", tmp_path / "log.sqlite")
        full = storage_full(space.path, sqlite_full_error())
        with capture_logs() as logs:
            space.failed(full)
            space.wrote()
            clock.now += FullDisk.SETTLE + 1
            space.failed(full)
        assert [e["log_level"] for e in logs] == ["warning", "info", "warning"]
