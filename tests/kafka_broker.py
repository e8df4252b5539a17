"""The real Apache Kafka the suite runs against, started by bin/kafka-local: one
broker for most tests, a 3-node cluster for the tests marked `kafka_cluster`.

Set DOCBROKER_TEST_KAFKA_BOOTSTRAP=host:port to use a broker that is already
running (a developer's `bin/kafka-local start`) instead of starting one, and
DOCBROKER_TEST_KAFKA_CLUSTER_DIR=DIR to use a cluster started with
`bin/kafka-local start --nodes 3 --dir DIR` (the fault tests kill and restart its
nodes, so they need its folder, not only its address).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
KAFKA_LOCAL = ROOT / "bin" / "kafka-local"
CLUSTER_NODES = 3


# The suite's broker also has SASL_SSL and mTLS listeners with ACLs (tests/kafka_secure.py):
# these SCRAM users are made when it is formatted.
SECURE_USERS = ("docbroker", "limited")


@dataclass(frozen=True)
class KafkaBroker:
    bootstrap: str
    ready_seconds: float | None
    data_dir: Path | None
    secure: dict[str, Any] | None = None  # bin/kafka-local's "secure": None if external


def kafka_local(*args: str, timeout: float = 600) -> dict[str, Any]:
    """Run bin/kafka-local; its last line of output, parsed (JSON)."""
    proc = subprocess.run(
        [sys.executable, str(KAFKA_LOCAL), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if proc.returncode not in (0, 3):  # 3: `status` of something not (all) running
        what = " ".join(args)
        raise RuntimeError(f"bin/kafka-local {what} failed:\n{proc.stdout}\n{proc.stderr}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def start_broker(data_dir: Path) -> KafkaBroker:
    external = os.environ.get("DOCBROKER_TEST_KAFKA_BOOTSTRAP")
    if external:
        return KafkaBroker(external, None, None)
    started = time.monotonic()
    users = [arg for user in SECURE_USERS for arg in ("--user", user)]
    state = kafka_local("start", "--secure", *users, "--dir", str(data_dir))
    elapsed = time.monotonic() - started
    print(
        f"\nkafka: {state['version']} at {state['bootstrap']}, ready in "
        f"{state.get('ready_seconds')} s after launch ({elapsed:.1f} s with fetch and format)",
        file=sys.stderr,
    )
    return KafkaBroker(state["bootstrap"], state.get("ready_seconds"), data_dir, state["secure"])


def stop_broker(broker: KafkaBroker) -> None:
    if broker.data_dir is not None:
        stop_local(broker.data_dir)


def stop_local(data_dir: Path) -> None:
    """bin/kafka-local stop: every node started in that folder."""
    subprocess.run(
        [sys.executable, str(KAFKA_LOCAL), "stop", "--dir", str(data_dir)],
        capture_output=True,
        timeout=120,
    )


@dataclass(frozen=True)
class KafkaCluster:
    """A cluster of combined KRaft nodes (broker and controller in each), every node
    on 127.0.0.1 with its own data folder. Nodes are named by id: 1, 2, 3."""

    bootstrap: str
    data_dir: Path
    owned: bool  # started by the suite: stopped and its data removed at the end

    def nodes(self) -> list[dict[str, Any]]:
        """Each node's node_id, port, pid, dir and process (running, paused, dead)."""
        return kafka_local("status", "--dir", str(self.data_dir))["nodes"]

    def node(self, node_id: int) -> dict[str, Any]:
        return next(n for n in self.nodes() if n["node_id"] == node_id)

    def kill(self, node_id: int) -> None:
        """kill -9 one node (returns once it is gone)."""
        kafka_local("kill", "--dir", str(self.data_dir), "--node", str(node_id))

    def pause(self, node_id: int) -> None:
        """SIGSTOP: the node stops answering anyone, its connections stay open."""
        os.kill(self.node(node_id)["pid"], signal.SIGSTOP)

    def resume(self, node_id: int) -> None:
        os.kill(self.node(node_id)["pid"], signal.SIGCONT)

    def start_node(self, node_id: int) -> float:
        """Start a stopped node again on its data; seconds until it answered Metadata
        listing itself (registered with the controllers, unfenced)."""
        state = kafka_local("start-node", "--dir", str(self.data_dir), "--node", str(node_id))
        return float(state.get("ready_seconds", 0.0))

    def partitions(
        self, topics: list[str] | None = None, *, ask: int | None = None
    ) -> list[PartitionState]:
        """What one node's metadata says of each partition (all topics: None): node
        `ask`, else the first one running. (A node that was paused answers from what
        it knew before, so it is not the one to ask about the others.)"""
        nodes = self.nodes()
        node = next(
            n for n in nodes if n["node_id"] == ask or (ask is None and n["process"] == "running")
        )
        return asyncio.run(
            describe_partitions(f"127.0.0.1:{node['port']}", node["node_id"], topics)
        )

    def wait_in_sync(self, timeout: float = 120) -> float:
        """Until every running node's metadata has every replica of every partition in
        sync; seconds waited."""
        started = time.monotonic()
        while True:
            running = [n["node_id"] for n in self.nodes() if n["process"] == "running"]
            lagging = [p for node in running for p in self.partitions(ask=node)
                       if set(p.isr) != set(p.replicas)]  # fmt: skip
            if not lagging:
                return time.monotonic() - started
            if time.monotonic() - started > timeout:
                raise TimeoutError(f"{len(lagging)} partitions under-replicated: {lagging[:3]}")
            time.sleep(0.5)

    def heal(self) -> list[str]:
        """Every node running again (a test that failed half-way leaves one down)."""
        done = []
        for node in self.nodes():
            if node["process"] == "paused":
                self.resume(node["node_id"])
                done.append(f"resumed {node['node_id']}")
            elif node["process"] == "dead":
                self.start_node(node["node_id"])
                done.append(f"restarted {node['node_id']}")
        return done


def start_cluster(data_dir: Path) -> KafkaCluster:
    external = os.environ.get("DOCBROKER_TEST_KAFKA_CLUSTER_DIR")
    if external:
        state = kafka_local("status", "--dir", external)
        if not state.get("running"):
            raise RuntimeError(f"DOCBROKER_TEST_KAFKA_CLUSTER_DIR={external}: not running")
        return KafkaCluster(state["bootstrap"], Path(external), owned=False)
    started = time.monotonic()
    state = kafka_local("start", "--nodes", str(CLUSTER_NODES), "--dir", str(data_dir))
    print(
        f"\nkafka cluster: {CLUSTER_NODES} nodes of {state['version']} at {state['bootstrap']}, "
        f"ready in {state.get('ready_seconds')} s after launch "
        f"({time.monotonic() - started:.1f} s with format)",
        file=sys.stderr,
    )
    return KafkaCluster(state["bootstrap"], data_dir, owned=True)


def stop_cluster(cluster: KafkaCluster) -> None:
    """Stop the nodes the suite started and remove their data (their logs stay, for a
    post-mortem, in pytest's temporary folder)."""
    if not cluster.owned:
        return
    stop_local(cluster.data_dir)
    for node in cluster.data_dir.glob("node-*"):
        shutil.rmtree(node / "logs", ignore_errors=True)


@dataclass(frozen=True)
class PartitionState:
    topic: str
    partition: int
    leader: int  # -1: none
    replicas: tuple[int, ...]
    isr: tuple[int, ...]


async def describe_partitions(
    address: str, node_id: int, topics: list[str] | None
) -> list[PartitionState]:
    """Node `node_id`'s own metadata (at `address`), asked with a short timeout."""
    from aiokafka.client import AIOKafkaClient
    from aiokafka.errors import KafkaError
    from aiokafka.protocol.metadata import MetadataRequest

    for attempt in range(10):
        client = AIOKafkaClient(bootstrap_servers=[address], request_timeout_ms=2000)
        try:
            await client.bootstrap()
            answer = (await client.send(node_id, MetadataRequest(topics))).to_object()
            break
        except KafkaError:
            if attempt == 9:
                raise
            await asyncio.sleep(0.2)
        finally:
            await client.close()
    return [
        PartitionState(
            t["topic"], p["partition"], p["leader"], tuple(p["replicas"]), tuple(p["isr"])
        )
        for t in answer["topics"]
        for p in t["partitions"]
    ]


async def min_insync_replicas(bootstrap: str, topics: list[str]) -> dict[str, int]:
    """Each topic's min.insync.replicas, as the brokers report it."""
    from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

    async with _admin(bootstrap) as admin:
        responses = await admin.describe_configs(
            [ConfigResource(ConfigResourceType.TOPIC, t) for t in topics]
        )
    return {
        name: int(next(e[1] for e in entries if e[0] == "min.insync.replicas"))
        for resp in responses
        for _err, _msg, _type, name, entries in resp.resources
    }


@contextlib.asynccontextmanager
async def _admin(bootstrap: str) -> AsyncIterator[Any]:
    from aiokafka.admin import AIOKafkaAdminClient

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap.split(","), request_timeout_ms=10000)
    await admin.start()
    try:
        yield admin
    finally:
        await admin.close()
