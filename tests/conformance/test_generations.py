"""Conformance of the durable log: generations of a member's reading of a partition.

A member that polls ahead of its commits (the pipeline queues up to 16 batches per
partition) must never commit records polled before its reading of the partition
restarted from the committed offset (a rewind, a partition given back to it by a
rebalance): they are polled again, and would be processed twice. Same tests on
both backends.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence

import pytest

from broker.core.errors import Fenced, RecordTooLarge
from broker.core.logrecords import NewRecord, Record, TopicPartition
from broker.log.interface import GroupConsumer
from tests.conformance.test_log_conformance import MiB, first_batch, make_topics, tail_all
from tests.conftest import LogFactory

pytestmark = pytest.mark.usefixtures("no_blocking_loop")

Polled = dict[TopicPartition, list[tuple[int | None, Record]]]


async def poll_into(consumer: GroupConsumer, got: Polled, timeout: float = 0.2) -> None:
    """One poll; each record kept with the generation it was polled in."""
    for tp, recs in (await consumer.poll(timeout, 100)).items():
        generation = consumer.generation(tp)
        got.setdefault(tp, []).extend((generation, r) for r in recs)


async def until(condition: object, *members: GroupConsumer, got: Polled, timeout: float = 30):
    """Poll every member until `condition()` holds (rebalances need members polling)."""
    deadline = time.monotonic() + timeout
    while not condition() and time.monotonic() < deadline:  # type: ignore[operator]
        await asyncio.gather(*(poll_into(m, got if m is members[0] else {}) for m in members))
    assert condition(), "the group did not settle in time"  # type: ignore[operator]


def values(records: Sequence[Record]) -> list[bytes]:
    return [r.value or b"" for r in records]


class TestGenerations:
    async def test_a_rewind_refuses_what_was_polled_before_it(
        self, make_log: LogFactory, unique_prefix: str
    ) -> None:
        """After a rewind the partition is in a new generation: a commit of records
        polled before it is refused (Fenced) and writes nothing; they come back and
        are committed once."""
        log = await make_log()
        src, dst = await make_topics(log, unique_prefix, "in", "out", partitions=1)
        await log.append([NewRecord(src, f"r{i}".encode()) for i in range(4)])
        tp = TopicPartition(src, 0)
        async with log.group_consumer(f"{unique_prefix}g", [src]) as member:
            batch = await first_batch(member, tp, 10)
            old = member.generation(tp)
            assert old is not None
            await member.rewind(tp)
            assert member.generation(tp) not in (None, old)
            with pytest.raises(Fenced):
                await member.commit(
                    tp, batch[-1].offset + 1, [NewRecord(dst, b"stale")], generation=old
                )
            again = await first_batch(member, tp, 10)
            assert values(again) == values(batch)
            await member.commit(
                tp,
                again[-1].offset + 1,
                [NewRecord(dst, b"once")],
                generation=member.generation(tp),
            )
        assert values(await tail_all(log, dst, 1)) == [b"once"]

    async def test_an_output_too_large_keeps_the_position_and_the_generation(
        self, make_log: LogFactory, unique_prefix: str
    ) -> None:
        """RecordTooLarge writes nothing and restarts nothing: the same generation
        commits the batch without the large output, and the batch is not polled
        again."""
        log = await make_log(max_record_bytes=64 * 1024)
        src, dst = await make_topics(
            log, unique_prefix, "in", "out", partitions=1, max_bytes=64 * 1024
        )
        await log.append([NewRecord(src, f"r{i}".encode()) for i in range(3)])
        tp = TopicPartition(src, 0)
        async with log.group_consumer(f"{unique_prefix}g", [src]) as member:
            batch = await first_batch(member, tp, 10)
            generation = member.generation(tp)
            with pytest.raises(RecordTooLarge):
                await member.commit(
                    tp,
                    batch[-1].offset + 1,
                    [NewRecord(dst, b"ok"), NewRecord(dst, b"x" * MiB)],
                    generation=generation,
                )
            assert member.generation(tp) == generation
            await member.commit(
                tp, batch[-1].offset + 1, [NewRecord(dst, b"ok")], generation=generation
            )
            assert await member.poll(1.0, 10) == {}
        assert values(await tail_all(log, dst, 1)) == [b"ok"]

    async def test_a_partition_given_back_refuses_what_was_polled_before(
        self, make_log: LogFactory, unique_prefix: str
    ) -> None:
        """A member polls ahead, a second member joins and takes a partition, then
        leaves and the partition comes back: records polled before it left cannot be
        committed; read again from the committed offset, they are committed once."""
        log = await make_log()
        src, dst = await make_topics(log, unique_prefix, "in", "out", partitions=2)
        await log.append(
            [NewRecord(src, f"p{i % 2}-{i // 2}".encode(), partition=i % 2) for i in range(20)]
        )
        tps = [TopicPartition(src, 0), TopicPartition(src, 1)]
        group = f"{unique_prefix}g"
        got: Polled = {}
        async with log.group_consumer(group, [src]) as a:
            await until(lambda: all(len(got.get(tp, ())) == 10 for tp in tps), a, got=got)
            before = {tp: got[tp][0][0] for tp in tps}
            for tp in tps:  # the first half committed, the second still in hand
                await a.commit(tp, got[tp][4][1].offset + 1, generation=before[tp])
            async with log.group_consumer(group, [src]) as b:
                await until(lambda: len(a.assignment()) == 1 and b.assignment(), a, b, got=got)
                (moved,) = set(tps) - a.assignment()
            await until(lambda: a.assignment() == set(tps), a, got=got)
            assert a.generation(moved) != before[moved]
            in_hand = [r for g, r in got[moved] if g == before[moved]][5:]
            with pytest.raises(Fenced):
                await a.commit(
                    moved,
                    in_hand[-1].offset + 1,
                    [NewRecord(dst, b"stale")],
                    generation=before[moved],
                )
            current = a.generation(moved)
            await until(lambda: len([g for g, _ in got[moved] if g == current]) >= 5, a, got=got)
            again = [r for g, r in got[moved] if g == current]
            assert values(again) == values(in_hand)
            await a.commit(
                moved, again[-1].offset + 1, [NewRecord(dst, b"once")], generation=current
            )
        assert values(await tail_all(log, dst, 1)) == [b"once"]
