"""What docbroker's Kafka topics must be configured with, and what is wrong with an
existing topic's configuration. Plain functions over values (the Kafka backend asks
the cluster and passes the answers in).

Retention is explicit on every topic: a cluster's default (`log.retention.hours`,
7 days out of the box) must never decide when a mailbox entry or an audit event
goes. Non-compacted topics are created with `retention.ms=-1` and
`retention.bytes=-1` (keep everything); docbroker itself removes records by its
own rules (`broker.retention`), never the broker's clock. Compacted topics keep
the latest record of every key and are never pruned by age either.
"""

from __future__ import annotations

from collections.abc import Mapping

from broker.core.logrecords import TopicSpec
from broker.log.kafka_common import BATCH_OVERHEAD


def topic_configs(spec: TopicSpec, *, min_insync_replicas: int) -> dict[str, str]:
    """The configuration a topic is created with."""
    return {
        "max.message.bytes": str(spec.max_record_bytes + BATCH_OVERHEAD),
        "min.insync.replicas": str(min_insync_replicas),
        "cleanup.policy": "compact" if spec.compacted else "delete",
        "retention.ms": "-1",
        "retention.bytes": "-1",
    }


def _alter(name: str, setting: str) -> str:
    return f"kafka-configs --alter --entity-type topics --entity-name {name} --add-config {setting}"


def retention_problems(name: str, configs: Mapping[str, str]) -> list[str]:
    """Why an existing topic's retention would let the broker delete records itself:
    a finite `retention.ms` or `retention.bytes` on a topic that deletes by age or size
    (`cleanup.policy` containing `delete`). Each problem names the command that fixes it."""
    policy = configs.get("cleanup.policy", "delete")
    if "delete" not in policy.split(","):
        return []  # compact only: nothing goes by age or size
    problems = []
    for setting in ("retention.ms", "retention.bytes"):
        value = configs.get(setting)
        if value is not None and int(value) >= 0:
            problems.append(
                f"topic {name} has {setting}={value}: the broker would delete records by "
                "its own clock, whatever docbroker's retention rules say; keep everything "
                f"and let docbroker prune ({_alter(name, f'{setting}=-1')})"
            )
    return problems


def size_problems(name: str, spec: TopicSpec, configs: Mapping[str, str]) -> list[str]:
    """Why an existing topic cannot hold the largest envelope configured."""
    have = int(configs.get("max.message.bytes", "0") or 0)
    need = spec.max_record_bytes + BATCH_OVERHEAD
    if have >= need:
        return []
    return [
        f"topic {name} has max.message.bytes={have}, the configured envelope "
        f"limit needs {need}: raise it ({_alter(name, f'max.message.bytes={need}')}) "
        "or lower limits.max_envelope_bytes"
    ]


def replication_warnings(brokers: int, replication_factor: int, min_insync: int) -> list[str]:
    """What is wrong with creating topics so on a cluster of `brokers` brokers."""
    if brokers < 2:
        return []  # a single broker: nothing to replicate to
    if replication_factor == 1:
        return [
            f"creating topics with replication factor 1 on a cluster of {brokers} brokers: "
            "each partition lives on one broker only, so losing that broker loses its "
            "records and stops docbroker; set backend.kafka.replication_factor = 3 and "
            "backend.kafka.min_insync_replicas = 2"
        ]
    if min_insync >= replication_factor:
        return [
            f"creating topics with min.insync.replicas {min_insync} and replication factor "
            f"{replication_factor}: appends stop whenever one replica's broker is down; set "
            f"backend.kafka.min_insync_replicas = {replication_factor - 1}"
        ]
    return []
