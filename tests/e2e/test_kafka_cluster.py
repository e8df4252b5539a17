"""A daemon on a real 3-node Kafka cluster (topics replicated 3 times, min.insync.replicas
2) while agencies submit, and one broker lost: killed (-9) and restarted on its data, or
paused (SIGSTOP, partitioned away: it stops answering, its leadership moves) and
resumed. Each scenario reads the deployment's complete output (tests/ledger.py): every
submission answered 202 once, every document delivered once to each recipient, every
expected refusal once, no false status, the audit chain intact; and /readyz sampled
throughout.

No iptables or nftables on this machine, and `tc` or `ip netns` on the loopback that
other work shares would cut more than one node off, or the node off 127.0.0.1: the
partition is a SIGSTOP, which a broker cannot tell from a network that drops its
packets (nothing is refused, nothing answers), only that it ends without reconnecting.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from broker.core.topics import Topics
from tests.e2e.broker_faults import (
    SENDERS,
    Load,
    Readiness,
    directory_seed,
    replication_warnings,
    tally,
)
from tests.e2e.conftest import DaemonFactory
from tests.e2e.daemon import Daemon
from tests.kafka_broker import KafkaCluster, PartitionState, min_insync_replicas
from tests.ledger import end_offsets

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.kafka_cluster,
    pytest.mark.slow,
    pytest.mark.parametrize("backend", ["kafka-cluster"]),
]

TOTAL, RATE = 360, 12.0  # submissions, per second: ~30 s of load
FAULT_AT = 0.25  # of the submissions answered


def busiest_inbound(cluster: KafkaCluster, env: dict[str, str]) -> PartitionState:
    """The partition of `inbound` holding the most records, with its leader (metadata)."""
    ends = end_offsets(env, "inbound")
    inbound = Topics.with_prefix(env["DOCBROKER_BACKEND_TOPIC_PREFIX"]).inbound
    return max(cluster.partitions([inbound]), key=lambda p: ends[p.partition])


def failover(cluster: KafkaCluster, part: PartitionState, lost: int, began: float) -> float | None:
    """Seconds from `began` until the metadata names another leader for `part`."""
    other = next(n for n in (1, 2, 3) if n != lost)
    while time.monotonic() - began < 60:
        now = cluster.partitions([part.topic], ask=other)
        leader = next(p.leader for p in now if p.partition == part.partition)
        if leader not in (lost, -1):
            return time.monotonic() - began
        time.sleep(0.25)
    return None


Fault = Callable[[KafkaCluster, PartitionState], dict[str, Any]]


def kill_and_restart(down: float) -> Fault:
    def fault(cluster: KafkaCluster, part: PartitionState) -> dict[str, Any]:
        began = time.monotonic()
        cluster.kill(part.leader)
        moved = failover(cluster, part, part.leader, began)
        time.sleep(max(0.0, began + down - time.monotonic()))
        figures = {"down_s": round(time.monotonic() - began, 1)}
        figures["restart_ready_s"] = round(cluster.start_node(part.leader), 1)
        figures["in_sync_after_s"] = round(cluster.wait_in_sync(), 1)
        return {"failover_s": moved and round(moved, 1), **figures}

    return fault


def pause_and_resume(paused: float) -> Fault:
    def fault(cluster: KafkaCluster, part: PartitionState) -> dict[str, Any]:
        began = time.monotonic()
        cluster.pause(part.leader)
        moved = failover(cluster, part, part.leader, began)
        time.sleep(max(0.0, began + paused - time.monotonic()))
        cluster.resume(part.leader)
        figures = {"paused_s": round(time.monotonic() - began, 1)}
        figures["in_sync_after_s"] = round(cluster.wait_in_sync(), 1)
        return {"failover_s": moved and round(moved, 1), **figures}

    return fault


def under_fault(
    daemons: DaemonFactory, env: dict[str, str], cluster: KafkaCluster, tmp_path: Path,
    fault: Fault, name: str,
) -> dict[str, Any]:  # fmt: skip
    """Run the load against one daemon, apply `fault` to the leader of the busiest
    partition of `inbound` once FAULT_AT of it was answered; check the whole output."""
    daemon: Daemon = daemons("cluster", DOCBROKER_DIRECTORY_SEED_FILE=str(directory_seed(tmp_path)))
    inbound = Topics.with_prefix(env["DOCBROKER_BACKEND_TOPIC_PREFIX"]).inbound
    assert {len(p.replicas) for p in cluster.partitions([inbound])} == {3}
    assert asyncio.run(min_insync_replicas(cluster.bootstrap, [inbound])) == {inbound: 2}
    tokens = daemon.tokens.grant(SENDERS)
    for sender in SENDERS:
        daemon.client_for(sender)  # accepted by the daemon before the load starts
    load = Load(daemon.url, {s: tokens[s] for s in SENDERS}, TOTAL, RATE)
    with Readiness(daemon.url) as readiness:
        load.start()
        while load.answered < TOTAL * FAULT_AT:
            time.sleep(0.05)
        part = busiest_inbound(cluster, env)
        figures = {"scenario": name, "node": part.leader, "partition": part.partition}
        figures |= fault(cluster, part)
        load.join(300)
        figures["readyz"] = readiness.figures()
    output, wrong = tally(env, load)
    figures |= output
    print(f"\n{json.dumps(figures)}")
    assert not wrong, "\n".join(wrong)
    assert not replication_warnings(daemon)
    return figures


@pytest.mark.timeout(600)
def test_the_leader_of_the_busiest_inbound_partition_killed_and_restarted(
    daemons: DaemonFactory, daemon_env: dict[str, str], kafka_cluster: KafkaCluster,
    tmp_path: Path,
) -> None:  # fmt: skip
    """kill -9 of the broker leading the busiest inbound partition, down ~15 s, then
    restarted on its data: the other two carry on (a quorum, two replicas in sync);
    nothing lost, nothing doubled, no false status, and the daemon stays ready."""
    figures = under_fault(
        daemons, daemon_env, kafka_cluster, tmp_path, kill_and_restart(15.0), "kill -9 leader"
    )
    assert figures["failover_s"] is not None, "the partition got no new leader"
    assert figures["readyz"]["not_ready"] == 0, figures["readyz"]


@pytest.mark.timeout(600)
def test_a_broker_partitioned_away_and_back(
    daemons: DaemonFactory, daemon_env: dict[str, str], kafka_cluster: KafkaCluster,
    tmp_path: Path,
) -> None:  # fmt: skip
    """SIGSTOP of the broker leading the busiest inbound partition for ~20 s, then
    SIGCONT: it stops answering (its connections stay open), the controllers fence it
    and move its leadership, it comes back and catches up; the same assertions."""
    figures = under_fault(
        daemons, daemon_env, kafka_cluster, tmp_path, pause_and_resume(20.0), "paused leader"
    )
    assert figures["failover_s"] is not None, "the partition got no new leader"
    assert figures["readyz"]["not_ready"] == 0, figures["readyz"]


def test_serve_warns_when_it_creates_unreplicated_topics_on_a_cluster(
    daemons: DaemonFactory, daemon_env: dict[str, str], kafka_cluster: KafkaCluster
) -> None:
    """`docbroker serve` with replication factor 1 on a cluster of three brokers: the
    topics are created as configured, and the log says plainly what that risks and
    which settings fix it. With 3 and 2 (the fault tests above) it says nothing."""
    daemon = daemons(
        "unreplicated",
        DOCBROKER_BACKEND_KAFKA_REPLICATION_FACTOR="1",
        DOCBROKER_BACKEND_KAFKA_MIN_INSYNC_REPLICAS="1",
    )
    (warning,) = replication_warnings(daemon)
    assert warning["brokers"] == 3 and warning["replication_factor"] == 1
    assert "losing that broker loses its records" in warning["event"]
    assert "backend.kafka.replication_factor = 3" in warning["event"]
    inbound = Topics.with_prefix(daemon_env["DOCBROKER_BACKEND_TOPIC_PREFIX"]).inbound
    assert inbound in warning["topics"]
    assert {len(p.replicas) for p in kafka_cluster.partitions([inbound])} == {1}
    assert asyncio.run(min_insync_replicas(kafka_cluster.bootstrap, [inbound])) == {inbound: 1}
