"""The only Kafka broker killed (-9) under load, down 20 s, then started again on its
data: while it is down the daemon says so (/readyz 503) and holds its answers; once it
is back the daemon carries on without a restart. The complete output is read back
with tests/ledger.py: every submission answered 202 once, every document delivered
once to each recipient, every expected refusal once, no false status, the audit chain
intact. (The same on a 3-node cluster, where the daemon stays ready:
test_kafka_cluster.py.)"""

from __future__ import annotations

import json
import os
import shutil
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.broker_faults import SENDERS, Load, Readiness, directory_seed, tally
from tests.e2e.conftest import DaemonFactory
from tests.kafka_broker import kafka_local, stop_local

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.kafka,
    pytest.mark.slow,
    pytest.mark.parametrize("backend", ["kafka"]),
]

TOTAL, RATE = 2000, 40.0  # submissions, per second: ~50 s of load
FAULT_AT = 0.25  # of the submissions answered
DOWN = 20.0  # seconds


@pytest.fixture
def own_broker(tmp_path: Path) -> Iterator[Path]:
    """A broker of this test's own (it is killed): its data folder."""
    data = tmp_path / "kafka"
    kafka_local("start", "--dir", str(data))
    yield data
    stop_local(data)
    shutil.rmtree(data / "logs", ignore_errors=True)


@pytest.fixture
def kafka_bootstrap(own_broker: Path) -> str:
    """The daemons of this module use the test's own broker, not the suite's."""
    return kafka_local("status", "--dir", str(own_broker))["bootstrap"]


def kill_broker(data: Path) -> None:
    pid = kafka_local("status", "--dir", str(data))["pid"]
    os.kill(pid, signal.SIGKILL)
    while kafka_local("status", "--dir", str(data))["running"]:
        time.sleep(0.05)


@pytest.mark.timeout(900)
def test_the_broker_killed_and_restarted_on_its_data_under_load(
    daemons: DaemonFactory, daemon_env: dict[str, str], own_broker: Path, tmp_path: Path
) -> None:
    """2,000 submissions; the broker killed after a quarter of them, down 20 s, started
    again on the same data and ports. /readyz is 503 while it is down and 200 again
    once it is back, from the same daemon process; nothing lost, nothing doubled, no
    false status."""
    daemon = daemons("alone", DOCBROKER_DIRECTORY_SEED_FILE=str(directory_seed(tmp_path)))
    tokens = daemon.tokens.grant(SENDERS)
    for sender in SENDERS:
        daemon.client_for(sender)
    load = Load(daemon.url, {s: tokens[s] for s in SENDERS}, TOTAL, RATE)
    with Readiness(daemon.url) as readiness:
        load.start()
        while load.answered < TOTAL * FAULT_AT:
            time.sleep(0.05)
        killed = time.monotonic()
        kill_broker(own_broker)
        time.sleep(max(0.0, killed + DOWN - time.monotonic()))
        restarted = time.monotonic()
        ready_after = kafka_local("start", "--dir", str(own_broker))["ready_seconds"]
        load.join(600)
        while readiness.samples[-1][1] != 200 and time.monotonic() - restarted < 120:
            time.sleep(0.25)
    down = [s for s in readiness.samples if killed + 6 <= s[0] <= restarted]
    back = next((at for at, status, _ in readiness.samples if at > restarted and status == 200))
    figures = {
        "scenario": "kill -9 the only broker",
        "down_s": round(restarted - killed, 1),
        "broker_ready_after_restart_s": ready_after,
        "readyz": readiness.figures(),
        "readyz_503_while_down": f"{sum(s[1] == 503 for s in down)}/{len(down)}",
        "daemon_ready_again_after_restart_s": round(back - restarted, 1),
    }
    output, wrong = tally(daemon_env, load)
    figures |= output
    print(f"\n{json.dumps(figures)}")
    assert not wrong, "\n".join(wrong)
    assert down and all(s[1] == 503 for s in down), "not ready while the broker is down"
    assert daemon.proc is not None and daemon.proc.poll() is None, "recovered without a restart"
