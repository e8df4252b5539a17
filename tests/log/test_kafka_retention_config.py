"""Kafka: retention is explicit on every topic docbroker creates, and an existing topic
whose retention would let the broker delete records by its own clock is refused at
start, with the command that fixes it (on the suite's real broker)."""

from __future__ import annotations

import pytest
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from broker.config import KafkaSettings
from broker.core.errors import ConfigError
from broker.core.logrecords import TopicSpec
from broker.log.kafka_topics import retention_problems, topic_configs
from tests.kafka_broker import KafkaBroker

MiB = 1024 * 1024


class TestTheConfigurationsAsValues:
    def test_every_topic_keeps_everything_explicitly(self) -> None:
        """retention.ms and retention.bytes are -1 on every topic, compacted or not, and
        the cleanup policy is named: no cluster default is left to decide."""
        for compacted in (False, True):
            configs = topic_configs(TopicSpec("t", 1, MiB, compacted), min_insync_replicas=1)
            assert configs["retention.ms"] == "-1"
            assert configs["retention.bytes"] == "-1"
            assert configs["cleanup.policy"] == ("compact" if compacted else "delete")

    def test_a_finite_retention_is_a_problem_naming_the_fix(self) -> None:
        """Time or size: each finite limit is one problem with its kafka-configs command."""
        problems = retention_problems(
            "p.mailbox",
            {"cleanup.policy": "delete", "retention.ms": "604800000", "retention.bytes": "-1"},
        )
        assert problems == [
            "topic p.mailbox has retention.ms=604800000: the broker would delete records by "
            "its own clock, whatever docbroker's retention rules say; keep everything and "
            "let docbroker prune (kafka-configs --alter --entity-type topics --entity-name "
            "p.mailbox --add-config retention.ms=-1)"
        ]
        both = {"cleanup.policy": "compact,delete", "retention.ms": "1", "retention.bytes": "9"}
        assert len(retention_problems("p.dedup", both)) == 2

    def test_a_compact_only_topic_is_not_aged(self) -> None:
        """With cleanup.policy=compact the broker removes nothing by age or size."""
        assert retention_problems("p.dir", {"cleanup.policy": "compact", "retention.ms": "1"}) == []


async def _configs(bootstrap: str, topic: str) -> dict[str, str]:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        (resp,) = await admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, topic)])
        ((_e, _m, _t, _name, entries),) = resp.resources
        return {e[0]: e[1] for e in entries}
    finally:
        await admin.close()


@pytest.mark.kafka
async def test_created_topics_have_explicit_retention(
    kafka_broker: KafkaBroker, unique_prefix: str
) -> None:
    """What describe_configs shows of a topic docbroker created: retention -1, delete."""
    from broker.log.kafka import KafkaLog

    log = KafkaLog(
        KafkaSettings(bootstrap_servers=kafka_broker.bootstrap), max_record_bytes=MiB, instance="r"
    )
    await log.start()
    try:
        await log.ensure_topics([TopicSpec(f"{unique_prefix}mailbox", 1, MiB)])
    finally:
        await log.close()
    configs = await _configs(kafka_broker.bootstrap, f"{unique_prefix}mailbox")
    assert (configs["retention.ms"], configs["retention.bytes"]) == ("-1", "-1")
    assert configs["cleanup.policy"] == "delete"


@pytest.mark.kafka
async def test_a_topic_with_a_finite_retention_is_refused_at_start(
    kafka_broker: KafkaBroker, unique_prefix: str
) -> None:
    """A mailbox topic created by hand with retention.ms=60000 (or left to the cluster's
    7 days): ensure_topics refuses with the command that keeps everything."""
    from broker.log.kafka import KafkaLog

    topic = f"{unique_prefix}mailbox"
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka_broker.bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, 1, 1, topic_configs={"retention.ms": "60000"})])
    finally:
        await admin.close()
    log = KafkaLog(
        KafkaSettings(bootstrap_servers=kafka_broker.bootstrap), max_record_bytes=MiB, instance="r"
    )
    await log.start()
    try:
        with pytest.raises(ConfigError, match=r"retention\.ms=60000") as refused:
            await log.ensure_topics([TopicSpec(topic, 1, 64 * 1024)])
    finally:
        await log.close()
    assert (
        f"kafka-configs --alter --entity-type topics --entity-name {topic} "
        "--add-config retention.ms=-1"
    ) in str(refused.value)
