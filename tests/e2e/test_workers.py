"""The pipeline's worker processes do not outlive a daemon killed with -9."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from tests.e2e.conftest import DaemonFactory

pytestmark = [pytest.mark.e2e]


def children(pid: int) -> set[int]:
    found = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        if ppid == pid:
            found.add(int(entry.name))
    return found


def alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


@pytest.mark.parametrize("backend", ["embedded"])
def test_worker_processes_exit_when_the_daemon_is_killed(daemons: DaemonFactory) -> None:
    daemon = daemons(DOCBROKER_PIPELINE_PROCESSES="2")
    assert daemon.proc is not None
    workers = children(daemon.proc.pid)
    assert len(workers) >= 2, workers  # the workers (and multiprocessing's tracker)
    daemon.kill()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and any(alive(w) for w in workers):
        time.sleep(0.2)
    left = [w for w in workers if alive(w)]
    for w in left:  # do not leave them behind even when the test fails
        os.kill(w, 9)
    assert not left, f"{len(left)} processes outlived the daemon"
