"""Fencing: a member that lost its partition cannot commit (backend-specific setups)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from broker.config import KafkaSettings
from broker.core.errors import Fenced
from broker.core.logrecords import NewRecord, TopicPartition, TopicSpec
from broker.log.embedded import EmbeddedLog
from broker.log.embedded_consumers import EmbeddedGroupConsumer
from tests.kafka_broker import KafkaBroker


async def first_batch(consumer, tp: TopicPartition, timeout: float = 30):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        batch = (await consumer.poll(0.5, 100)).get(tp)
        if batch:
            return batch
    raise AssertionError("no batch")


class TestEmbeddedFencing:
    async def test_expired_member_is_fenced_and_its_outputs_never_appear(
        self, tmp_path: Path
    ) -> None:
        """A member silent for longer than the session timeout loses its partitions;
        its later commit fails and writes nothing; the new owner starts from the
        committed offset."""
        log = EmbeddedLog(tmp_path / "log.sqlite", session_timeout=1.0)
        await log.start()
        try:
            await log.ensure_topics([TopicSpec("in", 1, 1024), TopicSpec("out", 1, 1024)])
            await log.append([NewRecord("in", b"a"), NewRecord("in", b"b")])
            tp = TopicPartition("in", 0)
            zombie = log.group_consumer("g", ["in"])
            assert isinstance(zombie, EmbeddedGroupConsumer)
            await zombie.start()
            batch = await first_batch(zombie, tp)
            zombie._task.cancel()  # the zombie stops heartbeating (a long pause)
            await asyncio.sleep(1.5)
            async with log.group_consumer("g", ["in"]) as successor:
                again = await first_batch(successor, tp)
                with pytest.raises(Fenced):
                    await zombie.commit(tp, batch[-1].offset + 1, [NewRecord("out", b"zombie")])
                await successor.commit(tp, again[-1].offset + 1, [NewRecord("out", b"new")])
            assert [r.value for r in again] == [b"a", b"b"]
            async with log.tailer(["out"], {}) as tailer:
                assert [r.value for r in await tailer.poll(1, 10)] == [b"new"]
            zombie._closed = True
        finally:
            await log.close()


@pytest.mark.kafka
class TestKafkaFencing:
    async def test_new_owner_fences_the_old_producer(
        self, kafka_broker: KafkaBroker, unique_prefix: str
    ) -> None:
        """The next owner's init_transactions on the same transactional id fences
        the zombie: its commit raises Fenced and its outputs stay invisible."""
        from broker.log.kafka import KafkaLog

        settings = KafkaSettings(bootstrap_servers=kafka_broker.bootstrap, session_timeout_ms=3000)
        log = KafkaLog(settings, max_record_bytes=1024 * 1024, instance="fencing")
        await log.start()
        src, dst, group = f"{unique_prefix}in", f"{unique_prefix}out", f"{unique_prefix}g"
        try:
            await log.ensure_topics(
                [TopicSpec(src, 1, 1024 * 1024), TopicSpec(dst, 1, 1024 * 1024)]
            )
            await log.append([NewRecord(src, b"a")])
            tp = TopicPartition(src, 0)
            async with log.group_consumer(group, [src]) as zombie:
                batch = await first_batch(zombie, tp)
                usurper = log.transactional_producer(f"{group}.{src}.0")
                await usurper.start()  # what the next owner does first
                try:
                    with pytest.raises(Fenced):
                        await zombie.commit(tp, batch[-1].offset + 1, [NewRecord(dst, b"zombie")])
                finally:
                    await usurper.stop()
            async with log.tailer([dst], {}) as tailer:
                assert await tailer.poll(2, 10) == []
        finally:
            await log.close()
