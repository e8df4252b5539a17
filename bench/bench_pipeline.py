#!/usr/bin/env python3
"""The pipeline on real Kafka: envelopes per second and submit -> mailbox latency,
beside the crypto floor measured in the same run.

- floor: one thread, no I/O, per 10 KB envelope signed by its sender (RSA-2048):
  parse + validate + verify the sender's signature + stamp and sign (the work the
  pipeline must do); its inverse is the floor in envelopes per second;
- throughput: N envelopes are appended to `inbound` first, then 1 (and 2) daemon
  processes drain them; the rate is read from their /metrics over the steady part;
- latency: envelopes submitted over HTTP at a fixed rate (100/s); for each delivery,
  the moment its mailbox record became visible to a read_committed consumer (what a
  recipient can fetch) minus the accept time, p50 and p99.

    .venv/bin/python bench/bench_pipeline.py [--envelopes 12000] [--daemons 1 2] [--quick]

The floor is measured before and after the runs; the ratios use the faster of the two.
The last line is a JSON summary (counts, rates, ratios, CPU per envelope, latency).

It starts its own Kafka (bin/kafka-local) unless DOCBROKER_BENCH_KAFKA_BOOTSTRAP is set.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import uuid
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from broker.clock import now_ms, utc_now  # noqa: E402
from broker.config import KafkaSettings  # noqa: E402
from broker.core.records import new_message_id  # noqa: E402
from broker.core.topics import Topics  # noqa: E402
from broker.directory.io import parse_file  # noqa: E402
from broker.edxml.validator import EnvelopeValidator  # noqa: E402
from broker.keys.devpki import cert_pem, crl_pem, empty_crl, issue, key_pem, make_ca  # noqa: E402
from broker.keys.files import write_private  # noqa: E402
from broker.log.kafka import KafkaLog  # noqa: E402
from broker.pipeline.intake import Submission, inbound_record  # noqa: E402
from broker.trust.store import TrustStore  # noqa: E402
from broker.trust.xmldsig import BrokerSigner, SignatureVerifier  # noqa: E402
from tests.credentials import daemon_tokens  # noqa: E402
from tests.e2e.daemon import free_port  # noqa: E402
from tests.edxml_samples import document, sender_of  # noqa: E402
from tests.trust.signing import sign_as_sender  # noqa: E402

STAMP = datetime(2026, 12, 1, 9, 0, 0)  # the hop's TraceHeader time (edXML form)

DIRECTORY = ROOT / "config" / "directory" / "lai-chau-2024.toml"


def senders() -> list[str]:
    agencies, _ = parse_file(DIRECTORY.name, DIRECTORY.read_text(encoding="utf-8"))
    return [
        a.code102
        for a in agencies
        if a.local and a.level in ("sở", "huyện", "thành phố", "đoàn thể", "hội")
    ]


def sender_keys(ca) -> dict:
    """A key and certificate (issued by `ca`) for each of the senders."""
    return {code: issue(ca, f"sender {code}", uid=code) for code in senders()}


def make_envelopes(
    n: int, ca, prefix: str, recipients: Sequence[str] | None = None, keys: dict | None = None
) -> list[bytes]:
    """n envelopes of about 10 KB, from many senders, each signed by its sender; to
    `recipients` in turn when given (else to the next sender); `keys`: the senders'
    (`sender_keys`), made anew when not given."""
    codes = senders()
    keys = keys or sender_keys(ca)
    out = []
    for i in range(n):
        sender = codes[i % len(codes)]
        recipient = recipients[i % len(recipients)] if recipients else codes[(i + 1) % len(codes)]
        data = document(
            sender=sender,
            recipients=(recipient,),
            padding=8500,
            document_id=f"{sender},2026/11/24,{i}/{prefix}",
        )
        out.append(sign_as_sender(data, keys[sender]))
    return out


def floor(envelopes: list[bytes], ca, broker) -> float:
    """Seconds per envelope for the pipeline's CPU work, one thread, no I/O."""
    validator = EnvelopeValidator(clock=utc_now)
    verifier = SignatureVerifier(TrustStore([ca.certificate], crls=[empty_crl(ca)]))
    signer = BrokerSigner(broker)
    sample = envelopes[:300]
    for data in sample[:20]:  # warm up
        validator.check(data)
    start = time.perf_counter()
    for data in sample:
        validator.check(data)
        result, _ = verifier.verify_sender(data, at=utc_now())
        assert result is not None and result.valid, result
        signer.stamp_and_sign(data, "000.99.99.H35", STAMP)
    return (time.perf_counter() - start) / len(sample)


CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int, children: bool = True) -> float:
    """User + system CPU of a process and (by default) its live descendants."""
    total = 0.0
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        total += (int(fields[11]) + int(fields[12])) / CLOCK_TICKS
        for task in Path(f"/proc/{pid}/task").iterdir() if children else ():
            for child in (task / "children").read_text().split():
                total += cpu_seconds(int(child))
    except (FileNotFoundError, ProcessLookupError):
        pass
    return total


def pids_with(text: str) -> list[int]:
    """The processes whose command line contains `text` (the Kafka broker's folder)."""
    out = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                if text.encode() in (proc / "cmdline").read_bytes():
                    out.append(int(proc.name))
            except OSError:
                continue
    return out


def java_threads_cpu(pid: int) -> dict[str, float]:
    """CPU ms so far of a JVM's threads by kind (`jcmd Thread.print` gives each
    thread's cpu=): where the broker's own CPU goes. Empty without jcmd."""
    if shutil.which("jcmd") is None:
        return {}
    out = subprocess.run(
        ["jcmd", str(pid), "Thread.print"], capture_output=True, text=True, check=False
    ).stdout
    kinds: dict[str, float] = {}
    for name, ms in re.findall(r'^"([^"]+)".*?cpu=([\d.]+)ms', out, re.M):
        kind = re.sub(r"\d+", "N", name).split("-ListenerName")[0]
        kinds[kind] = kinds.get(kind, 0.0) + float(ms)
    return kinds


class Kafka:
    def __init__(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="bench-kafka-"))
        self.bootstrap = os.environ.get("DOCBROKER_BENCH_KAFKA_BOOTSTRAP", "")
        self.started_here = not self.bootstrap

    def __enter__(self) -> Kafka:
        if not self.bootstrap:
            out = subprocess.run(
                [
                    sys.executable,
                    str(ROOT / "bin" / "kafka-local"),
                    "start",
                    "--dir",
                    str(self.dir),
                ],
                capture_output=True,
                text=True,
                check=True,
            )
            self.bootstrap = json.loads(out.stdout.strip().splitlines()[-1])["bootstrap"]
        return self

    def __exit__(self, *exc: object) -> None:
        if not os.environ.get("DOCBROKER_BENCH_KAFKA_BOOTSTRAP"):
            subprocess.run(
                [sys.executable, str(ROOT / "bin" / "kafka-local"), "stop", "--dir", str(self.dir)],
                capture_output=True,
            )
        shutil.rmtree(self.dir, ignore_errors=True)


def write_keys(data_dir: Path, ca, broker) -> None:
    keys = data_dir / "keys"
    keys.mkdir(parents=True, exist_ok=True)
    (keys / "ca.cert.pem").write_bytes(cert_pem(ca.certificate))
    (keys / "ca.crl.pem").write_bytes(crl_pem(empty_crl(ca)))
    write_private(keys / "broker.key.pem", key_pem(broker.key))  # refused if others may read it
    (keys / "broker.cert.pem").write_bytes(cert_pem(broker.certificate))


def start_daemons(
    n: int, workdir: Path, env: dict[str, str], ca, broker, *, ready_within: float = 90
) -> list[tuple]:
    out = []
    for i in range(n):
        data_dir = workdir / f"node{i}"
        write_keys(data_dir, ca, broker)
        port = free_port()
        full = {k: v for k, v in os.environ.items() if not k.startswith("DOCBROKER_")}
        full.update(
            env,
            DOCBROKER_DATA_DIR=str(data_dir),
            DOCBROKER_HTTP_PORT=str(port),
            DOCBROKER_INSTANCE=f"node{i}",
            DOCBROKER_LOGGING_FORMAT="json",
        )
        log = open(data_dir / "daemon.log", "ab")  # noqa: SIM115 - a restart's follows
        proc = subprocess.Popen(
            [sys.executable, "-m", "broker", "serve"],
            env=full,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=data_dir,
        )
        out.append((proc, f"http://127.0.0.1:{port}", log))
    for proc, url, _ in out:
        deadline = time.monotonic() + ready_within
        while True:
            try:
                with urllib.request.urlopen(f"{url}/readyz", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                stop_daemons(out)
                raise RuntimeError(f"daemon at {url} did not start")
            time.sleep(0.2)
    return out


def stop_daemons(daemons: list[tuple]) -> None:
    for proc, _, _log in daemons:
        proc.terminate()
    for proc, _, log in daemons:
        proc.wait(60)
        log.close()


def outcomes(url: str) -> dict[str, float]:
    """The daemon's pipeline records so far, by outcome (routed, refused, ...)."""
    with urllib.request.urlopen(f"{url}/metrics", timeout=5) as resp:
        text = resp.read().decode()
    found = re.findall(r'^docbroker_pipeline_records_total\{outcome="(\w+)"\} (\S+)$', text, re.M)
    return {name: float(v) for name, v in found}


def routed(url: str) -> float:
    """Envelopes routed (accepted and delivered or forwarded): refusals do not count."""
    return outcomes(url).get("routed", 0.0)


def not_routed(daemons: list[tuple]) -> dict[str, float]:
    """What the daemons processed otherwise than routed (refused, duplicate, failed)."""
    out: dict[str, float] = {}
    for _, url, _ in daemons:
        for name, v in outcomes(url).items():
            if name != "routed" and v:
                out[name] = out.get(name, 0.0) + v
    return out


async def preload(bootstrap: str, prefix: str, envelopes: list[bytes]) -> None:
    """Append the envelopes to inbound as the HTTP door would, without a daemon."""
    from broker.config import Settings
    from broker.log.topics import topic_specs

    settings = Settings()
    log = KafkaLog(
        KafkaSettings(bootstrap_servers=bootstrap),
        max_record_bytes=settings.max_record_bytes,
        instance="bench",
    )
    await log.start()
    topics = Topics.with_prefix(prefix)
    await log.ensure_topics(topic_specs(settings, topics))
    validator = EnvelopeValidator(clock=utc_now)
    records = []
    for data in envelopes:
        at = now_ms()
        sub = Submission(data, new_message_id(at), uuid.uuid4().hex, at, "bench")
        records.append(inbound_record(sub, validator.check(data), topics))
    for i in range(0, len(records), 200):
        chunk = records[i : i + 200]
        await asyncio.gather(*(log.append([r]) for r in chunk))
    await log.close()


class Visibility:
    """A read_committed consumer of the mailbox topic in a thread of its own: when each
    delivery became visible to a reader (the moment a recipient could fetch it), minus
    its accept time (the received-at header)."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        self.bootstrap, self.topic = bootstrap, topic
        self.seen: list[tuple[int, float]] = []  # (accepted at ms, seconds to visible)
        self._stop = threading.Event()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=lambda: asyncio.run(self._run()), daemon=True)

    def __enter__(self) -> Visibility:
        self._thread.start()
        if not self._ready.wait(60):
            raise RuntimeError("the visibility consumer did not start")
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(30)

    async def _run(self) -> None:
        from aiokafka import AIOKafkaConsumer

        consumer = AIOKafkaConsumer(
            bootstrap_servers=self.bootstrap,
            isolation_level="read_committed",
            auto_offset_reset="earliest",
            enable_auto_commit=False,
            fetch_max_wait_ms=5,
            max_partition_fetch_bytes=34 * 2**20,
        )
        await consumer.start()
        try:
            consumer.subscribe([self.topic])  # no group: every partition, from the start
            while not consumer.assignment():
                await consumer.getmany(timeout_ms=100)
            self._ready.set()
            while not self._stop.is_set():
                batch = await consumer.getmany(timeout_ms=100)
                now = time.time() * 1000
                for msgs in batch.values():
                    for m in msgs:
                        accepted = int(dict(m.headers)["received-at"])
                        self.seen.append((accepted, (now - accepted) / 1000))
        finally:
            await consumer.stop()


def daemon_env(prefix: str, kafka: Kafka, partitions: int) -> dict[str, str]:
    """What every benchmarked daemon runs with: Kafka, the example directory, sender
    signatures required (so that each envelope is verified)."""
    return {
        "DOCBROKER_BACKEND_TYPE": "kafka",
        "DOCBROKER_BACKEND_TOPIC_PREFIX": prefix,
        "DOCBROKER_BACKEND_KAFKA_BOOTSTRAP_SERVERS": kafka.bootstrap,
        "DOCBROKER_BACKEND_PARTITIONS": str(partitions),
        "DOCBROKER_DIRECTORY_SEED_FILE": str(DIRECTORY),
        "DOCBROKER_TRUST_DEFAULT_POLICY": "required",
        "DOCBROKER_LOGGING_LEVEL": "warning",
        **EXTRA_SETTINGS,
    }


EXTRA_SETTINGS: dict[str, str] = {}  # --set NAME=VALUE: a daemon setting to try


@dataclasses.dataclass(frozen=True)
class Throughput:
    routed: int  # envelopes routed in all (each of those appended)
    rate: float  # routed envelopes/s between 10 % and 90 % of the total
    overall: float  # routed envelopes/s from the first to the last
    cpu_ms: dict[str, float]  # CPU per routed envelope over the steady part, by process
    kafka_ms: dict[str, float]  # the broker's CPU per routed envelope, by thread kind


def throughput(
    n_daemons: int, envelopes: list[bytes], kafka: Kafka, ca, broker, partitions: int
) -> Throughput:
    prefix = f"bench.{uuid.uuid4().hex[:8]}."
    asyncio.run(preload(kafka.bootstrap, prefix, envelopes))
    # As many worker processes in all as there are CPUs, however many daemons.
    per_daemon = max(1, (os.cpu_count() or 1) // n_daemons)
    env = {
        **daemon_env(prefix, kafka, partitions),
        "DOCBROKER_PIPELINE_PROCESSES": str(per_daemon),
    }
    workdir = Path(tempfile.mkdtemp(prefix="bench-daemons-"))
    daemons = start_daemons(n_daemons, workdir, env, ca, broker)
    kafka_pids = pids_with(str(kafka.dir)) if kafka.started_here else []

    def cpu() -> dict[str, float]:
        """CPU seconds so far: the daemons' own processes, their workers, Kafka."""
        own = sum(cpu_seconds(p.pid, children=False) for p, _, _ in daemons)
        return {
            "daemon": own,
            "workers": sum(cpu_seconds(p.pid) for p, _, _ in daemons) - own,
            "kafka": sum(cpu_seconds(pid) for pid in kafka_pids),
        }

    total = len(envelopes)
    samples: list[tuple[float, float, dict[str, float]]] = []
    java: list[dict[str, float]] = []  # the broker's threads at 10 % and at 90 %
    deadline = time.monotonic() + 600
    try:
        while time.monotonic() < deadline:
            done = sum(routed(url) for _, url, _ in daemons)
            samples.append((time.monotonic(), done, cpu()))
            if kafka_pids and len(java) < 2 and done >= (0.1, 0.9)[len(java)] * total:
                java.append(java_threads_cpu(kafka_pids[0]))
            if done >= total:
                break
            time.sleep(0.5)  # each /metrics scrape costs the daemon too
        missed = not_routed(daemons)
    finally:
        stop_daemons(daemons)
        shutil.rmtree(workdir, ignore_errors=True)
    if samples[-1][1] != total or missed:
        raise SystemExit(f"{samples[-1][1]:.0f} of {total} routed; otherwise: {missed}")
    lo = next(s for s in samples if s[1] >= 0.1 * total)
    hi = next(s for s in samples if s[1] >= 0.9 * total)
    steady = max(hi[1] - lo[1], 1)
    rate = steady / max(hi[0] - lo[0], 1e-9)
    overall = total / max(samples[-1][0] - next(s for s in samples if s[1] > 0)[0], 1e-9)
    cpu_ms = {k: (hi[2][k] - lo[2][k]) * 1000 / steady for k in hi[2]}
    kafka_ms: dict[str, float] = {}
    if len(java) == 2:  # the java samples' own span: near enough 10 % to 90 %
        kafka_ms = {k: (v - java[0].get(k, 0.0)) / steady for k, v in java[1].items()}
    return Throughput(int(samples[-1][1]), rate, overall, cpu_ms, kafka_ms)


def latency(
    envelopes: list[bytes], kafka: Kafka, ca, broker, rate: float, partitions: int
) -> tuple[float, float, int]:
    from broker.cli.client import ApiProblem, DocbrokerClient

    prefix = f"bench.{uuid.uuid4().hex[:8]}."
    env = {
        **daemon_env(prefix, kafka, partitions),
        "DOCBROKER_HTTP_RATE_LIMIT": "0",  # one client stands for every sender
    }
    workdir = Path(tempfile.mkdtemp(prefix="bench-daemons-"))
    daemons = start_daemons(1, workdir, env, ca, broker)
    url = daemons[0][1]
    tokens = daemon_tokens({**env, "DOCBROKER_DATA_DIR": str(workdir)}, senders())
    clients = {code: DocbrokerClient(url, token=t) for code, t in tokens.items()}

    def submit(data: bytes) -> None:
        clients[sender_of(data) or ""].submit(data)

    warm = envelopes[:200]  # group joined, caches and connections warm: not measured
    envelopes = envelopes[200:]
    total = len(warm) + len(envelopes)
    try:
        with Visibility(kafka.bootstrap, Topics.with_prefix(prefix).mailbox) as visible:
            deadline = time.monotonic() + 30
            while True:  # the daemon follows the directory: the tokens work within a second
                try:
                    clients[senders()[-1]].agencies()
                    break
                except ApiProblem:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.2)
            for data in warm:
                submit(data)
            while routed(url) < len(warm):
                time.sleep(0.1)
            measured_from = now_ms()
            start = time.monotonic()
            for i, data in enumerate(envelopes):
                due = start + i / rate
                delay = due - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
                submit(data)
            deadline = time.monotonic() + 120
            while len(visible.seen) < total and time.monotonic() < deadline:
                time.sleep(0.2)
            seen = list(visible.seen)
            missed = not_routed(daemons)
    finally:
        stop_daemons(daemons)
        shutil.rmtree(workdir, ignore_errors=True)
    if len(seen) != total or missed:
        raise SystemExit(f"{len(seen)} of {total} deliveries visible; otherwise: {missed}")
    lat = sorted(seconds for at, seconds in seen if at >= measured_from)
    p50 = statistics.median(lat)
    p99 = lat[min(len(lat) - 1, int(len(lat) * 0.99))]
    return p50, p99, len(lat)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--envelopes", type=int, default=12000)
    ap.add_argument("--daemons", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--partitions", type=int, default=6)
    ap.add_argument("--rate", type=float, default=100.0, help="submissions/s for the latency run")
    ap.add_argument("--quick", action="store_true", help="fewer envelopes (noisier)")
    ap.add_argument("--no-latency", action="store_true", help="throughput only")
    ap.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a daemon setting in environment form (DOCBROKER_PIPELINE_BATCH_SIZE=256)",
    )
    args = ap.parse_args()
    EXTRA_SETTINGS.update(item.split("=", 1) for item in args.set)
    n = 1500 if args.quick else args.envelopes
    ca = make_ca("bench CA")
    broker = issue(ca, "docbroker bench", uid="000.99.99.H35")
    print(
        f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs; preparing {n} signed "
        "10 KB envelopes ...",
        flush=True,
    )
    envelopes = make_envelopes(n, ca, "THRU")
    floors = [floor(envelopes, ca, broker)]
    print(
        f"crypto floor: {floors[0] * 1000:.2f} ms per envelope (parse + validate + verify + sign, "
        f"one thread) = {1 / floors[0]:.0f} envelopes/s",
        flush=True,
    )
    summary: dict[str, object] = {"envelopes": n, "runs": []}
    runs: list[dict[str, object]] = []
    with Kafka() as kafka:
        # A fresh broker spends a good part of its first minutes compiling itself (its
        # JIT threads took 0.4 ms per envelope of the first run): warm it up first, as
        # a broker in service is.
        warm = throughput(1, envelopes, kafka, ca, broker, args.partitions)
        print(f"warm-up: {warm.routed} envelopes through 1 daemon ({warm.rate:.0f}/s), not counted")
        for k in args.daemons:
            t = throughput(k, make_envelopes(n, ca, f"T{k}"), kafka, ca, broker, args.partitions)
            runs.append(
                {
                    "daemons": k,
                    "rate": round(t.rate, 1),
                    "overall": round(t.overall, 1),
                    "routed": t.routed,
                    "cpu_ms": {a: round(b, 3) for a, b in t.cpu_ms.items()},
                }
            )
            cpu = ", ".join(f"{name} {ms:.2f}" for name, ms in t.cpu_ms.items())
            print(
                f"{k} daemon(s): {t.rate:.0f} routed envelopes/s steady ({t.overall:.0f} overall); "
                f"CPU ms per envelope: {cpu}",
                flush=True,
            )
            top = sorted(t.kafka_ms.items(), key=lambda kv: -kv[1])[:5]
            if top:
                print("  Kafka's share by thread: " + ", ".join(f"{n} {v:.2f}" for n, v in top))
        if not args.no_latency:
            count = 200 + int(args.rate * (10 if args.quick else 30))
            p50, p99, seen = latency(
                make_envelopes(count, ca, "LAT"), kafka, ca, broker, args.rate, args.partitions
            )
            print(
                f"latency at {args.rate:.0f} envelopes/s over HTTP, 1 daemon, accept -> visible "
                f"to a read_committed consumer: p50 {p50 * 1000:.0f} ms, p99 {p99 * 1000:.0f} ms "
                f"({seen} deliveries)"
            )
            summary["latency"] = {
                "p50_ms": round(p50 * 1000, 1),
                "p99_ms": round(p99 * 1000, 1),
                "deliveries": seen,  # measured: after the 200 of the warm-up
                "warm_up": 200,
                "submitted": count,
            }
    floors.append(floor(envelopes, ca, broker))  # again: the machine's noise, both ends
    per = min(floors)  # the faster: the ratio errs against us
    print(
        f"crypto floor again: {floors[1] * 1000:.2f} ms; the ratios use "
        f"{per * 1000:.2f} ms = {1 / per:.0f} envelopes/s"
    )
    for run in runs:
        run["ratio"] = round(float(run["rate"]) * per, 3)  # type: ignore[arg-type]
        print(
            f"{run['daemons']} daemon(s): {run['rate']:.0f}/s = {run['ratio']:.2f}x the "
            f"one-thread crypto floor (goal for one daemon: >= 1.4x)"
        )
    summary.update(floor_ms=[round(f * 1000, 3) for f in floors], runs=runs)
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
