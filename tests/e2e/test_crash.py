"""Crash test: kill -9 the daemon at random moments while agencies submit, restart it,
and prove that nothing accepted is lost and nothing is delivered twice.

On real Kafka with 5,000 submissions (the pipeline's transactions, the fencing of
the killed member's producers, read_committed readers), and on the embedded
backend with fewer. The complete output is checked with tests/ledger.py: one
delivery per recipient, and no refusal, no dead letter and no status 02 at all,
not even about a document the client sent again after an answer lost in a crash
(the door answers such a resend with the first message id, or the pipeline records
the same bytes again as a duplicate)."""

from __future__ import annotations

import random
import signal
import time

import pytest

from tests.e2e.conftest import DaemonFactory
from tests.e2e.daemon import Daemon
from tests.e2e.faults import EVERY_BACKEND, Submitters, check
from tests.e2e.test_province import mailbox_deliveries
from tests.edxml_samples import document
from tests.ledger import Expected

pytestmark = [pytest.mark.e2e, pytest.mark.slow, EVERY_BACKEND]

SENDER = "000.00.00.H35"
RECIPIENTS = ("000.00.01.H35", "000.00.02.H35")
CODES = ("H35.S01", "H35.S02")
SUBMISSIONS = {"kafka": 5000, "kafka-cluster": 1500, "embedded": 1500}


def doc_id(n: int) -> str:
    return f"{SENDER},2026/11/24,{n + 1}/CRASH"


@pytest.mark.timeout(1500)
def test_kill_minus_nine_loses_nothing_and_duplicates_nothing(
    daemons: DaemonFactory, daemon_env: dict[str, str], backend: str
) -> None:
    total = SUBMISSIONS[backend]
    daemon: Daemon = daemons("crashy")
    token = daemon.client_for(SENDER).token or ""  # its token is made and accepted
    submitters = Submitters(
        lambda n: (doc_id(n), document(SENDER, RECIPIENTS, doc_id(n))),
        total,
        token=lambda _: token,
        urls=lambda _: daemon.url,  # the same port after each restart
        threads=6,
    ).start()
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
    expected = {(doc, r) for doc in submitters.accepted for r in CODES}
    deliveries = mailbox_deliveries(daemon_env, expected, timeout=300)
    missing = expected - set(deliveries)
    twice = {k: n for k, n in deliveries.items() if n > 1}
    assert not missing, f"lost: {sorted(missing)[:10]}"
    assert not twice, f"delivered more than once: {sorted(twice.items())[:10]}"
    # And nothing else: no refusal, no dead letter, no status 02, each accepted once.
    resent = submitters.resent
    ledger = Expected("H35", dict.fromkeys(submitters.accepted, CODES), resent=resent)
    _, problems = check(
        f"crash ({backend})",
        daemon_env,
        ledger,
        total,
        timeout=300,
        kills=kills,
        resent=len(resent),
        posts=sum(submitters.posts.values()),
    )
    assert problems == [], problems[:20]
