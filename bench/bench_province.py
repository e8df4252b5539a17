#!/usr/bin/env python3
"""A province-year through the pipeline on real Kafka, then the daemon's start-up
with that history: the goals are the year in <= 20 min and ready in <= 10 s.

- traffic: 1,366,349 envelopes shaped like the seed's (bench/bench_report.py): 87 %
  inbound to the province's agencies (two thirds from one local agency to another
  over HTTP, a third from outside brought down by the national axis), 13 % outbound
  (local senders to agencies outside the province: routed upstream), over the
  agencies of config/directory/lai-chau-2024.toml; sizes lognormal around a 10 KB
  median (3-60 KB) with a tail of 1-5 MB envelopes (`--large`, 0.05 %);
- producers: `--producers` processes append them to `inbound` as the door would
  (`inbound_record`, one record per append, many in flight) while one daemon with
  worker processes (pipeline.processes = CPUs) processes them. Sender signatures
  are optional (trust.default_policy=optional): `--signed` of them (1 %) are signed
  by their sender and verified; the broker stamps and signs every one. Inbound is
  pruned as it is processed (retention.inbound_days ~ 0, every 30 s), so the disk
  holds one copy of the year (mailbox + upstream), not two;
- total: from the first append to the moment the daemon's /metrics count the last
  envelope routed; beside it the crypto floor of the same mix (parse + validate +
  verify the signed share + stamp and sign, one thread, no I/O) and the ratio; the
  daemon's CPU seconds (its own and its workers') per envelope;
- completeness: every envelope routed exactly once, none refused: the pipeline's
  outcome counts, and after the run the document view's events (one ROUTED per
  message id);
- start-up: the daemon stopped and started again on its data folder (its views
  resume) and a fresh daemon (new data folder, same topics: its views catch up from
  the start): seconds to /readyz 200 and RSS (the daemon, and with its workers).

    .venv/bin/python bench/bench_province.py [--scale 1.0] [--quick] [--producers 2]

The last stdout line is a JSON summary. It starts its own Kafka (bin/kafka-local)
unless DOCBROKER_BENCH_KAFKA_BOOTSTRAP is set. Figures are noisy on a shared machine:
the CPU seconds per envelope less so than the rates.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import random
import re
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.bench_pipeline import (  # noqa: E402
    DIRECTORY,
    STAMP,
    Kafka,
    daemon_env,
    start_daemons,
    stop_daemons,
)
from broker.clock import now_ms, utc_now  # noqa: E402
from broker.config import KafkaSettings, Settings  # noqa: E402
from broker.core.errors import BackendUnavailable  # noqa: E402
from broker.core.records import new_message_id  # noqa: E402
from broker.core.topics import Topics  # noqa: E402
from broker.directory.io import parse_file  # noqa: E402
from broker.directory.model import Agency  # noqa: E402
from broker.edxml.model import Kind  # noqa: E402
from broker.edxml.validator import EnvelopeValidator  # noqa: E402
from broker.keys.devpki import empty_crl, issue, make_ca  # noqa: E402
from broker.log.kafka import KafkaLog  # noqa: E402
from broker.log.topics import topic_specs  # noqa: E402
from broker.pipeline.intake import SOURCE_AXIS, Submission, inbound_record  # noqa: E402
from broker.trust.store import TrustStore  # noqa: E402
from broker.trust.xmldsig import BrokerSigner, SignatureVerifier  # noqa: E402
from tests.edxml_samples import document  # noqa: E402
from tests.trust.signing import sign_as_sender  # noqa: E402

YEAR = 1_366_349
INBOUND_SHARE = 1_195_019 / YEAR  # as bench_report's province-year
FROM_AXIS = 1 / 3  # of inbound
GOAL_TOTAL_S = 20 * 60
GOAL_READY_S = 10.0
SIGNING_SENDERS = 8  # the signed share comes from these senders (a key each)
IN_FLIGHT = 64  # appends a producer keeps in flight (more only wait in its buffer)


@dataclass(frozen=True, slots=True)
class Planned:
    """What envelope number i is: who sends it to whom, how, how large."""

    i: int
    kind: str  # local | axis | out
    sender: Agency
    recipient: Agency
    padding: int
    signed: bool


class Traffic:
    """The year's envelopes, each a function of its number (so producers share none)."""

    def __init__(self, large: float, signed: float, seed: int = 16) -> None:
        agencies, problems = parse_file(DIRECTORY.name, DIRECTORY.read_text(encoding="utf-8"))
        assert not problems, problems
        self.local = [a for a in agencies if a.local and a.active]
        self.external = [a for a in agencies if not a.local and a.active]
        self.signers = self.local[:SIGNING_SENDERS]
        self.large, self.signed, self.seed = large, signed, seed

    def plan(self, i: int) -> Planned:
        rng = random.Random(self.seed * 10_000_019 + i)
        r = rng.random()
        signed = False
        if r >= INBOUND_SHARE:
            kind, sender, to = "out", rng.choice(self.local), rng.choice(self.external)
        elif rng.random() < FROM_AXIS:
            kind, sender, to = "axis", rng.choice(self.external), rng.choice(self.local)
        else:
            kind = "local"
            signed = rng.random() < self.signed
            sender = rng.choice(self.signers if signed else self.local)
            to = rng.choice([a for a in self.local if a.code != sender.code][:40])
        if kind == "out" and rng.random() < self.signed:
            signed, sender = True, rng.choice(self.signers)
        if rng.random() < self.large:
            padding = rng.randrange(1_000_000, 5_000_000)
        else:  # median ~10 KB with the envelope's ~1.5 KB of headers
            padding = min(60_000, max(1_500, int(math.exp(rng.gauss(math.log(8_500), 0.5)))))
        return Planned(i, kind, sender, to, padding, signed)

    def envelope(self, p: Planned) -> bytes:
        return document(
            sender=p.sender.code102,
            recipients=(p.recipient.code102,),
            padding=p.padding,
            document_id=f"{p.sender.code102},2019/01/01,{p.i}/NAM",
        )


@dataclass(frozen=True, slots=True)
class Door:
    """What inbound_record needs of a checked envelope (the bench knows it: it made the
    bytes): not parsing 1.37 M envelopes a second time in the producers leaves the CPU
    to the daemon, which checks every one in full."""

    sender_id: str
    subject_document_id: str
    kind: Kind = Kind.DOCUMENT


# -- producers (run as `bench_province.py produce ...` processes)


async def produce(args: argparse.Namespace) -> None:
    traffic = Traffic(args.large, args.signed)
    ca = load_ca(Path(args.ca))
    keys = {a.code102: issue(ca, f"sender {a.code102}", uid=a.code102) for a in traffic.signers}
    log = KafkaLog(
        KafkaSettings(bootstrap_servers=args.bootstrap),
        max_record_bytes=Settings().max_record_bytes,
        instance=f"bench-producer-{args.index}",
    )
    await log.start()
    topics = Topics.with_prefix(args.prefix)
    first = 0.0
    sent = nbytes = signed = 0
    in_flight: set[asyncio.Future[object]] = set()
    try:
        for i in range(args.index, args.total, args.producers):
            p = traffic.plan(i)
            data = traffic.envelope(p)
            if p.signed:
                data = sign_as_sender(data, keys[p.sender.code102])
                signed += 1
            at = now_ms()
            axis = p.kind == "axis"
            sub = Submission(
                data,
                new_message_id(at),
                uuid.uuid4().hex,
                at,
                SOURCE_AXIS if axis else "http",
                authenticated=None if axis else p.sender.code,
                axis_doc_id=f"axis-{i}" if axis else None,
            )
            env = Door(p.sender.code102, f"{p.sender.code102},2019/01/01,{i}/NAM")
            record = inbound_record(sub, env, topics)  # type: ignore[arg-type]
            if not first:
                first = time.time()
            in_flight.add(asyncio.ensure_future(append(log, record)))
            sent += 1
            nbytes += len(data)
            if len(in_flight) >= IN_FLIGHT or p.padding > 500_000:
                done, in_flight = await asyncio.wait(in_flight, return_when=asyncio.FIRST_COMPLETED)
                for f in done:
                    f.result()
        for f in asyncio.as_completed(in_flight):
            await f
    finally:
        await log.close()
    print(
        json.dumps(
            {"first": first, "last": time.time(), "sent": sent, "bytes": nbytes, "signed": signed}
        ),
        flush=True,
    )


async def append(log: KafkaLog, record) -> None:
    """One append, tried again when the producer could not take it in time (its
    buffer full on a loaded machine: nothing was sent). A record sent twice would
    show as a duplicate in the outcomes, and the run would fail its check."""
    for attempt in range(60):
        try:
            await log.append([record])
            return
        except BackendUnavailable:
            if attempt == 59:
                raise
            await asyncio.sleep(min(10, 1 + attempt))


def save_ca(ca, path: Path) -> None:
    from broker.keys.devpki import cert_pem, key_pem
    from broker.keys.files import write_private

    write_private(path, key_pem(ca.key) + cert_pem(ca.certificate))


def load_ca(path: Path):
    from cryptography import x509
    from cryptography.hazmat.primitives.serialization import load_pem_private_key

    from broker.keys.devpki import Authority

    pem = path.read_bytes()
    return Authority(load_pem_private_key(pem, None), x509.load_pem_x509_certificate(pem))


# -- the floor


def floor(traffic: Traffic, ca, broker, n: int) -> float:
    """Seconds per envelope of the broker's CPU work on the year's mix, one thread, no
    I/O: parse + validate, verify the signed share, stamp and sign; the 1-5 MB tail
    weighed in by its share."""
    validator = EnvelopeValidator(clock=utc_now)
    verifier = SignatureVerifier(TrustStore([ca.certificate], crls=[empty_crl(ca)]))
    signer = BrokerSigner(broker)
    keys = {a.code102: issue(ca, f"sender {a.code102}", uid=a.code102) for a in traffic.signers}

    def work(data: bytes, signed: bool) -> None:
        validator.check(data)
        if signed:
            result, _ = verifier.verify_sender(data, at=utc_now())
            assert result is not None and result.valid, result
        signer.stamp_and_sign(data, "000.99.99.H35", STAMP)

    def timed(plans: list[Planned]) -> float:
        prepared = []
        for p in plans:
            data = traffic.envelope(p)
            prepared.append(
                (sign_as_sender(data, keys[p.sender.code102]) if p.signed else data, p.signed)
            )
        for data, signed in prepared[:5]:
            work(data, signed)  # warm up
        start = time.perf_counter()
        for data, signed in prepared:
            work(data, signed)
        return (time.perf_counter() - start) / len(prepared)

    small = [p for p in map(traffic.plan, range(n)) if p.padding < 500_000][:300]
    unsigned = [p for p in small if not p.signed][:250]
    signer_plan = [Planned(0, "local", traffic.signers[0], traffic.local[-1], 8_500, True)] * 20
    big = [Planned(0, "local", traffic.local[1], traffic.local[2], 3_000_000, False)] * 3
    per_unsigned, per_signed, per_big = timed(unsigned), timed(signer_plan), timed(big)
    share_signed = traffic.signed * (1 - FROM_AXIS * INBOUND_SHARE)
    return (1 - traffic.large) * (
        (1 - share_signed) * per_unsigned + share_signed * per_signed
    ) + traffic.large * per_big


# -- the daemon: figures from /metrics and /proc


def outcomes(url: str) -> dict[str, float]:
    with urllib.request.urlopen(f"{url}/metrics", timeout=10) as resp:
        text = resp.read().decode()
    return {
        k: float(v)
        for k, v in re.findall(
            r'^docbroker_pipeline_records_total\{outcome="(\w+)"\} (\S+)$', text, re.M
        )
    }


def family(pid: int) -> list[int]:
    """The process and its descendants (the worker processes)."""
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        for task in Path(f"/proc/{p}/task").glob("*"):
            with contextlib.suppress(OSError):
                todo += [int(c) for c in (task / "children").read_text().split()]
    return out


def cpu_seconds(pid: int) -> float:
    tick = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for p in family(pid):
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / tick  # utime, stime
    return total


def rss_mb(pid: int) -> tuple[float, float]:
    """RSS of the process alone and with its descendants, MB."""

    def one(p: int) -> float:
        try:
            text = Path(f"/proc/{p}/status").read_text()
        except OSError:
            return 0.0
        m = re.search(r"^VmRSS:\s+(\d+) kB", text, re.M)
        return int(m.group(1)) / 1024 if m else 0.0

    return one(pid), sum(map(one, family(pid)))


def startup(
    label: str, workdir: Path, env: dict[str, str], ca, broker, within: float
) -> dict[str, object]:
    started = time.monotonic()
    try:
        daemons = start_daemons(1, workdir, env, ca, broker, ready_within=within)
    except RuntimeError:
        seconds = time.monotonic() - started
        print(f"start-up, {label}: NOT ready within {seconds:.0f} s", flush=True)
        return {"ready_s": None, "not_ready_after_s": round(seconds, 1)}
    seconds = time.monotonic() - started
    proc = daemons[0][0]
    time.sleep(2)  # the first /metrics scrape and the pipeline's group join settle
    alone, with_workers = rss_mb(proc.pid)
    stop_daemons(daemons)
    print(
        f"start-up, {label}: ready in {seconds:.1f} s (goal <= {GOAL_READY_S:.0f} s), "
        f"RSS {alone:.0f} MB ({with_workers:.0f} MB with its worker processes)",
        flush=True,
    )
    return {
        "ready_s": round(seconds, 2),
        "rss_mb": round(alone, 1),
        "rss_with_workers_mb": round(with_workers, 1),
    }


def routed_once(data_dir: Path) -> dict[str, int]:
    """From the document view's events (the daemon stopped): ROUTED events and the
    message ids they name."""
    conn = sqlite3.connect(f"file:{data_dir / 'documents.sqlite'}?mode=ro", uri=True)
    try:
        rows = conn.execute(
            "SELECT type, count(*), count(DISTINCT message_id) FROM events GROUP BY type"
        ).fetchall()
    finally:
        conn.close()
    return {
        **{f"events_{t.lower()}": n for t, n, _ in rows},
        **{f"messages_{t.lower()}": d for t, _, d in rows},
    }


# -- the run


def run(args: argparse.Namespace) -> dict[str, object]:
    n = round(YEAR * args.scale)
    traffic = Traffic(args.large, args.signed)
    ca = make_ca("bench CA")
    broker = issue(ca, "docbroker bench", uid="000.99.99.H35")
    cpus = os.cpu_count() or 1
    print(
        f"python {sys.version.split()[0]}, {cpus} CPUs; {n:,} envelopes (scale {args.scale}), "
        f"{args.large:.2%} of 1-5 MB, {args.signed:.1%} signed by their sender (sender "
        "signatures optional), every one stamped and signed by the broker",
        flush=True,
    )
    per = floor(traffic, ca, broker, min(n, 2000))
    print(
        f"crypto floor: {per * 1000:.2f} ms per envelope of the mix (parse + validate + verify "
        f"the signed + stamp and sign, one thread) = {1 / per:.0f} envelopes/s",
        flush=True,
    )
    workdir = Path(tempfile.mkdtemp(prefix="bench-province-"))
    save_ca(ca, workdir / "ca.pem")
    summary: dict[str, object] = {"envelopes": n, "floor_ms": round(per * 1000, 3)}
    with Kafka() as kafka:
        prefix = f"bench.{uuid.uuid4().hex[:8]}."
        asyncio.run(make_topics(kafka.bootstrap, prefix, args.partitions))
        env = {
            **daemon_env(prefix, kafka, args.partitions),
            "DOCBROKER_TRUST_DEFAULT_POLICY": "optional",
            "DOCBROKER_PIPELINE_PROCESSES": str(args.processes or cpus),
            # Inbound pruned as processed: one copy of the year on disk, not two.
            "DOCBROKER_RETENTION_INBOUND_DAYS": "0.00001",
            "DOCBROKER_RETENTION_INTERVAL": "30",
        }
        try:
            summary.update(pipeline_run(args, n, kafka, prefix, env, workdir, ca, broker, per))
            within = args.ready_within
            summary["restart"] = startup(
                "restart on its data folder", workdir, env, ca, broker, within
            )
            # Read after the restart: ready, its document view has caught up.
            summary.update(routed_once(workdir / "node0"))
            summary["fresh"] = startup(
                "fresh data folder, same topics", workdir / "fresh", env, ca, broker, within
            )
            summary["disk_mb"] = disk_mb(kafka.dir)
            print(f"disk in use by Kafka, MB by topic: {summary['disk_mb']}", flush=True)
        finally:
            if not args.keep:
                shutil.rmtree(workdir, ignore_errors=True)
    return summary


def disk_mb(path: Path) -> dict[str, int]:
    """Blocks in use under Kafka's folder, MB, by topic (its index files are sparse)."""
    out: dict[str, int] = {}
    for f in path.rglob("*"):
        if f.is_file():
            name = f.parent.name.rsplit("-", 1)[0].rsplit(".", 1)[-1]
            out[name] = out.get(name, 0) + f.stat().st_blocks * 512
    return {k: round(v / 2**20) for k, v in sorted(out.items(), key=lambda kv: -kv[1]) if v > 2**20}


async def make_topics(bootstrap: str, prefix: str, partitions: int) -> None:
    from dataclasses import replace

    settings = Settings()
    settings = replace(settings, backend=replace(settings.backend, partitions=partitions))
    log = KafkaLog(
        KafkaSettings(bootstrap_servers=bootstrap),
        max_record_bytes=settings.max_record_bytes,
        instance="bench",
    )
    await log.start()
    specs = topic_specs(settings, Topics.with_prefix(prefix))
    try:
        await log.ensure_topics(specs)
    finally:
        await log.close()
    await small_inbound_segments(bootstrap, next(s for s in specs if s.name.endswith("inbound")))


async def small_inbound_segments(bootstrap: str, spec) -> None:
    """Inbound in 64 MB segments: Kafka frees a pruned record's disk only with its whole
    segment (1 GB by default), so the processed year would stay on disk."""
    from aiokafka.admin import AIOKafkaAdminClient
    from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

    from broker.log.kafka_topics import topic_configs

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        configs = {**topic_configs(spec, min_insync_replicas=1), "segment.bytes": str(64 << 20)}
        await admin.alter_configs([ConfigResource(ConfigResourceType.TOPIC, spec.name, configs)])
    finally:
        await admin.close()


def pipeline_run(args, n, kafka, prefix, env, workdir, ca, broker, per) -> dict[str, object]:
    daemons = start_daemons(1, workdir, env, ca, broker)
    proc, url, _ = daemons[0]
    cpu0 = cpu_seconds(proc.pid)
    give_up = time.monotonic() + args.budget * 60
    producers = [
        subprocess.Popen(
            [
                sys.executable,
                __file__,
                "produce",
                "--bootstrap",
                kafka.bootstrap,
                "--prefix",
                prefix,
                "--ca",
                str(workdir / "ca.pem"),
                "--index",
                str(k),
                "--producers",
                str(args.producers),
                "--total",
                str(n),
                "--large",
                str(args.large),
                "--signed",
                str(args.signed),
            ],
            stdout=subprocess.PIPE,
            text=True,
        )
        for k in range(args.producers)
    ]
    try:
        counts: dict[str, float] = {}
        last_report = time.monotonic()
        while True:
            counts = outcomes(url)
            done = sum(counts.values())
            if done >= n or time.monotonic() > give_up:
                end = time.time()
                break
            if any(p.poll() not in (None, 0) for p in producers) or proc.poll() is not None:
                raise RuntimeError("a producer or the daemon stopped early")
            if time.monotonic() - last_report > 60:
                last_report = time.monotonic()
                print(f"  ... {done:,.0f} of {n:,} processed", flush=True)
            time.sleep(0.5)
        cpu = cpu_seconds(proc.pid) - cpu0
        reports = [
            json.loads(p.communicate(timeout=600)[0].strip().splitlines()[-1]) for p in producers
        ]
    finally:
        stop_daemons(daemons)
        for p in producers:
            if p.poll() is None:
                p.kill()
    first = min(r["first"] for r in reports if r)
    total = end - first
    processed = int(sum(counts.values()))
    rate = processed / total
    appended = max((r["last"] for r in reports if r), default=end) - first
    if processed < n:
        print(
            f"OUT OF TIME after {args.budget:g} min: {processed:,} of {n:,} processed; at "
            f"{rate:.0f}/s the whole would take {n / rate / 60:.0f} min",
            flush=True,
        )
    routed = int(counts.get("routed", 0))
    sent = sum(r.get("sent", 0) for r in reports)
    gib = sum(r.get("bytes", 0) for r in reports) / 2**30
    print(
        f"pipeline: {processed:,} envelopes ({gib:.1f} GiB) in "
        f"{total:.0f} s = {total / 60:.1f} min (goal <= {GOAL_TOTAL_S / 60:.0f} min): "
        f"{rate:.0f} envelopes/s, {rate * per:.2f}x the one-thread crypto floor; "
        f"daemon CPU {cpu / processed * 1000:.2f} ms per envelope ({cpu / processed / per:.2f}x "
        f"the floor's {per * 1000:.2f} ms); appends done after {appended:.0f} s",
        flush=True,
    )
    print(f"outcomes: {json.dumps({k: int(v) for k, v in counts.items()})}", flush=True)
    return {
        "sent": sent,
        "processed": processed,
        "signed": sum(r.get("signed", 0) for r in reports),
        "routed": routed,
        "outcomes": {k: int(v) for k, v in counts.items()},
        "total_s": round(total, 1),
        "envelopes_per_s": round(rate, 1),
        "floor_ratio": round(rate * per, 3),
        "cpu_ms_per_envelope": round(cpu / processed * 1000, 3),
    }


def last_json(out: str) -> dict:
    """A producer's report (empty when it was stopped before it could print one)."""
    lines = out.strip().splitlines()
    return json.loads(lines[-1]) if lines else {}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("mode", nargs="?", default="run", choices=["run", "produce"])
    ap.add_argument("--scale", type=float, default=1.0, help="share of the province-year")
    ap.add_argument("--quick", action="store_true", help="0.5 %% of the year (CI)")
    ap.add_argument("--producers", type=int, default=2)
    ap.add_argument("--processes", type=int, default=0, help="pipeline worker processes")
    ap.add_argument("--partitions", type=int, default=6)
    ap.add_argument("--large", type=float, default=0.0005, help="share of 1-5 MB envelopes")
    ap.add_argument("--signed", type=float, default=0.01, help="share signed by the sender")
    ap.add_argument("--keep", action="store_true", help="keep the daemons' folders")
    ap.add_argument(
        "--budget", type=float, default=120, help="minutes the pipeline run may take at most"
    )
    ap.add_argument(
        "--ready-within", type=float, default=3600, help="seconds a start-up may take at most"
    )
    # the producer processes' own arguments
    ap.add_argument("--bootstrap")
    ap.add_argument("--prefix")
    ap.add_argument("--ca")
    ap.add_argument("--index", type=int, default=0)
    ap.add_argument("--total", type=int, default=0)
    args = ap.parse_args()
    if args.mode == "produce":
        asyncio.run(produce(args))
        return
    if args.quick:
        args.scale = min(args.scale, 0.005)
        args.large = max(args.large, 0.002)  # a few large ones even in the small run
    summary = run(args)
    expected = summary["envelopes"]
    outs = summary["outcomes"]
    complete = (
        summary["sent"] == expected
        and summary["routed"] == expected
        and sum(outs.values()) == expected  # type: ignore[union-attr]
        and summary.get("events_routed") == expected
        and summary.get("messages_routed") == expected
    )
    summary["exactly_once"] = (
        summary["routed"] == summary["processed"] == sum(outs.values())  # type: ignore[union-attr]
    )
    summary["complete"] = complete
    print(json.dumps(summary))
    if not complete:
        sys.exit(1)


if __name__ == "__main__":
    main()
