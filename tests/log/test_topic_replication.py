"""Topics docbroker creates are replicated as configured, and a replication that the
loss of one broker of a cluster would defeat is warned about when topics are created."""

from __future__ import annotations

import uuid

import pytest
from structlog.testing import capture_logs

from broker.config import KafkaSettings
from broker.core.logrecords import TopicSpec
from broker.log.kafka import KafkaLog
from broker.log.kafka_topics import replication_warnings
from tests.kafka_broker import KafkaBroker, describe_partitions, min_insync_replicas

MiB = 1024 * 1024


class TestReplicationWarnings:
    @pytest.mark.parametrize(
        ("brokers", "factor", "min_insync", "warning"),
        [
            (1, 1, 1, None),  # one broker: nothing to replicate to
            (3, 1, 1, "replication factor 1 on a cluster of 3 brokers"),
            (2, 1, 1, "replication factor 1 on a cluster of 2 brokers"),
            (3, 3, 2, None),  # the production setting
            (5, 3, 2, None),
            (3, 2, 1, None),
            (3, 3, 3, "appends stop whenever one replica's broker is down"),
        ],
    )
    def test_what_one_broker_lost_would_defeat(
        self, brokers: int, factor: int, min_insync: int, warning: str | None
    ) -> None:
        """Replication factor 1 among several brokers, or a min.insync.replicas that
        needs every replica, is named with the settings that fix it."""
        found = replication_warnings(brokers, factor, min_insync)
        if warning is None:
            assert found == []
        else:
            (text,) = found
            assert warning in text and "backend.kafka.min_insync_replicas" in text


async def created_with(bootstrap: str, prefix: str, **replication: int) -> list[dict]:
    """Create two topics through the Kafka log; the warnings it logged."""
    log = KafkaLog(
        KafkaSettings(bootstrap_servers=bootstrap, **replication),
        max_record_bytes=MiB,
        instance=uuid.uuid4().hex,
    )
    await log.start()
    try:
        with capture_logs() as logs:
            await log.ensure_topics([TopicSpec(f"{prefix}{n}", 3, MiB) for n in ("a", "b")])
    finally:
        await log.close()
    return [e for e in logs if e["log_level"] == "warning"]


@pytest.mark.kafka
async def test_one_broker_with_replication_one_is_not_warned_about(
    kafka_broker: KafkaBroker, unique_prefix: str
) -> None:
    """The single development broker: replication factor 1 is all there is."""
    assert await created_with(kafka_broker.bootstrap, unique_prefix) == []


@pytest.mark.kafka_cluster
@pytest.mark.parametrize("backend", ["kafka-cluster"])
async def test_topics_on_the_cluster_are_replicated_as_configured(
    kafka_bootstrap: str, unique_prefix: str
) -> None:
    """Replication factor 3 and min.insync.replicas 2: every partition has three
    replicas, all in sync, and nothing is warned about."""
    warnings = await created_with(
        kafka_bootstrap, unique_prefix, replication_factor=3, min_insync_replicas=2
    )
    assert warnings == []
    names = [f"{unique_prefix}a", f"{unique_prefix}b"]
    first = kafka_bootstrap.split(",")[0]  # node 1 (bin/kafka-local lists them in order)
    partitions = await describe_partitions(first, 1, names)
    assert len(partitions) == 6
    assert all(len(p.replicas) == 3 and len(p.isr) == 3 for p in partitions)
    assert {p.leader for p in partitions} == {1, 2, 3}, "leaders spread over the nodes"
    assert await min_insync_replicas(kafka_bootstrap, names) == dict.fromkeys(names, 2)


@pytest.mark.kafka_cluster
@pytest.mark.parametrize("backend", ["kafka-cluster"])
async def test_replication_one_on_the_cluster_is_warned_about(
    kafka_bootstrap: str, unique_prefix: str
) -> None:
    """The default (1, for the development broker) on a cluster of three: acks=all is
    then one broker's word, and docbroker says so when it creates the topics."""
    (warning,) = await created_with(kafka_bootstrap, unique_prefix)
    assert warning["event"].startswith(
        "creating topics with replication factor 1 on a cluster of 3 brokers"
    )
    assert warning["topics"] == [f"{unique_prefix}a", f"{unique_prefix}b"]
