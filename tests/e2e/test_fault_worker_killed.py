"""Fault: a pipeline worker process killed with -9 (as the OOM killer does) under load.

The daemon's pool of worker processes breaks; it is rebuilt without a restart of the
daemon, /readyz answers 503 naming why while no batch can be processed and 200 again
after, `docbroker_pipeline_pool_rebuilds_total` counts each rebuild, and every
document is still delivered exactly once, with no refusal and no status 02.
"""

from __future__ import annotations

import json
import os
import signal
import time

import pytest

from tests.e2e.conftest import DaemonFactory
from tests.e2e.faults import EVERY_BACKEND, Submitters, check, metric, pipeline_workers, readyz
from tests.edxml_samples import document
from tests.ledger import Expected

pytestmark = [pytest.mark.e2e, pytest.mark.slow, EVERY_BACKEND]

SENDER = "000.00.00.H35"
RECIPIENTS = ("000.00.01.H35", "000.00.02.H35")
CODES = ("H35.S01", "H35.S02")
SUBMISSIONS = {"kafka": 600, "kafka-cluster": 300, "embedded": 300}
KILLS = 2


def doc_id(n: int) -> str:
    return f"{SENDER},2026/11/24,{n}/WORKER"


def until_ready_status(url: str, status: int, timeout: float) -> str:
    """Poll /readyz until it answers `status`; the pipeline check it gave then."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got, body = readyz(url)
        if got == status:
            return json.loads(body)["checks"]["pipeline"]
        time.sleep(0.02)
    raise AssertionError(f"/readyz did not answer {status} within {timeout} s")


@pytest.mark.timeout(600)
def test_a_killed_worker_process_is_replaced_and_nothing_is_lost_or_doubled(
    daemons: DaemonFactory, daemon_env: dict[str, str], backend: str
) -> None:
    total = SUBMISSIONS[backend]
    daemon = daemons("workers")
    assert daemon.proc is not None
    pid = daemon.proc.pid
    token = daemon.client_for(SENDER).token or ""
    submitters = Submitters(
        lambda n: (doc_id(n), document(SENDER, RECIPIENTS, doc_id(n))),
        total,
        token=lambda _: token,
        urls=lambda _: daemon.url,
        interval=0.02,
    ).start()
    reasons = []
    for k in range(KILLS):
        while len(submitters.accepted) < total * (k + 1) // (KILLS + 1):
            time.sleep(0.05)
        workers = pipeline_workers(pid)
        assert workers, "the daemon runs its pipeline in worker processes"
        os.kill(workers[0], signal.SIGKILL)
        reasons.append(until_ready_status(daemon.url, 503, timeout=30))
        until_ready_status(daemon.url, 200, timeout=120)
        assert workers[0] not in pipeline_workers(pid)
    submitters.join(300)
    assert len(submitters.accepted) == total
    assert daemon.proc.poll() is None and daemon.proc.pid == pid, "no restart"
    expected = Expected("H35", {doc_id(n): CODES for n in range(total)}, resent=submitters.resent)
    rebuilds = metric(daemon.url, "docbroker_pipeline_pool_rebuilds_total")
    _, problems = check(
        f"worker killed ({backend})",
        daemon_env,
        expected,
        total,
        kills=KILLS,
        pool_rebuilds=int(rebuilds),
    )
    assert problems == []
    assert rebuilds == KILLS
    assert all("worker process died" in r for r in reasons), reasons
