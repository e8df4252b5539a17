"""What the fault tests share: a daemon's pipeline worker processes, submitters, and the
deployment's complete output (tests/ledger.py) once it has settled."""

from __future__ import annotations

import contextlib
import os
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Callable, Mapping
from pathlib import Path

import pytest

from broker.cli.client import ApiProblem, DocbrokerClient, Unreachable
from tests.ledger import Expected, Ledger, audit_verifies

# Each fault scenario runs on the embedded backend, on the suite's single Kafka broker,
# and on its 3-node cluster (replication factor 3, min.insync.replicas 2).
EVERY_BACKEND = pytest.mark.parametrize(
    "backend",
    [
        "embedded",
        pytest.param("kafka", marks=pytest.mark.kafka),
        pytest.param("kafka-cluster", marks=[pytest.mark.kafka, pytest.mark.kafka_cluster]),
    ],
)

SENDER_CODE = {"000.00.00.H35": "H35"}  # code102 -> directory code, of the senders used


def pipeline_workers(pid: int) -> list[int]:
    """The pipeline's worker processes of the daemon `pid`: its children started by
    multiprocessing's spawn (not its resource tracker)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ")
        except OSError:
            continue
        if int(stat.rsplit(")", 1)[1].split()[1]) != pid:
            continue
        if b"multiprocessing.spawn" in cmdline and b"resource_tracker" not in cmdline:
            found.append(int(entry.name))
    return sorted(found)


def signal_each(pids: list[int], sig: int) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)


def readyz(url: str) -> tuple[int, str]:
    """The status of /readyz and its body."""
    try:
        with urllib.request.urlopen(f"{url}/readyz", timeout=5) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def metric(url: str, name: str) -> float:
    """The sum of every series of one metric of a daemon."""
    with urllib.request.urlopen(f"{url}/metrics", timeout=5) as resp:
        lines = resp.read().decode().splitlines()
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in lines
        if line.startswith(name) and line[len(name) : len(name) + 1] in ("{", " ")
    )


class Submitters:
    """Threads posting distinct documents; a refused connection or a 5xx is retried
    (the daemon may be down or not ready), so every document ends up accepted. Each
    document's POSTs are counted: a POST whose answer was lost may still have landed;
    so are the failed answers, by status (0: unreachable), and the 503s that came
    without a Retry-After."""

    def __init__(
        self,
        make: Callable[[int], tuple[str, bytes]],  # n -> (DocumentId, package)
        total: int,
        token: Callable[[bytes], str],
        urls: Callable[[int], str],  # attempt -> the daemon to try
        threads: int = 4,
        interval: float = 0.0,  # seconds each thread waits after an accepted submission
    ) -> None:
        self.make, self.total, self.token, self.urls = make, total, token, urls
        self.interval = interval
        self.accepted: dict[str, str] = {}  # DocumentId -> message id
        self.posts: dict[str, int] = {}
        self.failures: Counter[int] = Counter()  # HTTP status (0: unreachable) -> POSTs
        self.without_retry_after = 0  # 503s that did not say when to retry
        self._lock = threading.Lock()
        self._next = 0
        self._threads = [threading.Thread(target=self._work, daemon=True) for _ in range(threads)]

    def start(self) -> Submitters:
        for t in self._threads:
            t.start()
        return self

    def join(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        for t in self._threads:
            t.join(max(0.0, deadline - time.monotonic()))

    @property
    def resent(self) -> dict[str, int]:
        """Documents posted more than once, and how many times."""
        with self._lock:
            return {d: n for d, n in self.posts.items() if n > 1}

    def _take(self) -> int | None:
        with self._lock:
            if self._next >= self.total:
                return None
            self._next += 1
            return self._next - 1

    def _work(self) -> None:
        while (n := self._take()) is not None:
            doc_id, data = self.make(n)
            for attempt in range(600):
                with self._lock:
                    self.posts[doc_id] = self.posts.get(doc_id, 0) + 1
                try:
                    client = DocbrokerClient(self.urls(attempt), timeout=10, token=self.token(data))
                    answer = client.submit(data)
                except (Unreachable, ApiProblem, OSError) as exc:
                    self._failed(exc)
                    time.sleep(0.2)
                    continue
                with self._lock:
                    self.accepted[doc_id] = answer["message_id"]
                time.sleep(self.interval)
                break

    def _failed(self, exc: Exception) -> None:
        status = exc.status if isinstance(exc, ApiProblem) else 0
        with self._lock:
            self.failures[status] += 1
            if status == 503 and isinstance(exc, ApiProblem) and exc.retry_after is None:
                self.without_retry_after += 1


def settled(env: Mapping[str, str], expected: Expected, timeout: float) -> Ledger:
    """The ledger once every expected delivery and refusal is there (or `timeout` has
    passed) and the output has stopped growing for a few seconds: what is processed
    twice shows up late, so it must be waited for too."""
    deadline = time.monotonic() + timeout
    last: dict[str, int] | None = None
    while True:
        ledger = Ledger.read(env)
        summary = ledger.summary()
        complete = not ledger.missing(expected)
        if (complete and summary == last) or time.monotonic() > deadline:
            return ledger
        last = summary if complete else None
        time.sleep(3)


def check(
    name: str,
    env: Mapping[str, str],
    expected: Expected,
    submissions: int,
    timeout: float = 180,
    **figures: object,
) -> tuple[Ledger, list[str]]:
    """Read the settled ledger, print the scenario's figures, and return the ledger and
    every discrepancy (the audit trail's verdict included)."""
    ledger = settled(env, expected, timeout)
    problems = ledger.discrepancies(expected)
    intact, audit = audit_verifies(env)
    if not intact:
        problems.append(f"audit verify failed: {audit[-2000:]}")
    summary = ledger.summary()
    due = sum(len(r) for d, r in expected.documents.items() if d not in expected.refused)
    extra = "".join(f", {k} {v}" for k, v in figures.items())
    print(
        f"\n{name}: {submissions} submissions, deliveries {due} expected / "
        f"{summary['deliveries']} seen, refusals {len(expected.refused)} expected / "
        f"{summary['refusal_events']} seen ({summary['dead_letters']} dead letters), "
        f"false statuses {ledger.false_statuses(expected)}, "
        f"{len(problems)} discrepancies{extra}"
    )
    return ledger, problems
