#!/usr/bin/env python3
"""The pipeline on real Kafka: envelopes per second and submit -> mailbox latency,
beside the crypto floor measured in the same run.

- floor: one thread, no I/O, per 10 KB envelope signed by its sender (RSA-2048):
  parse + validate + verify the sender's signature + stamp and sign (the work the
  pipeline must do); its inverse is the floor in envelopes per second;
- throughput: N envelopes are appended to `inbound` first, then 1 (and 2) daemon
  processes drain them; the rate is read from their /metrics over the steady part;
- latency: envelopes submitted over HTTP at a fixed rate (100/s); for each delivery,
  the mailbox record's commit time minus the accept time, p50 and p99.

    .venv/bin/python bench/bench_pipeline.py [--envelopes 3000] [--daemons 1 2] [--quick]

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
import time
import urllib.request
import uuid
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
from broker.keys.devpki import cert_pem, issue, key_pem, make_ca  # noqa: E402
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


def make_envelopes(n: int, ca, prefix: str) -> list[bytes]:
    """n envelopes of about 10 KB, from many senders, each signed by its sender."""
    codes = senders()
    keys = {code: issue(ca, f"sender {code}", uid=code) for code in codes}
    out = []
    for i in range(n):
        sender = codes[i % len(codes)]
        recipient = codes[(i + 1) % len(codes)]
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
    verifier = SignatureVerifier(TrustStore([ca.certificate]))
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
    (keys / "broker.key.pem").write_bytes(key_pem(broker.key))
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


async def mailbox_latencies(bootstrap: str, prefix: str, since_ms: int = 0) -> list[float]:
    from broker.views.audit import read_all

    log = KafkaLog(
        KafkaSettings(bootstrap_servers=bootstrap), max_record_bytes=34 * 2**20, instance="bench"
    )
    await log.start()
    try:
        records = await read_all(log, Topics.with_prefix(prefix).mailbox)
    finally:
        await log.close()
    return [
        (r.timestamp_ms - int(r.header_str("received-at"))) / 1000
        for r in records
        if int(r.header_str("received-at")) >= since_ms
    ]


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
    rate: float  # routed envelopes/s between 10 % and 90 % of the total
    overall: float  # routed envelopes/s from the first to the last
    cpu_ms: dict[str, float]  # CPU per routed envelope over the steady part, by process


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
    deadline = time.monotonic() + 600
    try:
        while time.monotonic() < deadline:
            done = sum(routed(url) for _, url, _ in daemons)
            samples.append((time.monotonic(), done, cpu()))
            if done >= total:
                break
            time.sleep(0.25)
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
    return Throughput(rate, overall, cpu_ms)


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
    try:
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
    except BaseException:
        stop_daemons(daemons)
        raise
    start = time.monotonic()
    try:
        for i, data in enumerate(envelopes):
            due = start + i / rate
            delay = due - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            submit(data)
        deadline = time.monotonic() + 120
        while routed(url) < len(envelopes) + len(warm) and time.monotonic() < deadline:
            time.sleep(0.2)
    finally:
        stop_daemons(daemons)
        shutil.rmtree(workdir, ignore_errors=True)
    lat = sorted(asyncio.run(mailbox_latencies(kafka.bootstrap, prefix, measured_from)))
    p50 = statistics.median(lat)
    p99 = lat[min(len(lat) - 1, int(len(lat) * 0.99))]
    return p50, p99, len(lat)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--envelopes", type=int, default=3000)
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
    n = 600 if args.quick else args.envelopes
    ca = make_ca("bench CA")
    broker = issue(ca, "docbroker bench", uid="000.99.99.H35")
    print(
        f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs; preparing {n} signed "
        "10 KB envelopes ...",
        flush=True,
    )
    envelopes = make_envelopes(n, ca, "THRU")
    per = floor(envelopes, ca, broker)
    print(
        f"crypto floor: {per * 1000:.2f} ms per envelope (parse + validate + verify + sign, "
        f"one thread) = {1 / per:.0f} envelopes/s"
    )
    with Kafka() as kafka:
        for k in args.daemons:
            t = throughput(k, make_envelopes(n, ca, f"T{k}"), kafka, ca, broker, args.partitions)
            cpu = ", ".join(f"{name} {ms:.2f}" for name, ms in t.cpu_ms.items())
            print(
                f"{k} daemon(s): {t.rate:.0f} routed envelopes/s steady ({t.overall:.0f} overall), "
                f"{t.rate * per:.2f}x the crypto floor; CPU ms per envelope: {cpu}",
                flush=True,
            )
        if args.no_latency:
            return
        count = 200 + int(args.rate * (10 if args.quick else 30))
        p50, p99, seen = latency(
            make_envelopes(count, ca, "LAT"), kafka, ca, broker, args.rate, args.partitions
        )
        print(
            f"latency at {args.rate:.0f} envelopes/s over HTTP, 1 daemon: p50 {p50 * 1000:.0f} ms, "
            f"p99 {p99 * 1000:.0f} ms ({seen} deliveries)"
        )


if __name__ == "__main__":
    main()
