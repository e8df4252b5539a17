"""The dedup index on both backends: what decides a key, resuming from its file after
a restart (reading only what came since), pruning keys outside the window.

Entries are the index's own records (`record`, `nonce_record`) appended to a real
log; nothing stands in for the log.
"""

from __future__ import annotations

import threading
from collections.abc import Awaitable, Sequence
from pathlib import Path
from typing import Any

import pytest

from broker.core.logrecords import Record, TopicSpec
from broker.core.records import IDEMPOTENCY_PREFIX, FirstSeen
from broker.core.topics import Topics
from broker.log.interface import DurableLog
from broker.pipeline.intake import AXIS_DEDUP_SENDER
from broker.state.dedup import DedupIndex
from tests.conftest import LogFactory

DAY = 86_400_000
WINDOW = 30 * DAY
T0 = 1_764_000_000_000
SENDER = "000.00.00.H35"


@pytest.fixture
async def log(make_log: LogFactory) -> DurableLog:
    return await make_log()


@pytest.fixture
async def topic(log: DurableLog, unique_prefix: str) -> str:
    topics = Topics.with_prefix(unique_prefix)
    await log.ensure_topics([TopicSpec(topics.dedup, 3, 1024 * 1024, compacted=True)])
    return topics.dedup


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "data" / "dedup.sqlite"


class Clock:
    def __init__(self, now: int) -> None:
        self.now = now

    def __call__(self) -> int:
        return self.now


class Counted:
    """Counts the records an index's follower applies."""

    def __init__(self, index: DedupIndex) -> None:
        self.records = 0
        apply = index.follower.apply

        def counting(records: Sequence[Record]) -> Awaitable[None] | None:
            self.records += len(records)
            return apply(records)

        index.follower.apply = counting


def first(at: int, msg: str, *, committed: bool = True) -> FirstSeen:
    return FirstSeen(at, msg, f"sha-{msg}", committed=committed)


async def started(log: DurableLog, topic: str, path: Path | None, clock: Clock) -> DedupIndex:
    index = DedupIndex(log, topic, WINDOW, path, clock=clock)
    await index.follower.start()
    return index


async def stopped(index: DedupIndex) -> None:
    await index.follower.stop()
    index.close()


@pytest.mark.parametrize("on_disk", [True, False], ids=["file", "memory"])
async def test_a_committed_entry_replaces_a_claim_and_the_first_one_stays(
    log: DurableLog, topic: str, path: Path, on_disk: bool
) -> None:
    writer = DedupIndex(log, topic, WINDOW, None)
    key = (SENDER, "12/UBND")
    await log.append([writer.record(key, first(T0, "claim", committed=False))])
    index = await started(log, topic, path if on_disk else None, Clock(T0))
    try:
        assert index.lookup(*key) == first(T0, "claim", committed=False)
        assert index.committed(*key) is None  # a claim decides nothing in the pipeline
        # One at a time: a compacted topic may hand a late reader the last value only.
        for entry in (
            first(T0 + 1, "one"),
            first(T0 + 2, "two"),  # not the first
            first(T0 + 3, "late", committed=False),
        ):
            await log.append([writer.record(key, entry)])
            await index.follower.caught_up()
        assert index.committed(*key) == first(T0 + 1, "one")
        assert index.lookup(*key) == first(T0 + 1, "one")
        assert index.committed_many([key, (SENDER, "other")]) == {key: first(T0 + 1, "one")}
    finally:
        await stopped(index)


async def test_what_this_instance_remembered_counts_before_the_topic_says_it(
    log: DurableLog, topic: str, path: Path
) -> None:
    """The pipeline remembers its commit at once; the claim the follower applies
    later (it came first in the topic) does not hide it."""
    index = await started(log, topic, path, Clock(T0))
    key = (SENDER, "13/UBND")
    try:
        claim, committed = first(T0, "m1", committed=False), first(T0, "m1")
        index.remember([key], committed)
        assert index.committed(*key) == committed
        await log.append([index.record(key, claim)])
        await index.follower.caught_up()
        assert index.committed(*key) == committed
        assert index.committed_many([key]) == {key: committed}
        await log.append([index.record(key, committed)])
        await index.follower.caught_up()
        assert index.recent == {}  # the store has it: nothing kept in memory
        assert index.committed(*key) == committed
    finally:
        await stopped(index)


async def test_nonces_are_seen_from_the_topic_and_from_this_instance(
    log: DurableLog, topic: str, path: Path
) -> None:
    index = await started(log, topic, path, Clock(T0))
    try:
        await log.append([index.nonce_record("sys-1", "n1", T0)])
        assert index.nonce_seen("sys-1", "n1", T0 - 1000)  # its own, before it is followed
        other = await started(log, topic, None, Clock(T0))
        try:
            assert other.nonce_seen("sys-1", "n1", T0 - 1000)
            assert not other.nonce_seen("sys-1", "n1", T0 + 1)  # outside the caller's window
            assert not other.nonce_seen("sys-1", "n2", 0)
        finally:
            await stopped(other)
    finally:
        await stopped(index)


async def test_a_restart_resumes_from_its_file_and_reads_only_what_came_since(
    log: DurableLog, topic: str, path: Path
) -> None:
    clock = Clock(T0)
    writer = DedupIndex(log, topic, WINDOW, None)
    old = [(SENDER, f"{i}/UBND") for i in range(50)]
    await log.append([writer.record(k, first(T0, f"old-{k[1]}")) for k in old])
    index = await started(log, topic, path, clock)
    assert index.committed(*old[0]) is not None
    await stopped(index)

    new = [(SENDER, f"{i}/SNV") for i in range(7)]
    await log.append([writer.record(k, first(T0, f"new-{k[1]}")) for k in new])
    again = DedupIndex(log, topic, WINDOW, path, clock=clock)
    counted = Counted(again)
    await again.follower.start()
    try:
        assert counted.records == len(new)  # not the 50 it had applied before
        assert all(again.committed(*k) is not None for k in old + new)
        assert again.count() == len(old) + len(new)
    finally:
        await stopped(again)

    fresh = DedupIndex(log, topic, WINDOW, path.with_name("other.sqlite"), clock=clock)
    counted = Counted(fresh)
    await fresh.follower.start()
    try:
        assert counted.records == len(old) + len(new)  # a new file reads the whole topic
    finally:
        await stopped(fresh)


async def test_keys_outside_the_window_are_pruned_but_lasting_keys_stay(
    log: DurableLog, topic: str, path: Path
) -> None:
    clock = Clock(T0)
    index = await started(log, topic, path, clock)
    document = (SENDER, "14/UBND")
    recent = (SENDER, "15/UBND")
    lasting = [
        (f"{IDEMPOTENCY_PREFIX}{SENDER}", "key-1"),
        (AXIS_DEDUP_SENDER, "axis-doc-1"),
        ("@replay", "rejected:0:12"),
    ]
    await log.append([index.record(k, first(T0, "m-old")) for k in [document, *lasting]])
    await log.append([index.record(recent, first(T0 + 20 * DAY, "m-new"))])
    await log.append([index.nonce_record("sys-1", "n1", T0)])
    await index.follower.caught_up()
    await stopped(index)

    clock.now = T0 + WINDOW + 1  # the first document and the nonce are outside the window
    later = await started(log, topic, path, clock)
    try:
        assert later.committed(*document) is None
        assert later.committed(*recent) == first(T0 + 20 * DAY, "m-new")
        assert all(later.committed(*k) == first(T0, "m-old") for k in lasting)
        assert not later.nonce_seen("sys-1", "n1", 0)
        assert later.count() == 1 + len(lasting)
    finally:
        await stopped(later)


@pytest.fixture
def garbled(path: Path) -> Path:
    path.parent.mkdir(parents=True)
    path.write_bytes(b"not a database" * 100)
    return path


async def test_an_unreadable_file_is_read_again_from_the_topic(
    log: DurableLog, topic: str, garbled: Path
) -> None:
    writer = DedupIndex(log, topic, WINDOW, None)
    key = (SENDER, "16/UBND")
    await log.append([writer.record(key, first(T0, "m1"))])
    path = garbled
    index = await started(log, topic, path, Clock(T0))
    try:
        assert index.committed(*key) == first(T0, "m1")
    finally:
        await stopped(index)


async def test_the_store_is_written_off_the_event_loop(
    log: DurableLog, topic: str, path: Path
) -> None:
    """A write transaction may take a while on a busy disk: not on the loop."""
    index = await started(log, topic, path, Clock(T0))
    store = index.store
    assert store is not None
    threads = []
    apply = store.apply

    def spying(*args: Any) -> None:
        threads.append(threading.current_thread())
        apply(*args)

    store.apply = spying  # type: ignore[method-assign]
    try:
        await log.append([index.record((SENDER, "17/UBND"), first(T0, "m1"))])
        await index.follower.caught_up()
        assert threads and threading.main_thread() not in threads
        assert index.committed(SENDER, "17/UBND") == first(T0, "m1")
    finally:
        await stopped(index)
