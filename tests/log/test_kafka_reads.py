"""Kafka: reads by position go on side by side. One random-access consumer behind one
lock made every fetch and every offsets query of an instance wait in one line, behind
a read waiting seconds for a transaction to settle (issue 16)."""

from __future__ import annotations

import asyncio
import time
import uuid

import pytest

from broker.config import KafkaSettings
from broker.core.logrecords import NewRecord, TopicPartition, TopicSpec
from broker.log.kafka import SETTLE_WAIT, KafkaLog
from tests.kafka_broker import KafkaBroker

pytestmark = [pytest.mark.kafka, pytest.mark.usefixtures("no_blocking_loop")]


async def started(kafka_broker: KafkaBroker, **settings: int) -> KafkaLog:
    log = KafkaLog(
        KafkaSettings(bootstrap_servers=kafka_broker.bootstrap, **settings),  # type: ignore[arg-type]
        max_record_bytes=1024 * 1024,
        instance=uuid.uuid4().hex,
    )
    await log.start()
    return log


async def test_a_read_waiting_to_settle_holds_back_no_other_read(
    kafka_broker: KafkaBroker, unique_prefix: str
) -> None:
    """While one read waits for a record not (yet) there, a read of a record that is
    there, and the end offsets, answer at once."""
    log = await started(kafka_broker)
    topic = f"{unique_prefix}in"
    try:
        await log.ensure_topics([TopicSpec(topic, 1, 1024 * 1024)])
        (pos,) = await log.append([NewRecord(topic, b"here", partition=0)])
        waiting = asyncio.create_task(log.read_at(topic, 0, pos.offset + 100))
        await asyncio.sleep(0.3)  # it is in its settle wait now
        started_at = time.monotonic()
        rec = await log.read_at(topic, 0, pos.offset)
        ends = await log.end_offsets([topic])
        took = time.monotonic() - started_at
        assert rec is not None and rec.value == b"here"
        assert ends[TopicPartition(topic, 0)] > pos.offset
        assert not waiting.done(), f"the other read took {took:.2f} s"
        assert await waiting is None
    finally:
        await log.close()


async def test_many_slow_reads_take_the_time_of_one(
    kafka_broker: KafkaBroker, unique_prefix: str
) -> None:
    """Twelve reads past the end at once (each waits SETTLE_WAIT, then answers None)
    finish together, not one after the other (12 x 2 s)."""
    log = await started(kafka_broker, readers=4)
    topic = f"{unique_prefix}in"
    try:
        await log.ensure_topics([TopicSpec(topic, 2, 1024 * 1024)])
        started_at = time.monotonic()
        got = await asyncio.gather(*(log.read_at(topic, i % 2, 50 + i) for i in range(12)))
        took = time.monotonic() - started_at
        assert got == [None] * 12
        assert took < 3 * SETTLE_WAIT, f"{took:.1f} s"
    finally:
        await log.close()


async def test_the_readers_are_bounded_and_closed_with_the_log(
    kafka_broker: KafkaBroker, unique_prefix: str
) -> None:
    """However many reads run at once, at most `readers` consumers are made (none
    before the first read), and close() stops them."""
    log = await started(kafka_broker, readers=3)
    topic = f"{unique_prefix}in"
    pool = log._readers
    assert pool is not None and pool.started == 0
    try:
        await log.ensure_topics([TopicSpec(topic, 3, 1024 * 1024)])
        positions = await log.append(
            [NewRecord(topic, f"v{i}".encode(), partition=i % 3) for i in range(20)]
        )
        got = await asyncio.gather(*(log.read_at(topic, p.partition, p.offset) for p in positions))
        assert [r.value for r in got if r] == [f"v{i}".encode() for i in range(20)]
        assert 1 <= pool.started <= 3
    finally:
        await log.close()
    assert pool.started == 0
