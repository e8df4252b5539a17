"""The pipeline's worker processes and the stop signals.

A signal for the whole process group (Ctrl-C, `kill -TERM -PGID`, systemd's
KillMode=control-group) is the daemon's to act on: its workers live on until it
stops them, after the batch in hand. The daemon's own SIGTERM (the pool ending
the rest of a broken pool) still ends a worker at once, or a broken pool would
hang its shutdown.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from broker.config import load_settings
from broker.pipeline.workers import ProcessingPool
from tests.conftest import backend_env
from tests.e2e.faults import pipeline_workers
from tests.pki import install_keys


def gone(pids: list[int], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not any(Path(f"/proc/{p}").exists() and not zombie(p) for p in pids):
            return True
        time.sleep(0.05)
    return False


def zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True


@pytest.fixture
def pool(tmp_path: Path, unique_prefix: str) -> Iterator[ProcessingPool]:
    """The pipeline's own pool of two workers, started."""
    install_keys(tmp_path / "data")
    settings = load_settings(None, backend_env("embedded", tmp_path / "data", unique_prefix, None))
    pool = ProcessingPool.for_pipeline(settings, 2)
    pool.warm_up()
    deadline = time.monotonic() + 60
    while len(pipeline_workers(os.getpid())) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    yield pool
    pool.shutdown()


class TestStopSignals:
    def test_sigint_and_sigterm_from_another_process_leave_the_workers_working(
        self, pool: ProcessingPool
    ) -> None:
        """SIGINT and SIGTERM sent by another process (as a terminal or `kill` sends
        them to the group) end no worker: the pool still answers, and it shuts down
        when its owner says so."""
        workers = pipeline_workers(os.getpid())
        assert len(workers) == 2
        time.sleep(1.0)  # each worker past its start (its _init holds the signals)
        for sig in (signal.SIGINT, signal.SIGTERM):
            subprocess.run(["kill", f"-{sig.name[3:]}", *map(str, workers)], check=True)
        time.sleep(0.5)
        assert pipeline_workers(os.getpid()) == workers
        assert pool._pool.submit(int, "7").result(10) == 7
        pool.shutdown()
        assert gone(workers, 10)

    def test_the_owners_sigterm_ends_a_worker_and_a_broken_pool_shuts_down(
        self, pool: ProcessingPool
    ) -> None:
        """The owner's SIGTERM ends the worker; the pool, broken, ends the other one
        (with its own SIGTERM) and shuts down at once."""
        workers = pipeline_workers(os.getpid())
        time.sleep(1.0)
        os.kill(workers[0], signal.SIGTERM)
        assert gone(workers, 10)
        started = time.monotonic()
        pool.shutdown()
        assert time.monotonic() - started < 5
