"""Conformance of what retention needs from the log: start offsets, removing the oldest
records, finding offsets by time, reading a group's committed offsets. Same tests on
both backends (the Kafka runs on the suite's real broker)."""

from __future__ import annotations

import asyncio

import pytest

from broker.core.logrecords import NewRecord, TopicPartition
from tests.conformance.test_log_conformance import make_topics, tail_all
from tests.conftest import LogFactory

pytestmark = pytest.mark.usefixtures("no_blocking_loop")


class TestStartOffsetsAndDeletion:
    async def test_a_new_partition_starts_at_zero(
        self, make_log: LogFactory, unique_prefix: str
    ) -> None:
        """Nothing removed yet: every partition starts at 0, written or not."""
        log = await make_log()
        (topic,) = await make_topics(log, unique_prefix, "in")
        await log.append([NewRecord(topic, b"x", partition=0)])
        assert await log.start_offsets([topic]) == {
            TopicPartition(topic, 0): 0,
            TopicPartition(topic, 1): 0,
        }

    async def test_delete_before_removes_the_oldest_records_only(
        self, make_log: LogFactory, unique_prefix: str
    ) -> None:
        """Records below the offset go; the rest read back as before, a read below the
        start finds nothing, a tailer from 0 starts at the start, the end stays."""
        log = await make_log()
        (topic,) = await make_topics(log, unique_prefix, "in")
        tp0, tp1 = TopicPartition(topic, 0), TopicPartition(topic, 1)
        await log.append([NewRecord(topic, f"a{i}".encode(), partition=0) for i in range(5)])
        await log.append([NewRecord(topic, f"b{i}".encode(), partition=1) for i in range(3)])
        starts = await log.delete_before({tp0: 3})
        assert starts == {tp0: 3}
        assert (await log.start_offsets([topic]))[tp0] == 3
        assert (await log.start_offsets([topic]))[tp1] == 0
        assert (await log.end_offsets([topic]))[tp0] >= 5
        assert await log.read_at(topic, 0, 1) is None
        kept = await log.read_at(topic, 0, 3)
        assert kept is not None and kept.value == b"a3"
        got = await tail_all(log, topic, 5)
        assert sorted(r.value for r in got) == [b"a3", b"a4", b"b0", b"b1", b"b2"]

    async def test_deleting_again_or_lower_changes_nothing(
        self, make_log: LogFactory, unique_prefix: str
    ) -> None:
        """The start never moves back: a lower offset removes nothing."""
        log = await make_log()
        (topic,) = await make_topics(log, unique_prefix, "in")
        tp0 = TopicPartition(topic, 0)
        await log.append([NewRecord(topic, f"a{i}".encode(), partition=0) for i in range(4)])
        await log.delete_before({tp0: 2})
        assert (await log.delete_before({tp0: 1}))[tp0] == 2
        assert (await log.start_offsets([topic]))[tp0] == 2

    async def test_everything_removed_starts_at_the_end_and_appends_go_on(
        self, make_log: LogFactory, unique_prefix: str
    ) -> None:
        """A partition emptied to its end keeps its offsets: the next append follows
        (on Kafka after the transaction marker of the earlier atomic append)."""
        log = await make_log()
        (topic,) = await make_topics(log, unique_prefix, "in")
        tp0 = TopicPartition(topic, 0)
        await log.append([NewRecord(topic, f"a{i}".encode(), partition=0) for i in range(3)])
        assert len(await tail_all(log, topic, 3)) == 3  # committed, markers written
        end = (await log.end_offsets([topic]))[tp0]
        assert end >= 3
        await log.delete_before({tp0: end})
        assert (await log.start_offsets([topic]))[tp0] == end
        (pos,) = await log.append([NewRecord(topic, b"next", partition=0)])
        assert pos.offset >= end
        back = await log.read_at(topic, 0, pos.offset)
        assert back is not None and back.value == b"next"
        assert [r.value for r in await tail_all(log, topic, 1)] == [b"next"]


class TestOffsetsForTimeAndGroups:
    async def test_offsets_for_time_finds_the_first_record_at_or_after(
        self, make_log: LogFactory, unique_prefix: str
    ) -> None:
        """By record timestamp: before every record → 0; after every record → the end."""
        log = await make_log()
        (topic,) = await make_topics(log, unique_prefix, "in", partitions=1)
        tp0 = TopicPartition(topic, 0)
        await log.append([NewRecord(topic, b"old", partition=0)])
        await asyncio.sleep(0.05)
        (mid,) = await log.append([NewRecord(topic, b"new", partition=0)])
        record = await log.read_at(topic, 0, mid.offset)
        assert record is not None
        assert (await log.offsets_for_time([topic], 0))[tp0] == 0
        assert (await log.offsets_for_time([topic], record.timestamp_ms))[tp0] == mid.offset
        assert (await log.offsets_for_time([topic], record.timestamp_ms + 60_000))[tp0] == 2

    async def test_committed_offsets_of_a_group(
        self, make_log: LogFactory, unique_prefix: str
    ) -> None:
        """What a group committed; 0 for partitions (and groups) without a commit."""
        log = await make_log()
        (topic,) = await make_topics(log, unique_prefix, "in", partitions=1)
        tp0 = TopicPartition(topic, 0)
        await log.append([NewRecord(topic, f"a{i}".encode(), partition=0) for i in range(3)])
        group = f"{unique_prefix}g"
        assert await log.committed_offsets(group, [topic]) == {tp0: 0}
        async with log.group_consumer(group, [topic]) as consumer:
            got: list[object] = []
            for _ in range(60):
                batch = (await consumer.poll(0.5, 2)).get(tp0, [])
                if batch:
                    await consumer.commit(tp0, batch[-1].offset + 1)
                    got.extend(batch)
                    break
        assert got
        assert await log.committed_offsets(group, [topic]) == {tp0: len(got)}
