"""Scale-out: two daemon processes against one Kafka share the inbound partitions;
when one is killed the other takes over, losing nothing and duplicating nothing."""

from __future__ import annotations

import re
import signal
import threading
import time
import urllib.request
from pathlib import Path

import pytest

from broker.cli.client import ApiProblem, DocbrokerClient, Unreachable
from tests.e2e.conftest import DaemonFactory
from tests.e2e.daemon import Daemon
from tests.e2e.test_province import mailbox_deliveries
from tests.edxml_samples import document
from tests.pki import install_keys

pytestmark = [pytest.mark.e2e, pytest.mark.kafka, pytest.mark.slow]

RECIPIENTS = ("000.00.01.H35", "000.00.02.H35")
# Inbound is keyed by sender (one sender's documents in order, its duplicates in one
# partition): the work spreads over partitions, and so over daemons, by sender.
# Departments, districts and socio-political organisations of the 2024 directory.
SENDERS = [f"000.00.{n:02d}.H35" for n in (*range(3, 20), *range(41, 49), *range(61, 67))]


def processed(daemon: Daemon) -> float:
    """Inbound records this daemon's pipeline handled (from its /metrics)."""
    with urllib.request.urlopen(f"{daemon.url}/metrics", timeout=5) as resp:
        text = resp.read().decode()
    return sum(float(v) for v in re.findall(
        r'^docbroker_pipeline_records_total\{outcome="routed"\} (\S+)$', text, re.M))  # fmt: skip


def submit(
    urls: list[str],
    docs: range,
    accepted: dict[str, str],
    lock: threading.Lock,
    tokens: dict[str, str],
) -> None:
    for n in docs:
        sender = SENDERS[n % len(SENDERS)]
        doc_id = f"{sender},2026/11/24,{n}/SCALE"
        data = document(sender=sender, recipients=RECIPIENTS, document_id=doc_id)
        for attempt in range(100):
            url = urls[(n + attempt) % len(urls)]
            try:
                answer = DocbrokerClient(url, timeout=10, token=tokens[sender]).submit(data)
                with lock:
                    accepted[doc_id] = answer["message_id"]
                break
            except (Unreachable, ApiProblem, OSError):
                time.sleep(0.1)


@pytest.mark.timeout(900)
@pytest.mark.parametrize("backend", ["kafka"], indirect=True)
def test_two_daemons_share_the_work_and_survive_the_loss_of_one(
    daemons: DaemonFactory, daemon_env: dict[str, str], tmp_path: Path
) -> None:
    nodes = []
    for name in ("node-a", "node-b"):
        data_dir = tmp_path / name / "data"
        install_keys(data_dir)
        nodes.append(daemons(name, DOCBROKER_DATA_DIR=str(data_dir)))
    a, b = nodes
    tokens = a.tokens.grant(SENDERS)
    for node in nodes:
        node.client_for(SENDERS[-1])  # the tokens reached both
    accepted: dict[str, str] = {}
    lock = threading.Lock()
    first = threading.Thread(
        target=submit, args=([a.url, b.url], range(0, 1000), accepted, lock, tokens)
    )
    first.start()
    first.join(300)
    deadline = time.monotonic() + 120
    while (processed(a) + processed(b) < 1000) and time.monotonic() < deadline:
        time.sleep(0.5)
    share_a, share_b = processed(a), processed(b)
    assert share_a > 0 and share_b > 0, f"both must work: a={share_a}, b={share_b}"
    # Kill one in the middle of the second wave; the other carries on alone.
    second = threading.Thread(
        target=submit, args=([a.url, b.url], range(1000, 2000), accepted, lock, tokens)
    )
    second.start()
    time.sleep(1.5)
    assert a.proc is not None
    a.proc.send_signal(signal.SIGKILL)
    a.proc.wait()
    second.join(300)
    assert len(accepted) == 2000
    expected = {(doc, r) for doc in accepted for r in ("H35.S01", "H35.S02")}
    deliveries = mailbox_deliveries(daemon_env, expected, timeout=180)
    assert expected - set(deliveries) == set(), "lost deliveries"
    assert [k for k, n in deliveries.items() if n > 1] == [], "duplicated deliveries"
    # The survivor's own mailbox view shows every delivery too.
    client = b.client()
    listed = 0
    after = 0
    while True:
        page = client.inbox("000.00.01.H35", after=after, limit=1000)
        listed += len(page["envelopes"])
        if not page["envelopes"]:
            break
        after = page["next_after"]
    assert listed == 2000
    print(
        f"\nscale-out: node a handled {share_a:.0f}, node b {share_b:.0f} of the first 1000; "
        f"after the kill node b handled {processed(b) - share_b:.0f} more"
    )
