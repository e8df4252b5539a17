"""Group commit: callers waiting while a transaction is in flight share the next one,
each getting its own positions; a too-large group is appended again entry by entry;
any other failure reaches every caller of its group."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest

from broker.core.errors import BackendUnavailable, RecordTooLarge
from broker.core.logrecords import NewRecord, Position
from broker.log.group_commit import GroupCommit


class Log:
    """Transactions as calls: each takes a moment; offsets count up per topic."""

    def __init__(self, too_large: bytes = b"", fail: bool = False) -> None:
        self.transactions: list[list[bytes]] = []
        self.offset = 0
        self.too_large = too_large
        self.fail = fail

    async def commit(self, records: Sequence[NewRecord]) -> list[Position]:
        await asyncio.sleep(0.01)
        if self.fail:
            raise BackendUnavailable("down")
        if any(r.value == self.too_large for r in records):
            raise RecordTooLarge("too large")
        self.transactions.append([r.value or b"" for r in records])
        out = [Position("t", 0, self.offset + i) for i in range(len(records))]
        self.offset += len(records)
        return out


def recs(*values: bytes) -> list[NewRecord]:
    return [NewRecord("t", v) for v in values]


async def test_callers_arriving_meanwhile_share_one_transaction() -> None:
    log = Log()
    group = GroupCommit(log.commit)
    first = asyncio.create_task(group.append(recs(b"a1", b"a2")))
    await asyncio.sleep(0)  # the first transaction is on its way
    rest = [asyncio.create_task(group.append(recs(f"{i}x".encode(), f"{i}y".encode())))
            for i in range(5)]  # fmt: skip
    got = [await first, *[await t for t in rest]]
    assert log.transactions[0] == [b"a1", b"a2"]
    assert len(log.transactions) == 2  # the five waiting ones together
    assert [p.offset for p in got[0]] == [0, 1]
    for i, positions in enumerate(got[1:]):
        assert [p.offset for p in positions] == [2 + 2 * i, 3 + 2 * i]


async def test_a_group_too_large_is_appended_entry_by_entry() -> None:
    log = Log(too_large=b"big")
    group = GroupCommit(log.commit)
    blocker = asyncio.create_task(group.append(recs(b"first")))
    await asyncio.sleep(0)
    ok = asyncio.create_task(group.append(recs(b"ok1", b"ok2")))
    big = asyncio.create_task(group.append(recs(b"big", b"claim")))
    ok2 = asyncio.create_task(group.append(recs(b"ok3")))
    await blocker
    assert [p.offset for p in await ok] == [1, 2]
    with pytest.raises(RecordTooLarge):
        await big
    assert [p.offset for p in await ok2] == [3]
    assert [b"claim"] not in log.transactions and all(b"big" not in t for t in log.transactions)


async def test_any_other_failure_reaches_each_caller_of_the_group() -> None:
    log = Log(fail=True)
    group = GroupCommit(log.commit)
    tasks = [asyncio.create_task(group.append(recs(b"x"))) for _ in range(3)]
    for t in tasks:
        with pytest.raises(BackendUnavailable):
            await t


async def test_a_caller_that_gave_up_before_its_turn_is_left_out() -> None:
    log = Log()
    group = GroupCommit(log.commit)
    first = asyncio.create_task(group.append(recs(b"a")))
    await asyncio.sleep(0)
    gone = asyncio.create_task(group.append(recs(b"gone")))
    kept = asyncio.create_task(group.append(recs(b"kept")))
    await asyncio.sleep(0)
    gone.cancel()
    await first
    assert [p.offset for p in await kept] == [1]
    assert log.transactions == [[b"a"], [b"kept"]]


async def test_groups_are_bounded() -> None:
    log = Log()
    group = GroupCommit(log.commit, max_entries=2)
    first = asyncio.create_task(group.append(recs(b"a")))
    await asyncio.sleep(0)
    rest = [asyncio.create_task(group.append(recs(bytes([65 + i])))) for i in range(5)]
    await first
    await asyncio.gather(*rest)
    assert [len(t) for t in log.transactions] == [1, 2, 2, 1]
