"""Conformance of the durable log: the same tests on the embedded and the Kafka backend.

The Kafka runs use the real broker the suite starts (tests/kafka_broker.py).
"""

from __future__ import annotations

import asyncio
import gc
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import pytest

from broker.core.errors import BackendUnavailable, RecordTooLarge
from broker.core.logrecords import NewRecord, Record, TopicPartition, TopicSpec
from broker.log.interface import DurableLog, GroupConsumer
from tests.conftest import LogFactory

pytestmark = pytest.mark.usefixtures("no_blocking_loop")

MiB = 1024 * 1024


async def make_topics(
    log: DurableLog, prefix: str, *names: str, partitions: int = 2, max_bytes: int = MiB
) -> list[str]:
    topics = [f"{prefix}{n}" for n in names]
    await log.ensure_topics([TopicSpec(t, partitions, max_bytes) for t in topics])
    return topics


async def tail_all(log: DurableLog, topic: str, expect: int, timeout: float = 20) -> list[Record]:
    """Read a topic from the start until `expect` records arrived (or time is up)."""
    out: list[Record] = []
    async with log.tailer([topic], {}) as tailer:
        deadline = time.monotonic() + timeout
        while len(out) < expect and time.monotonic() < deadline:
            out.extend(await tailer.poll(0.5, 1000))
        if expect == 0:
            out.extend(await tailer.poll(1.0, 1000))
    return out


async def consume(
    consumer: GroupConsumer,
    *,
    until: int,
    timeout: float = 30,
    out_topic: str | None = None,
) -> list[Record]:
    """Poll and commit (copying to out_topic if given) until `until` records were seen."""
    seen: list[Record] = []
    deadline = time.monotonic() + timeout
    while len(seen) < until and time.monotonic() < deadline:
        batches = await consumer.poll(0.5, 100)
        for tp, recs in batches.items():
            outputs = [NewRecord(out_topic, r.value, key=r.key) for r in recs] if out_topic else []
            await consumer.commit(tp, recs[-1].offset + 1, outputs)
            seen.extend(recs)
    return seen


async def first_batch(
    consumer: GroupConsumer, tp: TopicPartition, max_records: int, timeout: float = 30
) -> Sequence[Record]:
    """The first records of `tp` a new member is handed (once it owns the partition)."""
    deadline = time.monotonic() + timeout
    batch: Sequence[Record] = []
    while not batch and time.monotonic() < deadline:
        batch = (await consumer.poll(0.5, max_records)).get(tp, [])
    return batch


class TestAppendAndRead:
    async def test_append_returns_positions_and_records_read_back(
        self, make_log: LogFactory, unique_prefix: str
    ) -> None:
        """Appended records come back with key, value and headers intact."""
        log = await make_log()
        (topic,) = await make_topics(log, unique_prefix, "in")
        records = [
            NewRecord(
                topic,
                f"value-{i}".encode(),
                key=f"k{i % 3}".encode(),
                headers=(("message-id", f"m{i}".encode()), ("bin", bytes([0, 255, i]))),
            )
            for i in range(12)
        ]
        positions = await log.append(records)
        assert len(positions) == 12
        got = await tail_all(log, topic, 12)
        assert sorted(r.value for r in got) == sorted(r.value for r in records)
        by_value = {r.value: r for r in got}
        for rec, pos in zip(records, positions, strict=True):
            back = by_value[rec.value]
            assert (back.partition, back.offset) == (pos.partition, pos.offset)
            assert back.key == rec.key
            assert back.header("message-id") == rec.headers[0][1]
            assert back.header("bin") == rec.headers[1][1]

    async def test_an_empty_topic_reads_to_its_end(
        self, make_log: LogFactory, unique_prefix: str
    ) -> None:
        """Reading to the end of an empty topic returns at once, cleanly (a tailer
        stopped right after it started)."""
        from broker.views.audit import read_all

        log = await make_log()
        (topic,) = await make_topics(log, unique_prefix, "empty")
        for _ in range(3):
            assert await read_all(log, topic) == []

    async def test_a_tailer_that_cannot_start_leaves_nothing_open(
        self, make_log: LogFactory, unique_prefix: str
    ) -> None:
        """A view starting its tailer while the daemon closes the log: the start fails
        with BackendUnavailable and closes what it opened (a Kafka consumer it left to
        the garbage collector failed a later test with an "Unclosed AIOKafkaConsumer"
        warning)."""
        log = await make_log()
        (topic,) = await make_topics(log, unique_prefix, "in")
        tailer = log.tailer([topic], {})
        await log.close()
        with pytest.raises(BackendUnavailable):
            await tailer.start()
        del tailer  # no close(): a failed start must not need one
        gc.collect()  # an unclosed consumer warns here; the suite turns warnings into errors

    async def test_same_key_same_partition_in_order(
        self, make_log: LogFactory, unique_prefix: str
    ) -> None:
        """Records with one key land in one partition, in append order."""
        log = await make_log()
        (topic,) = await make_topics(log, unique_prefix, "in", partitions=4)
        positions = []
        for i in range(10):
            positions += await log.append([NewRecord(topic, str(i).encode(), key=b"agency-1")])
        assert len({p.partition for p in positions}) == 1
        offsets = [p.offset for p in positions]
        assert offsets == sorted(offsets)

    async def test_read_at_returns_exact_record_or_none(
        self, make_log: LogFactory, unique_prefix: str
    ) -> None:
        """read_at finds a record by position; a position past the end gives None."""
        log = await make_log()
        (topic,) = await make_topics(log, unique_prefix, "in")
        positions = await log.append(
            [NewRecord(topic, f"v{i}".encode(), partition=1) for i in range(3)]
        )
        rec = await log.read_at(topic, 1, positions[1].offset)
        assert rec is not None and rec.value == b"v1"
        assert await log.read_at(topic, 1, positions[-1].offset + 5) is None
        ends = await log.end_offsets([topic])
        # Offsets need not be dense (Kafka's transaction markers take offsets too).
        assert ends[TopicPartition(topic, 1)] > positions[-1].offset
        assert ends[TopicPartition(topic, 0)] == 0

    async def test_the_end_is_past_what_was_just_appended(
        self, make_log: LogFactory, unique_prefix: str
    ) -> None:
        """Read your own writes: end_offsets right after an append (atomic or single)
        is past its records. Kafka's last stable offset passes a transaction a moment
        after its commit returns; a follower's catch-up that asked for the end at once
        found 0 and read nothing."""
        log = await make_log()
        (topic,) = await make_topics(log, unique_prefix, "in", partitions=1)
        tp = TopicPartition(topic, 0)
        for n in (500, 1, 2):
            positions = await log.append([NewRecord(topic, b"r") for _ in range(n)])
            assert (await log.end_offsets([topic]))[tp] > positions[-1].offset

    async def test_concurrent_reads_each_get_their_record(
        self, make_log: LogFactory, unique_prefix: str
    ) -> None:
        """Many read_at calls at once (fetches of many agencies) each return the record
        they asked for, across partitions, and a transactional append's records too."""
        log = await make_log()
        (topic,) = await make_topics(log, unique_prefix, "in", partitions=2)
        positions = await log.append(
            [NewRecord(topic, f"v{i}".encode(), partition=i % 2) for i in range(30)]
        )
        positions += await log.append([NewRecord(topic, b"single", partition=1)])
        got = await asyncio.gather(*(log.read_at(topic, p.partition, p.offset) for p in positions))
        assert [r.value if r else None for r in got] == [
            *(f"v{i}".encode() for i in range(30)),
            b"single",
        ]

    async def test_multi_record_append_is_atomic_across_topics(
        self, make_log: LogFactory, unique_prefix: str
    ) -> None:
        """One append of records for two topics lands entirely."""
        log = await make_log()
        a, b = await make_topics(log, unique_prefix, "a", "b")
        await log.append([NewRecord(a, b"1"), NewRecord(b, b"2"), NewRecord(a, b"3")])
        assert len(await tail_all(log, a, 2)) == 2
        assert len(await tail_all(log, b, 1)) == 1

    async def test_record_over_the_limit_is_refused(
        self, make_log: LogFactory, unique_prefix: str
    ) -> None:
        """A record larger than the topic allows raises RecordTooLarge; nothing lands."""
        log = await make_log(max_record_bytes=64 * 1024)
        (topic,) = await make_topics(log, unique_prefix, "in", max_bytes=64 * 1024)
        with pytest.raises(RecordTooLarge):
            await log.append([NewRecord(topic, b"x" * (2 * MiB))])
        assert await tail_all(log, topic, 0) == []

    async def test_fifteen_megabyte_record_round_trips(
        self, make_log: LogFactory, unique_prefix: str
    ) -> None:
        """A 15 MB record (an envelope with PDF attachments) is appended, consumed,
        produced transactionally to another topic, and read back byte for byte."""
        limit = 16 * MiB
        log = await make_log(max_record_bytes=limit)
        src, dst = await make_topics(log, unique_prefix, "in", "out", max_bytes=limit)
        payload = os.urandom(15 * MiB)
        (pos,) = await log.append([NewRecord(src, payload, key=b"big")])
        async with log.group_consumer(f"{unique_prefix}g", [src]) as consumer:
            seen = await consume(consumer, until=1, out_topic=dst)
        assert [r.value for r in seen] == [payload]
        (copy,) = await tail_all(log, dst, 1)
        assert copy.value == payload
        direct = await log.read_at(src, pos.partition, pos.offset)
        assert direct is not None and direct.value == payload


class TestConsumerGroups:
    async def test_two_members_share_partitions(
        self, make_log: LogFactory, unique_prefix: str
    ) -> None:
        """Two members of one group split the partitions; every record is
        processed once in all."""
        log = await make_log()
        (topic,) = await make_topics(log, unique_prefix, "in", partitions=4)
        await log.append([NewRecord(topic, str(i).encode(), partition=i % 4) for i in range(80)])
        group = f"{unique_prefix}g"
        async with log.group_consumer(group, [topic]) as a, log.group_consumer(group, [topic]) as b:
            # Let the group settle so that both members hold partitions.
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                if a.assignment() and b.assignment() and len(a.assignment() | b.assignment()) == 4:
                    break
                await asyncio.gather(a.poll(0.2, 1), b.poll(0.2, 1))
                for c in (a, b):
                    for tp in c.assignment():
                        await c.rewind(tp)
            assert a.assignment() and b.assignment(), "both members must own partitions"
            assert not (a.assignment() & b.assignment())
            seen_a, seen_b = await asyncio.gather(
                consume(a, until=40, timeout=10), consume(b, until=40, timeout=10)
            )
        values = [r.value for r in seen_a + seen_b]
        assert sorted(values) == sorted(str(i).encode() for i in range(80))
        assert {r.partition for r in seen_a}.isdisjoint({r.partition for r in seen_b})

    async def test_restart_resumes_from_committed_offsets(
        self, make_log: LogFactory, unique_prefix: str
    ) -> None:
        """A new member of the group starts after what the last one committed."""
        log = await make_log()
        (topic,) = await make_topics(log, unique_prefix, "in", partitions=1)
        await log.append([NewRecord(topic, str(i).encode()) for i in range(10)])
        group = f"{unique_prefix}g"
        async with log.group_consumer(group, [topic]) as first:
            batch = await first_batch(first, TopicPartition(topic, 0), 4)
            assert [r.value for r in batch] == [b"0", b"1", b"2", b"3"]
            await first.commit(TopicPartition(topic, 0), batch[-1].offset + 1)
        async with log.group_consumer(group, [topic]) as second:
            rest = await consume(second, until=6)
        assert [r.value for r in rest] == [str(i).encode() for i in range(4, 10)]

    async def test_a_paused_partition_hands_out_nothing_until_resumed(
        self, make_log: LogFactory, unique_prefix: str
    ) -> None:
        """Backpressure: polling goes on while paused, and resuming continues after the
        last record handed out, nothing skipped."""
        log = await make_log()
        (topic,) = await make_topics(log, unique_prefix, "in", partitions=1)
        await log.append([NewRecord(topic, str(i).encode()) for i in range(10)])
        tp = TopicPartition(topic, 0)
        async with log.group_consumer(f"{unique_prefix}g", [topic]) as member:
            first = await first_batch(member, tp, 3)
            assert [r.value for r in first] == [b"0", b"1", b"2"]
            member.pause(member.assignment())
            for _ in range(3):
                assert await member.poll(0.3, 100) == {}
            member.resume(member.assignment())
            rest = await consume(member, until=7)
        assert [r.value for r in rest] == [str(i).encode() for i in range(3, 10)]

    async def test_rewind_after_a_refused_commit_polls_the_batch_again(
        self, make_log: LogFactory, unique_prefix: str
    ) -> None:
        """A commit refused (an output too large) leaves nothing visible; given up
        (`rewind`), the batch comes back."""
        log = await make_log(max_record_bytes=64 * 1024)
        src, dst = await make_topics(
            log, unique_prefix, "in", "out", partitions=1, max_bytes=64 * 1024
        )
        await log.append([NewRecord(src, b"a"), NewRecord(src, b"b")])
        tp = TopicPartition(src, 0)
        async with log.group_consumer(f"{unique_prefix}g", [src]) as consumer:
            batch = await first_batch(consumer, tp, 10)
            with pytest.raises(RecordTooLarge):
                await consumer.commit(
                    tp, batch[-1].offset + 1, [NewRecord(dst, b"ok"), NewRecord(dst, b"x" * MiB)]
                )
            await consumer.rewind(tp)
            again = await consume(consumer, until=2)
        assert [r.value for r in again] == [b"a", b"b"]
        assert await tail_all(log, dst, 0) == []


CRASH_MEMBER = Path(__file__).with_name("crash_member.py")


class TestAtomicConsumeProduce:
    async def test_crash_between_produce_and_commit_leaves_no_output(
        self,
        backend: str,
        make_log: LogFactory,
        unique_prefix: str,
        tmp_path: Path,
        kafka_bootstrap: str | None,
        kafka_security: dict[str, str],
    ) -> None:
        """A member killed (-9) after writing its outputs but before committing:
        no output is visible, and the next member reads the input again."""
        log = await make_log(session_timeout=2.0)
        src, dst = await make_topics(log, unique_prefix, "in", "out", partitions=1)
        await log.append([NewRecord(src, f"r{i}".encode()) for i in range(5)])
        group = f"{unique_prefix}g"
        args = {
            "backend": backend,
            "group": group,
            "src": src,
            "dst": dst,
            "path": str(tmp_path / "log.sqlite"),
        }
        if kafka_bootstrap is not None:
            args["bootstrap"] = kafka_bootstrap
            args["security"] = kafka_security
        proc = subprocess.Popen(
            [sys.executable, str(CRASH_MEMBER), json.dumps(args)],
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            line = await asyncio.wait_for(asyncio.to_thread(proc.stdout.readline), 60)
            assert line.strip() == "produced-not-committed", line
        finally:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            proc.stdout.close()
        async with log.group_consumer(group, [src]) as successor:
            again = await consume(successor, until=5, out_topic=dst, timeout=60)
        assert [r.value for r in again] == [f"r{i}".encode() for i in range(5)]
        out = await tail_all(log, dst, 5)
        assert sorted(r.value for r in out) == [f"r{i}".encode() for i in range(5)], (
            "only the successor's outputs are visible, each once"
        )
