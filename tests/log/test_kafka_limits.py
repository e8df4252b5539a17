"""Kafka: a broker that refuses an output the client let through (a topic whose
max.message.bytes is below docbroker's limit) — the transaction is abandoned, and the
member goes on where it was, as RecordTooLarge promises (tests/conformance)."""

from __future__ import annotations

import pytest

from broker.config import KafkaSettings
from broker.core.errors import RecordTooLarge
from broker.core.logrecords import NewRecord, TopicPartition, TopicSpec
from tests.conformance.test_log_conformance import first_batch, tail_all
from tests.kafka_broker import KafkaBroker

MiB = 1024 * 1024


@pytest.mark.kafka
async def test_a_broker_side_refusal_keeps_the_position_and_the_generation(
    kafka_broker: KafkaBroker, unique_prefix: str
) -> None:
    from broker.log.kafka import KafkaLog

    settings = KafkaSettings(bootstrap_servers=kafka_broker.bootstrap, session_timeout_ms=3000)
    log = KafkaLog(settings, max_record_bytes=4 * MiB, instance="limits")
    await log.start()
    src, dst, group = f"{unique_prefix}in", f"{unique_prefix}out", f"{unique_prefix}g"
    try:
        # The output topic takes 64 KiB (+ framing), less than the client's 4 MiB.
        await log.ensure_topics([TopicSpec(src, 1, 4 * MiB), TopicSpec(dst, 1, 64 * 1024)])
        await log.append([NewRecord(src, b"a"), NewRecord(src, b"b")])
        tp = TopicPartition(src, 0)
        async with log.group_consumer(group, [src]) as member:
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
        assert [r.value for r in await tail_all(log, dst, 1)] == [b"ok"]
    finally:
        await log.close()
