#!/usr/bin/env python3
"""Fetching on real Kafka: agencies (200) long-poll their mailboxes, fetch each 10 KB
envelope and acknowledge it while envelopes arrive at a fixed rate (100/s, submitted
over HTTP to one daemon); the fetch's latency beside the floor measured in the same run.

- fetch: the GET of one envelope (its first fetch: the daemon reads the record from
  the log and records the delivery), p50 and p99; goal: p99 <= 50 ms;
- floor: right after each fetch the same client GETs an envelope its mailbox does not
  hold (authenticated, the same route and mailbox-view lookup, answered 404: the fetch
  without reading the log and recording the delivery), so at the same concurrency on
  the same loaded daemon; the ratio is fetch p99 / floor p99;
- delivery: submit (before the POST) -> fetched (the body read), p50 and p99;
- fetches/s over the measured part, and CPU seconds: the daemon's (with its pipeline
  workers) per envelope, the clients' share of a core (a client side near 100 % would
  be the bottleneck: --client-processes 2).

Each agency's loop: `GET /v1/mailboxes/{agency}/envelopes?after=&wait=` (long poll),
then for each entry `GET .../envelopes/{message_id}` (size and sha256 checked) and
`POST .../ack`. The senders are not among the polling agencies (the status 01 each
acknowledgement sends them waits in their mailboxes). Every envelope submitted must
be fetched exactly once: the summary (last stdout line, JSON) counts them, and the
run exits non-zero when a count is off (with --strict also when the goal is missed).

    .venv/bin/python bench/bench_fetch.py [--agencies 200] [--rate 100] [--seconds 60]
        [--client-processes 1] [--quick] [--strict]

It starts its own Kafka (bin/kafka-local) unless DOCBROKER_BENCH_KAFKA_BOOTSTRAP is set.
DOCBROKER_BENCH_KEEP=1 keeps its work folder (the daemon's log);
DOCBROKER_BENCH_PROFILE=FILE records the daemon with py-spy (raw format) while measured.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import json
import multiprocessing as mp
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import uuid
from collections import Counter
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.bench_pipeline import (  # noqa: E402
    DIRECTORY,
    Kafka,
    daemon_env,
    make_envelopes,
    sender_keys,
    senders,
    start_daemons,
    stop_daemons,
)
from bench.common import cpu_seconds, quantile, summary_line, tree_cpu_seconds  # noqa: E402
from broker.cli.client import ApiProblem, DocbrokerClient  # noqa: E402
from broker.directory.io import parse_file  # noqa: E402
from broker.keys.devpki import issue, make_ca  # noqa: E402
from tests.credentials import daemon_tokens  # noqa: E402
from tests.edxml_samples import sender_of  # noqa: E402

GOAL_P99_S = 0.05
WAIT_S = 20  # each long poll's `wait`
WARM = 200  # envelopes before the measured part (groups joined, connections warm)
ABSENT = "bench-absent-0"  # the floor's message id: in no mailbox


def recipients_directory(n: int, path: Path, others: Sequence[str] = ()) -> list[str]:
    """Write a seed directory: the example one and as many synthetic local agencies as
    it takes for `n` recipients that are neither senders nor `others`; their code102s."""
    text = DIRECTORY.read_text(encoding="utf-8")
    agencies, _ = parse_file(DIRECTORY.name, text)
    taken = {*senders(), *others}
    codes = [a.code102 for a in agencies if a.local and a.code102 not in taken][:n]
    extra = []
    for i in range(n - len(codes)):
        code102 = f"000.9{i // 100}.{i % 100:02d}.H35"
        extra.append(
            f'\n[[agency]]\ncode = "H35.B{i:03d}"\ncode102 = "{code102}"\n'
            f'name = "Bench agency {i}"\nparent = "H35"\nlevel = "ban ngành"\n'
            'kind = "state"\nlocal = true\nstatus = "active"\n'
        )
        codes.append(code102)
    path.write_text(text + "".join(extra), encoding="utf-8")
    _, problems = parse_file(path.name, path.read_text(encoding="utf-8"))
    assert not problems, problems
    return codes


# -- the clients (in their own processes: their CPU is measured apart)


class Tally:
    """What one client process saw."""

    def __init__(self) -> None:
        self.fetches: list[tuple[str, float, float, bool]] = []  # doc id, s, wall, intact
        self.probes: list[tuple[float, float]] = []  # s, wall
        self.errors: Counter[str] = Counter()


async def _agency(session: Any, url: str, code: str, tally: Tally, fetched: Any) -> None:
    """Long-poll, fetch, acknowledge, probe the floor; forever (cancelled at the end)."""
    import aiohttp

    box = f"{url}/v1/mailboxes/{urllib.parse.quote(code, safe='')}/envelopes"
    after = 0
    while True:
        try:
            async with session.get(box, params={"after": after, "wait": WAIT_S}) as resp:
                if resp.status != 200:
                    tally.errors[f"list {resp.status}"] += 1
                    await asyncio.sleep(0.5)
                    continue
                page = await resp.json()
            for entry in page["envelopes"]:
                mid = urllib.parse.quote(entry["message_id"], safe="")
                started = time.perf_counter()
                async with session.get(f"{box}/{mid}") as resp:
                    body = await resp.read()
                    status = resp.status
                took = time.perf_counter() - started
                if status != 200:
                    tally.errors[f"fetch {status}"] += 1
                    continue
                intact = (
                    len(body) == entry["size"]
                    and hashlib.sha256(body).hexdigest() == entry["sha256"]
                )
                tally.fetches.append((entry["document_id"], took, time.time(), intact))
                with fetched.get_lock():
                    fetched.value += 1
                async with session.post(f"{box}/{mid}/ack") as resp:
                    await resp.read()
                    if resp.status != 200:
                        tally.errors[f"ack {resp.status}"] += 1
                started = time.perf_counter()
                async with session.get(f"{box}/{ABSENT}") as resp:
                    await resp.read()
                    if resp.status != 404:
                        tally.errors[f"floor {resp.status}"] += 1
                tally.probes.append((time.perf_counter() - started, time.time()))
            after = page["next_after"]
        except (aiohttp.ClientError, TimeoutError) as exc:
            tally.errors[type(exc).__name__] += 1
            await asyncio.sleep(0.5)


async def _clients(url: str, tokens: dict[str, str], stop: Any, fetched: Any) -> Tally:
    import aiohttp

    tally = Tally()
    timeout = aiohttp.ClientTimeout(total=WAIT_S + 60)
    sessions = [
        aiohttp.ClientSession(
            headers={"Authorization": f"Bearer {token}"},
            connector=aiohttp.TCPConnector(limit=2),
            timeout=timeout,
        )
        for token in tokens.values()
    ]
    tasks = [
        asyncio.create_task(_agency(s, url, code, tally, fetched))
        for s, code in zip(sessions, tokens, strict=True)
    ]
    await asyncio.to_thread(stop.wait)
    for t in tasks:
        t.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    for s in sessions:
        await s.close()
    return tally


def client_process(url: str, tokens: dict[str, str], out: str, stop: Any, fetched: Any) -> None:
    """One client process: its agencies' loops until `stop`, then its tally to `out`."""
    started, cpu = time.monotonic(), time.process_time()
    tally = asyncio.run(_clients(url, tokens, stop, fetched))
    Path(out).write_text(
        json.dumps(
            {
                "fetches": tally.fetches,
                "probes": tally.probes,
                "errors": dict(tally.errors),
                "cpu_s": time.process_time() - cpu,
                "wall_s": time.monotonic() - started,
            }
        )
    )


# -- the submitter (this process, a few threads)


class Submitter:
    """Submits envelopes as their senders, at given times, from a few threads (at most
    IN_FLIGHT at once: a daemon slower than the rate gets what it can take)."""

    IN_FLIGHT = 16

    def __init__(self, url: str, tokens: dict[str, str]) -> None:
        self.clients = {code: DocbrokerClient(url, token=t) for code, t in tokens.items()}
        self.pool = ThreadPoolExecutor(self.IN_FLIGHT)
        self.slots = threading.BoundedSemaphore(self.IN_FLIGHT)
        self.lock = threading.Lock()
        self.accepted: dict[str, float] = {}  # document id -> wall time before the POST
        self.refused: Counter[str] = Counter()

    def _one(self, data: bytes) -> None:
        at = time.time()
        try:
            answer = self.clients[sender_of(data) or ""].submit(data)
        except ApiProblem as exc:
            with self.lock:
                self.refused[str(exc.status)] += 1
            return
        finally:
            self.slots.release()
        with self.lock:
            self.accepted[answer["document_id"]] = at

    def at_rate(self, envelopes: Iterable[bytes], rate: float) -> float:
        """Submit at `rate` per second; the rate achieved (the daemon may answer slower)."""
        start = time.monotonic()
        futures = []
        for i, data in enumerate(envelopes):
            delay = start + i / rate - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            self.slots.acquire()
            futures.append(self.pool.submit(self._one, data))
        for f in futures:
            f.result()
        return len(futures) / (time.monotonic() - start)


def wait_until(predicate: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out waiting for {what}")
        time.sleep(0.1)


def wait_for_tokens(url: str, token: str) -> None:
    """The daemon follows the directory: new tokens work within a moment."""
    client = DocbrokerClient(url, token=token)
    deadline = time.monotonic() + 30
    while True:
        try:
            client.agencies()
            return
        except ApiProblem:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def profile(pid: int) -> subprocess.Popen[bytes] | None:
    out = os.environ.get("DOCBROKER_BENCH_PROFILE")
    if not out:
        return None
    spy = Path(sys.executable).parent / "py-spy"
    return subprocess.Popen(
        [str(spy), "record", "--format", "raw", "-o", out, "--pid", str(pid), "--threads"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


class Deployment:
    """Kafka, one daemon whose directory has `agencies` recipients (besides the
    senders), their tokens, a submitter, and client processes polling every
    recipient's mailbox (from `start_clients`); `others`: agencies of the example
    directory that get tokens too but are not polled."""

    def __init__(
        self,
        agencies: int,
        partitions: int,
        client_processes: int = 1,
        others: Sequence[str] = (),
    ) -> None:
        self.ca = make_ca("bench CA")
        self.broker = issue(self.ca, "docbroker bench", uid="000.99.99.H35")
        self.keys = sender_keys(self.ca)
        self.workdir = Path(tempfile.mkdtemp(prefix="bench-fetch-"))
        self.seed = self.workdir / "directory.toml"
        self.recipients = recipients_directory(agencies, self.seed, others)
        self.others = list(others)
        self.partitions = partitions
        self.client_processes = client_processes
        self.tag = uuid.uuid4().hex[:6]
        self._ctx = mp.get_context("spawn")
        self.stop, self.fetched = self._ctx.Event(), self._ctx.Value("l", 0)
        self._clients: list[tuple[Any, str]] = []
        self._stack = contextlib.ExitStack()

    def envelopes(self, n: int, what: str) -> list[bytes]:
        return make_envelopes(n, self.ca, f"{what}{self.tag}", self.recipients, self.keys)

    def __enter__(self) -> Deployment:
        try:
            self._start()
        except BaseException:
            self.__exit__()
            raise
        return self

    def _start(self) -> None:
        kafka = self._stack.enter_context(Kafka())
        self._stack.callback(self._remove_workdir)
        self.env = {
            **daemon_env(f"bench.{self.tag}.", kafka, self.partitions),
            "DOCBROKER_DIRECTORY_SEED_FILE": str(self.seed),
            "DOCBROKER_HTTP_RATE_LIMIT": "0",  # one submitter stands for every sender
        }
        daemons = start_daemons(1, self.workdir, self.env, self.ca, self.broker)
        self._stack.callback(stop_daemons, daemons)
        self._stack.callback(self._end_clients)
        self.proc, self.url, _ = daemons[0]
        self.tokens = daemon_tokens(
            {**self.env, "DOCBROKER_DATA_DIR": str(self.workdir)},
            [*senders(), *self.recipients, *self.others],
        )
        wait_for_tokens(self.url, self.tokens[self.recipients[-1]])
        self.submitter = Submitter(self.url, self.tokens)

    def start_clients(self) -> None:
        """The client processes, polling every recipient's mailbox from now on."""
        n = self.client_processes
        for i, part in enumerate(self.recipients[i::n] for i in range(n)):
            out = str(self.workdir / f"clients{i}.json")
            mine = {code: self.tokens[code] for code in part}
            p = self._ctx.Process(
                target=client_process, args=(self.url, mine, out, self.stop, self.fetched)
            )
            p.start()
            self._clients.append((p, out))

    def __exit__(self, *exc: object) -> None:
        self._stack.close()

    def all_fetched(self, timeout: float, what: str) -> None:
        """Wait until the clients fetched as many as were taken in."""
        wait_until(lambda: self.fetched.value >= len(self.submitter.accepted), timeout, what)

    def tallies(self) -> list[dict[str, Any]]:
        """Stop the clients; what they saw."""
        time.sleep(1)  # a duplicate would show up now
        self.stop.set()
        out = []
        for p, path in self._clients:
            p.join(60)
            out.append(json.loads(Path(path).read_text()))
        return out

    def left_pending(self) -> int:
        """Entries still unacknowledged in the recipients' mailboxes."""
        return sum(
            len(DocbrokerClient(self.url, token=self.tokens[c]).inbox(c)["envelopes"])
            for c in self.recipients
        )

    def _end_clients(self) -> None:
        self.stop.set()
        for p, _ in self._clients:
            p.join(10)
            if p.is_alive():
                p.terminate()

    def _remove_workdir(self) -> None:
        if os.environ.get("DOCBROKER_BENCH_KEEP"):
            print(f"kept {self.workdir} (the daemon's log is node0/daemon.log)", flush=True)
        else:
            shutil.rmtree(self.workdir, ignore_errors=True)


def run(args: argparse.Namespace) -> dict[str, Any]:
    count = int(args.rate * args.seconds)
    dep = Deployment(args.agencies, args.partitions, args.client_processes)
    print(
        f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs; {args.agencies} agencies, "
        f"{WARM} + {count} signed 10 KB envelopes at {args.rate:g}/s ...",
        flush=True,
    )
    warm = dep.envelopes(WARM, "WARM")
    measured = dep.envelopes(count, "FETCH")
    with dep:
        dep.start_clients()
        pid = dep.proc.pid
        dep.submitter.at_rate(warm, args.rate)
        dep.all_fetched(120, "the warm-up")
        spy = profile(pid)
        cpu0, t0, wall0 = tree_cpu_seconds(pid), time.monotonic(), time.time()
        loop0 = cpu_seconds(pid)
        achieved = dep.submitter.at_rate(measured, args.rate)
        dep.all_fetched(120, "the last fetches")
        cpu1, t1 = tree_cpu_seconds(pid), time.monotonic()
        loop_cpu = cpu_seconds(pid) - loop0
        if spy is not None:
            spy.send_signal(signal.SIGINT)  # py-spy writes its file on SIGINT
            spy.wait(60)
        tallies = dep.tallies()
        left = dep.left_pending()
    s = figures(args, dep.submitter, tallies, left, wall0, t1 - t0, cpu1 - cpu0, count)
    s["daemon_main_cpu_share"] = loop_cpu / (t1 - t0)
    s["submitted_per_s"] = achieved
    return s


def counts(submitter: Submitter, tallies: list[dict[str, Any]], left: int) -> dict[str, Any]:
    """Was every envelope taken in fetched exactly once, intact, and acknowledged?"""
    fetches = [f for t in tallies for f in t["fetches"]]
    times = Counter(doc for doc, *_ in fetches)
    accepted = submitter.accepted
    errors: Counter[str] = Counter()
    for t in tallies:
        errors.update(t["errors"])
    return {
        "submitted": len(accepted),
        "refused": sum(submitter.refused.values()),
        "fetched": len(times),
        "fetched_once": sum(1 for d in accepted if times[d] == 1),
        "missing": sum(1 for d in accepted if times[d] == 0),
        "duplicates": sum(1 for n in times.values() if n > 1),
        "unexpected": sum(1 for d in times if d not in accepted),
        "damaged": sum(1 for f in fetches if not f[3]),
        "left_pending": left,
        "errors": dict(errors),
    }


def figures(
    args: argparse.Namespace,
    submitter: Submitter,
    tallies: list[dict[str, Any]],
    left: int,
    wall0: float,
    seconds: float,
    daemon_cpu: float,
    count: int,
) -> dict[str, Any]:
    fetches = [f for t in tallies for f in t["fetches"]]
    accepted = submitter.accepted
    measured = [f for f in fetches if f[0] in accepted and "/FETCH" in f[0]]
    fetch_s = [f[1] for f in measured]
    delivery_s = [f[2] - accepted[f[0]] for f in measured]
    probes = [p[0] for t in tallies for p in t["probes"] if p[1] >= wall0]
    p99, floor99 = quantile(fetch_s, 0.99), quantile(probes, 0.99)
    return {
        "agencies": args.agencies,
        "rate": args.rate,
        "expected": WARM + count,
        **counts(submitter, tallies, left),
        "measured": len(measured),
        "fetches_per_s": len(measured) / seconds,
        "fetch_p50_s": quantile(fetch_s, 0.5),
        "fetch_p99_s": p99,
        "floor_p50_s": quantile(probes, 0.5),
        "floor_p99_s": floor99,
        "ratio_p99": p99 / floor99,
        "delivery_p50_s": quantile(delivery_s, 0.5),
        "delivery_p99_s": quantile(delivery_s, 0.99),
        "daemon_cpu_ms_per_envelope": daemon_cpu / count * 1000,
        "client_cpu_share": [t["cpu_s"] / t["wall_s"] for t in tallies],
        "goal_p99_s": GOAL_P99_S,
    }


def report(s: dict[str, Any]) -> None:
    ms = 1000
    print(
        f"fetch: {s['fetches_per_s']:.0f} fetches/s ({s['measured']} measured, "
        f"{s['agencies']} agencies, {s['submitted_per_s']:.0f} of {s['rate']:g} envelopes/s "
        "submitted); "
        f"fetch p50 {s['fetch_p50_s'] * ms:.1f} ms, p99 {s['fetch_p99_s'] * ms:.1f} ms "
        f"(goal <= {GOAL_P99_S * ms:.0f} ms)"
    )
    print(
        f"floor (authenticated GET of an absent envelope, same clients): p50 "
        f"{s['floor_p50_s'] * ms:.1f} ms, p99 {s['floor_p99_s'] * ms:.1f} ms; "
        f"fetch p99 / floor p99 = {s['ratio_p99']:.1f}x"
    )
    print(
        f"delivery (submit -> fetched): p50 {s['delivery_p50_s'] * ms:.0f} ms, "
        f"p99 {s['delivery_p99_s'] * ms:.0f} ms"
    )
    shares = ", ".join(f"{x * 100:.0f} %" for x in s["client_cpu_share"])
    print(
        f"CPU: daemon (with its workers) {s['daemon_cpu_ms_per_envelope']:.1f} ms per envelope "
        f"(submit, route, fetch, ack, status 01), its main process "
        f"{s['daemon_main_cpu_share'] * 100:.0f} % of a core; client processes {shares}"
    )
    print(
        f"counts: {s['submitted']} submitted, {s['fetched_once']} fetched once, "
        f"{s['missing']} missing, {s['duplicates']} twice or more, {s['unexpected']} "
        f"unexpected, {s['damaged']} damaged, {s['left_pending']} left pending; "
        f"errors {s['errors'] or 'none'}"
    )


def counts_ok(s: dict[str, Any]) -> bool:
    """Every envelope expected was taken in, fetched once, intact, and acknowledged."""
    return (
        s["submitted"] == s["expected"]
        and s["refused"] == 0
        and s["fetched_once"] == s["submitted"]
        and s["duplicates"] == s["unexpected"] == s["damaged"] == s["left_pending"] == 0
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--agencies", type=int, default=200)
    ap.add_argument("--rate", type=float, default=100.0, help="envelopes/s submitted")
    ap.add_argument("--seconds", type=float, default=60.0, help="of submissions measured")
    ap.add_argument("--partitions", type=int, default=6)
    ap.add_argument("--client-processes", type=int, default=1)
    ap.add_argument("--quick", action="store_true", help="50 agencies, 10 s")
    ap.add_argument("--strict", action="store_true", help="exit 1 when the goal is missed")
    args = ap.parse_args()
    if args.quick:
        args.agencies, args.seconds = 50, 10.0
    s = run(args)
    report(s)
    ok = counts_ok(s)
    s["counts_ok"] = ok
    summary_line(s)
    if not ok or (args.strict and s["fetch_p99_s"] > GOAL_P99_S):
        sys.exit(1)


if __name__ == "__main__":
    main()
