"""Crash test: kill -9 the daemon at random moments while agencies submit, restart it,
and prove that nothing accepted is lost and nothing is delivered twice.

On real Kafka with 5,000 submissions (the pipeline's transactions, the fencing of
the killed member's producers, read_committed readers), and on the embedded
backend with fewer."""

from __future__ import annotations

import random
import signal
import threading
import time

import pytest

from broker.cli.client import ApiProblem, DocbrokerClient, Unreachable
from tests.e2e.conftest import DaemonFactory
from tests.e2e.daemon import Daemon
from tests.e2e.test_province import mailbox_deliveries
from tests.edxml_samples import document

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

RECIPIENTS = ("000.00.01.H35", "000.00.02.H35")
SUBMISSIONS = {"kafka": 5000, "embedded": 1500}


class Submitters:
    """Threads submitting distinct documents; a refused connection is retried (the
    daemon is down), so every document ends up accepted or refused as a duplicate."""

    def __init__(self, total: int, token: str, threads: int = 6) -> None:
        self.total = total
        self.token = token
        self.accepted: dict[str, str] = {}  # document id -> message id (202 received)
        self.duplicates: set[str] = set()  # retried after a lost answer: refused or accepted
        self.retries = 0
        self.url = ""
        self._lock = threading.Lock()
        self._next = 0
        self._threads = [threading.Thread(target=self._work, daemon=True) for _ in range(threads)]

    def start(self, url: str) -> None:
        self.url = url
        for t in self._threads:
            t.start()

    def join(self, timeout: float) -> None:
        for t in self._threads:
            t.join(timeout)

    def _take(self) -> int | None:
        with self._lock:
            if self._next >= self.total:
                return None
            self._next += 1
            return self._next

    def _work(self) -> None:
        while (n := self._take()) is not None:
            doc_id = f"000.00.00.H35,2026/11/24,{n}/CRASH"
            data = document(sender="000.00.00.H35", recipients=RECIPIENTS, document_id=doc_id)
            attempts = 0
            while True:
                try:
                    answer = DocbrokerClient(self.url, timeout=10, token=self.token).submit(data)
                    with self._lock:
                        self.accepted[doc_id] = answer["message_id"]
                    break
                except (Unreachable, ApiProblem, OSError):
                    attempts += 1
                    with self._lock:
                        self.retries += 1
                        if attempts == 1:
                            self.duplicates.add(doc_id)  # a lost answer may hide an append
                    time.sleep(0.2)


@pytest.mark.timeout(1500)
def test_kill_minus_nine_loses_nothing_and_duplicates_nothing(
    daemons: DaemonFactory, daemon_env: dict[str, str], backend: str
) -> None:
    total = SUBMISSIONS[backend]
    daemon: Daemon = daemons("crashy")
    daemon.client_for("000.00.00.H35")  # its token is made and accepted
    submitters = Submitters(total, daemon.tokens.token("000.00.00.H35"))
    submitters.start(daemon.url)
    rng = random.Random(20261124)
    # Kill at random points of the submission stream, then twice more while the
    # pipeline drains its backlog.
    thresholds = sorted(rng.sample(range(total // 20, total - total // 20), 5))
    kills = 0

    def kill_and_restart() -> Daemon:
        nonlocal kills
        assert daemon.proc is not None
        daemon.proc.send_signal(signal.SIGKILL)
        daemon.proc.wait()
        kills += 1
        return daemons("crashy", DOCBROKER_HTTP_PORT=str(daemon.port))

    deadline = time.monotonic() + 900
    for threshold in thresholds:
        while len(submitters.accepted) < threshold and time.monotonic() < deadline:
            time.sleep(0.01)
        daemon = kill_and_restart()
    while len(submitters.accepted) < total and time.monotonic() < deadline:
        time.sleep(0.1)
    for _ in range(2):
        time.sleep(rng.uniform(0.1, 1.0))
        daemon = kill_and_restart()
    submitters.join(60)
    assert len(submitters.accepted) == total, f"{len(submitters.accepted)} of {total} accepted"
    assert kills >= 3, "the test must actually crash the daemon"
    # Everything accepted reaches every recipient's mailbox exactly once.
    expected = {(doc, r) for doc in submitters.accepted for r in ("H35.S01", "H35.S02")}
    deliveries = mailbox_deliveries(daemon_env, expected, timeout=300)
    missing = expected - set(deliveries)
    twice = {k: n for k, n in deliveries.items() if n > 1}
    print(
        f"\n{backend}: {total} submissions, {kills} kills, {submitters.retries} retries, "
        f"{len(deliveries)} deliveries, {len(missing)} missing, {len(twice)} duplicated"
    )
    assert not missing, f"lost: {sorted(missing)[:10]}"
    assert not twice, f"delivered more than once: {sorted(twice.items())[:10]}"
