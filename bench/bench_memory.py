#!/usr/bin/env python3
"""The daemon's memory on real Kafka: one large envelope, then a soak.

(a) large: one envelope of about 20 MB (a document with one attachment of 15 MB,
    base64 in the XML, signed by its sender) is submitted over HTTP, routed, fetched
    and acknowledged; the peak RSS growth of the daemon and of each pipeline worker
    process (VmHWM after, restarted at the RSS before: /proc/PID/clear_refs) against
    the envelope's size, the floor: whatever the daemon does, it holds the envelope
    once. Goal: growth <= 5x the size.
(b) soak: envelopes (10 KB, signed) submitted at 100/s for --minutes (30) while
    every recipient long-polls, fetches and acknowledges (bench/bench_fetch.py's
    clients); the RSS of the daemon and its workers (summed) sampled every few
    seconds; after the warm-up (the first 20 % of the time) it must stay flat within
    10 % (max / min <= 1.10). Every envelope must be fetched exactly once.

The summary (last stdout line, JSON) has the figures and the counts; the run exits
non-zero when a count is off, and with --strict also when a goal is missed.

    .venv/bin/python bench/bench_memory.py [--mb 20] [--minutes 30] [--quick] [--strict]

--quick: (a) as it is, (b) for 1 minute. It starts its own Kafka (bin/kafka-local)
unless DOCBROKER_BENCH_KAFKA_BOOTSTRAP is set.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.bench_fetch import Deployment, counts  # noqa: E402
from bench.common import mib, reset_peak, role, summary_line, tree, tree_memory  # noqa: E402
from broker.cli.client import DocbrokerClient  # noqa: E402
from broker.keys.devpki import issue  # noqa: E402
from tests.edxml_samples import full_document  # noqa: E402
from tests.trust.signing import sign_as_sender  # noqa: E402

GOAL_GROWTH = 5.0  # x the envelope
GOAL_FLAT = 1.10  # max / min RSS after the warm-up
WARM_UP = 0.2  # of the soak's time
SENDER, RECIPIENT = "000.00.00.H35", "000.00.01.H35"
SECOND_TO = b"<edXML:To><edXML:OrganId>000.00.02.H35</edXML:OrganId></edXML:To>"


def large_envelope(mb: float, dep: Deployment) -> bytes:
    """About `mb` MiB of XML: one attachment of 3/4 of it (base64), to RECIPIENT only,
    signed by its sender."""
    payload = os.urandom(int(mb * 2**20 * 3 / 4))
    data = full_document(attachments={"cid:large": payload})
    assert SECOND_TO in data
    data = data.replace(SECOND_TO, b"")
    return sign_as_sender(data, issue(dep.ca, f"sender {SENDER}", uid=SENDER))


class Peaks:
    """Each process's peak RSS growth over steps: VmHWM restarted at each step's start
    (/proc/PID/clear_refs), read at its end."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.before = {m.pid: m for m in tree_memory(pid)}
        self.reset = True
        self.steps: dict[str, dict[int, int]] = {}  # step -> pid -> its peak RSS
        self.starts: dict[str, dict[int, int]] = {}  # step -> pid -> RSS at its start
        self._start: dict[int, int] = {}

    def begin(self) -> None:
        self._start = {m.pid: m.rss for m in tree_memory(self.pid)}
        self.reset = all(reset_peak(p) for p in self._start) and self.reset

    def end(self, step: str) -> None:
        self.steps[step] = {m.pid: m.hwm for m in tree_memory(self.pid)}
        self.starts[step] = self._start

    def growth(self) -> dict[int, int]:
        """Per process: its peak in any step above its RSS before the first."""
        return {
            p: max(s.get(p, 0) for s in self.steps.values()) - m.rss for p, m in self.before.items()
        }

    def step_growth(self, step: str) -> dict[int, int]:
        """Per process: its peak in `step` above its RSS at the step's start."""
        start = self.starts[step]
        return {p: self.steps[step].get(p, 0) - start.get(p, 0) for p in self.before}


def large(dep: Deployment, data: bytes) -> dict[str, Any]:
    """Submit, fetch and acknowledge one large envelope: each process's peak growth,
    in all and per step (accept: the POST; route: until the mailbox lists it; fetch:
    the GET and the acknowledgement)."""
    peaks = Peaks(dep.proc.pid)
    sender = DocbrokerClient(dep.url, token=dep.tokens[SENDER], timeout=300)
    recipient = DocbrokerClient(dep.url, token=dep.tokens[RECIPIENT], timeout=300)
    started = time.monotonic()
    peaks.begin()
    accepted = sender.submit(data)
    peaks.end("accept")
    peaks.begin()
    deadline = time.monotonic() + 300
    entry = None
    while entry is None and time.monotonic() < deadline:
        listed = recipient.inbox(RECIPIENT, wait=10)["envelopes"]
        entry = next((e for e in listed if e["document_id"] == accepted["document_id"]), None)
    assert entry is not None, "the large envelope did not reach its mailbox"
    peaks.end("route")
    peaks.begin()
    body = recipient.fetch(RECIPIENT, entry["message_id"]).body
    recipient.ack(RECIPIENT, entry["message_id"])
    peaks.end("fetch")
    took = time.monotonic() - started
    growth = peaks.growth()
    return {
        "size": len(data),
        "fetched_size": len(body),
        "intact": hashlib.sha256(body).hexdigest() == entry["sha256"],
        "seconds": took,
        "peaks_reset": peaks.reset,
        "processes": [
            {
                "pid": p,
                "name": role(p, dep.proc.pid),
                "rss_before": m.rss,
                "growth": growth[p],
                "steps": {step: peaks.step_growth(step)[p] for step in peaks.steps},
            }
            for p, m in peaks.before.items()
        ],
        "growth": sum(growth.values()),
        "ratio": sum(growth.values()) / len(data),
    }


class Sampler:
    """The RSS of a process tree (summed) every `every` seconds, in a thread."""

    def __init__(self, pid: int, every: float) -> None:
        self.pid, self.every = pid, every
        self.samples: list[tuple[float, int]] = []  # (seconds since start, bytes)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        start = time.monotonic()
        while not self._stop.is_set():
            rss = sum(m.rss for m in tree_memory(self.pid))
            self.samples.append((time.monotonic() - start, rss))
            self._stop.wait(self.every)

    def __enter__(self) -> Sampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def soak(dep: Deployment, minutes: float, rate: float, every: float) -> dict[str, Any]:
    """Submit at `rate` for `minutes` while the clients fetch; the RSS samples."""
    seconds = minutes * 60

    def envelopes() -> Iterator[bytes]:
        """Made as they are submitted (a soak's worth would not fit in memory)."""
        end, chunk = time.monotonic() + seconds, 0
        while time.monotonic() < end:
            yield from dep.envelopes(int(rate), f"SOAK{chunk}x")
            chunk += 1

    dep.start_clients()
    with Sampler(dep.proc.pid, every) as sampler:
        achieved = dep.submitter.at_rate(envelopes(), rate)
        dep.all_fetched(300, "the soak's last fetches")
    tallies = dep.tallies()
    samples = sampler.samples
    after = [rss for t, rss in samples if t >= WARM_UP * seconds] or [0]
    return {
        "minutes": minutes,
        "submitted_per_s": achieved,
        "samples": len(samples),
        "rss_first": samples[0][1] if samples else 0,
        "rss_min": min(after),
        "rss_max": max(after),
        "rss_last": samples[-1][1] if samples else 0,
        "ratio": max(after) / max(1, min(after)),
        **counts(dep.submitter, tallies, dep.left_pending()),
    }


def report_large(s: dict[str, Any]) -> None:
    print(
        f"large: one envelope of {mib(s['size'])} (fetched {mib(s['fetched_size'])}, "
        f"{'intact' if s['intact'] else 'DAMAGED'}) in {s['seconds']:.1f} s; peak RSS growth "
        f"{mib(s['growth'])} = {s['ratio']:.1f}x the envelope (the floor: 1x; goal <= "
        f"{GOAL_GROWTH:g}x){'' if s['peaks_reset'] else ' (peaks counted from start)'}"
    )
    for p in s["processes"]:
        steps = ", ".join(f"{k} +{mib(v)}" for k, v in p["steps"].items())
        steps += " above the RSS at each step's start"
        print(
            f"  pid {p['pid']} {p['name']}: RSS {mib(p['rss_before'])} before, "
            f"peak +{mib(p['growth'])} ({steps})"
        )


def report_soak(s: dict[str, Any]) -> None:
    print(
        f"soak: {s['minutes']:g} min at {s['submitted_per_s']:.0f} envelopes/s submitted, "
        f"{s['samples']} RSS samples: first {mib(s['rss_first'])}; after the warm-up min "
        f"{mib(s['rss_min'])}, max {mib(s['rss_max'])}, max/min {s['ratio']:.3f} (goal <= "
        f"{GOAL_FLAT:.2f}); last {mib(s['rss_last'])}"
    )
    print(
        f"counts: {s['submitted']} submitted, {s['fetched_once']} fetched once, "
        f"{s['missing']} missing, {s['duplicates']} twice or more, {s['unexpected']} "
        f"unexpected, {s['damaged']} damaged, {s['left_pending']} left pending; "
        f"errors {s['errors'] or 'none'}"
    )


def counts_ok(large_: dict[str, Any], soak_: dict[str, Any]) -> bool:
    return (
        large_["intact"]
        and soak_["submitted"] > 0
        and soak_["refused"] == 0
        and soak_["fetched_once"] == soak_["submitted"]
        and soak_["duplicates"] == soak_["unexpected"] == soak_["damaged"] == 0
        and soak_["left_pending"] == 0
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--mb", type=float, default=20.0, help="the large envelope's MiB")
    ap.add_argument("--minutes", type=float, default=30.0, help="of the soak")
    ap.add_argument("--rate", type=float, default=100.0, help="envelopes/s in the soak")
    ap.add_argument("--agencies", type=int, default=20, help="recipients polling in the soak")
    ap.add_argument("--every", type=float, default=5.0, help="seconds between RSS samples")
    ap.add_argument("--partitions", type=int, default=6)
    ap.add_argument("--quick", action="store_true", help="the soak for 1 minute")
    ap.add_argument("--strict", action="store_true", help="exit 1 when a goal is missed")
    args = ap.parse_args()
    if args.quick:
        args.minutes, args.every = 1.0, 2.0
    dep = Deployment(args.agencies, args.partitions, others=(SENDER, RECIPIENT))
    print(
        f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs; a {args.mb:g} MiB envelope, "
        f"then {args.minutes:g} min at {args.rate:g} envelopes/s ...",
        flush=True,
    )
    data = large_envelope(args.mb, dep)
    with dep:
        print(f"daemon pid {dep.proc.pid}, processes {tree(dep.proc.pid)}", flush=True)
        big = large(dep, data)
        report_large(big)
        steady = soak(dep, args.minutes, args.rate, args.every)
        report_soak(steady)
    ok = counts_ok(big, steady)
    summary_line({"large": big, "soak": steady, "counts_ok": ok})
    missed = big["ratio"] > GOAL_GROWTH or steady["ratio"] > GOAL_FLAT
    if not ok or (args.strict and missed):
        sys.exit(1)


if __name__ == "__main__":
    main()
