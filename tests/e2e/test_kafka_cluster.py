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
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from broker.cli.client import ApiProblem, DocbrokerClient, Unreachable
from broker.config import load_settings
from broker.core.topics import Topics
from broker.log import open_log
from tests.conftest import EXAMPLE_DIRECTORY_2024
from tests.e2e.conftest import DaemonFactory
from tests.e2e.daemon import Daemon
from tests.edxml_samples import document
from tests.kafka_broker import KafkaCluster, PartitionState, min_insync_replicas
from tests.ledger import Expected, Ledger, audit_verifies

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.kafka_cluster,
    pytest.mark.slow,
    pytest.mark.parametrize("backend", ["kafka-cluster"]),
]

RECIPIENTS = {"000.00.01.H35": "H35.S01", "000.00.02.H35": "H35.S02"}  # QCVN 102 -> code
# Senders (QCVN 102 code -> directory code, share of the load): inbound is keyed by
# sender, so their partitions carry unequal loads. The last one's directory record
# requires a signature: its (unsigned) documents pass the door and are refused by the
# pipeline, each once, with a status 02 to it.
SENDERS = {
    "000.00.00.H35": ("H35", 3),
    "000.00.03.H35": ("H35.S03", 2),
    "000.00.05.H35": ("H35.S05", 1),
}
SIGNATURE_REQUIRED = "H35.S05"
TOTAL, RATE = 360, 12.0  # submissions, per second: ~30 s of load
FAULT_AT = 0.25  # of the submissions answered
REFUSAL = ("signature-missing",)
CLIENT_TIMEOUT = 60.0  # longer than any fault: each submission is answered, not retried


def directory_seed(tmp_path: Path) -> Path:
    """The 2024 directory with SIGNATURE_REQUIRED's policy `required`."""
    blocks = EXAMPLE_DIRECTORY_2024.read_text(encoding="utf-8").split("[[agency]]")
    for i, block in enumerate(blocks):
        if f'code = "{SIGNATURE_REQUIRED}"\n' in block:
            blocks[i] = block.replace('signature_policy = ""', 'signature_policy = "required"')
    path = tmp_path / "directory.toml"
    path.write_text("[[agency]]".join(blocks), encoding="utf-8")
    return path


@dataclass
class Load:
    """Threads submitting TOTAL documents at RATE per second, round the senders by
    their shares; every answer and every failed attempt is kept."""

    url: str
    tokens: dict[str, str]  # QCVN 102 code -> token
    threads: int = 4
    answers: dict[str, list[tuple[bool, str]]] = field(default_factory=dict)  # (duplicate, id)
    failures: Counter[str] = field(default_factory=Counter)  # error class -> attempts
    latencies: list[float] = field(default_factory=list)
    plan: list[tuple[str, str]] = field(default_factory=list)  # (sender, DocumentId)

    def __post_init__(self) -> None:
        wheel = [s for s, (_, share) in SENDERS.items() for _ in range(share)]
        self.plan = [(s, f"{s},2026/11/24,{n}/CLUSTER") for n, s in
                     enumerate(wheel[i % len(wheel)] for i in range(TOTAL))]  # fmt: skip
        self._lock = threading.Lock()
        self._next = 0
        self._workers = [threading.Thread(target=self._work, daemon=True) for _ in range(4)]

    def start(self) -> None:
        self._started = time.monotonic()
        for t in self._workers:
            t.start()

    def join(self, timeout: float) -> None:
        for t in self._workers:
            t.join(timeout)

    @property
    def answered(self) -> int:
        return len(self.answers)

    def _take(self) -> int | None:
        with self._lock:
            n, self._next = self._next, self._next + 1
        if n >= TOTAL:
            return None
        time.sleep(max(0.0, self._started + n / RATE - time.monotonic()))
        return n

    def _work(self) -> None:
        while (n := self._take()) is not None:
            sender, doc_id = self.plan[n]
            data = document(sender=sender, recipients=tuple(RECIPIENTS), document_id=doc_id)
            client = DocbrokerClient(self.url, timeout=CLIENT_TIMEOUT, token=self.tokens[sender])
            while True:
                began = time.monotonic()
                try:
                    answer = client.submit(data)
                except (Unreachable, ApiProblem, OSError) as exc:
                    with self._lock:
                        self.failures[type(exc).__name__] += 1
                    time.sleep(0.5)
                    continue
                with self._lock:
                    self.answers.setdefault(doc_id, []).append(
                        (bool(answer.get("duplicate")), answer["message_id"])
                    )
                    self.latencies.append(time.monotonic() - began)
                break

    def expected(self) -> list[Expected]:
        recipients = tuple(RECIPIENTS.values())
        out = []
        for sender, (code, _share) in SENDERS.items():
            docs = {d: recipients for s, d in self.plan if s == sender}
            refusing = code == SIGNATURE_REQUIRED
            out.append(Expected(code, docs, dict.fromkeys(docs if refusing else (), REFUSAL)))
        return out


class Readiness:
    """/readyz sampled every quarter second from another thread."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.samples: list[tuple[float, int, str]] = []  # (time, status, failed checks)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Readiness:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(15)

    def _run(self) -> None:
        while not self._stop.wait(0.25):
            status, why = 0, ""
            try:
                with urllib.request.urlopen(f"{self.url}/readyz", timeout=10) as resp:
                    status = resp.status
            except urllib.error.HTTPError as exc:
                status = exc.code
                checks = json.loads(exc.read() or b"{}").get("checks", {})
                why = "; ".join(f"{k}: {v}" for k, v in checks.items() if not v.startswith("ok"))
            except OSError as exc:
                why = str(exc)
            self.samples.append((time.monotonic(), status, why))

    def figures(self) -> dict[str, Any]:
        """How many samples were not 200, and the longest run of them (seconds)."""
        longest, run_start = 0.0, None
        for at, status, _ in self.samples:
            if status != 200 and run_start is None:
                run_start = at
            elif status == 200 and run_start is not None:
                longest, run_start = max(longest, at - run_start), None
        if run_start is not None:
            longest = max(longest, self.samples[-1][0] - run_start)
        bad = [s for s in self.samples if s[1] != 200]
        return {
            "samples": len(self.samples),
            "not_ready": len(bad),
            "longest_not_ready_s": round(longest, 1),
            "why": sorted({why[:160] for _, _, why in bad})[:3],
        }


def inbound_ends(env: dict[str, str]) -> dict[int, int]:
    """Partition -> end offset of the deployment's `inbound`."""
    settings = load_settings(None, env)
    inbound = Topics.with_prefix(settings.backend.topic_prefix).inbound

    async def main() -> dict[int, int]:
        log = open_log(settings)
        await log.start()
        try:
            ends = await log.end_offsets([inbound])
        finally:
            await log.close()
        return {tp.partition: end for tp, end in ends.items()}

    return asyncio.run(main())


def busiest_inbound(cluster: KafkaCluster, env: dict[str, str]) -> PartitionState:
    """The partition of `inbound` holding the most records, with its leader (metadata)."""
    ends = inbound_ends(env)
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


def complete_output(env: dict[str, str], expected: list[Expected], timeout: float) -> Ledger:
    """The ledger once it holds everything expected (or `timeout` seconds passed)."""
    deadline = time.monotonic() + timeout
    while True:
        ledger = Ledger.read(env)
        if not ledger.discrepancies(*expected) or time.monotonic() > deadline:
            return ledger
        time.sleep(2)


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
    load = Load(daemon.url, {s: tokens[s] for s in SENDERS})
    with Readiness(daemon.url) as readiness:
        load.start()
        while load.answered < TOTAL * FAULT_AT:
            time.sleep(0.05)
        part = busiest_inbound(cluster, env)
        figures = {"scenario": name, "node": part.leader, "partition": part.partition}
        figures |= fault(cluster, part)
        load.join(300)
        figures["readyz"] = readiness.figures()
    expected = load.expected()
    ledger = complete_output(env, expected, timeout=180)
    problems = ledger.discrepancies(*expected)
    twice = {d: a for d, a in load.answers.items() if len(a) != 1 or a[0][0]}
    refused = sum(len(e.refused) for e in expected)
    figures |= {
        "submissions": TOTAL,
        "answered_202_once": sum(len(a) == 1 and not a[0][0] for a in load.answers.values()),
        "failed_attempts": dict(load.failures),
        "slowest_answer_s": round(max(load.latencies), 1),
        "deliveries": ledger.summary()["deliveries"],
        "refusals_expected": refused,
        "refusals_seen": ledger.summary()["refusal_events"],
        "false_statuses_02": sum(1 for p in problems if "false status 02" in p),
        "discrepancies": len(problems),
    }
    print(f"\n{json.dumps(figures)}")
    assert len(load.answers) == TOTAL, f"{TOTAL - len(load.answers)} submissions never answered"
    assert not twice, f"answered other than one 202: {sorted(twice.items())[:5]}"
    assert not problems, "\n".join(problems[:20])
    assert figures["deliveries"] == (TOTAL - refused) * len(RECIPIENTS)
    intact, report = audit_verifies(env)
    assert intact, report
    assert not replication_warnings(daemon)
    return figures


def replication_warnings(daemon: Daemon) -> list[dict[str, Any]]:
    """The daemon's log lines warning about how its topics are replicated."""
    return [
        e
        for e in daemon.log_events()
        if e.get("level") == "warning" and "replication factor" in e.get("event", "")
    ]


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
