"""Fault: consumer-group churn under load — members (daemon processes) joining and
leaving every few seconds, half of them gracefully (SIGTERM), half killed (-9).

One daemon stays up and takes every submission; the others join the pipeline's
consumer group, take partitions over, work them, and leave, so that partitions
move between members and come back to the same member in the middle of its
batches. Nothing may be lost, duplicated or answered with a false status.
"""

from __future__ import annotations

import signal
import time
from collections import deque
from pathlib import Path

import pytest

from tests.e2e.conftest import DaemonFactory
from tests.e2e.daemon import Daemon
from tests.e2e.faults import EVERY_BACKEND, Submitters, check
from tests.e2e.test_scale_out import RECIPIENTS, SENDERS, processed
from tests.edxml_samples import document, sender_of
from tests.ledger import Expected
from tests.pki import install_keys
from tests.processing_kit import directory

pytestmark = [pytest.mark.e2e, pytest.mark.slow, EVERY_BACKEND]

CODES = ("H35.S01", "H35.S02")
SUBMISSIONS = {"kafka": 800, "kafka-cluster": 400, "embedded": 400}
PACE = {
    "kafka": 0.12,
    "kafka-cluster": 0.2,
    "embedded": 0.25,
}  # seconds between a thread's submissions


def doc_id(n: int) -> tuple[str, str]:
    """The n-th document's sender and DocumentId (the senders spread over partitions)."""
    sender = SENDERS[n % len(SENDERS)]
    return sender, f"{sender},2026/11/24,{n}/CHURN"


class Churn:
    """Members joining and leaving: at most two besides the daemon that stays."""

    def __init__(self, daemons: DaemonFactory, tmp_path: Path, shared: dict[str, str]) -> None:
        self.daemons, self.tmp_path, self.shared = daemons, tmp_path, shared
        self.live: deque[Daemon] = deque()
        self.joins = self.terms = self.kills = 0
        self.handled = 0.0  # inbound records the leaving members had routed

    def join(self) -> None:
        name = f"member-{self.joins}"
        data_dir = self.tmp_path / name / "data"
        install_keys(data_dir)
        # No worker processes: the members that come and go cost less CPU to start.
        env = {**self.shared, "DOCBROKER_DATA_DIR": str(data_dir)}
        self.live.append(self.daemons(name, DOCBROKER_PIPELINE_PROCESSES="0", **env))
        self.joins += 1

    def leave(self) -> None:
        member = self.live.popleft()
        assert member.proc is not None
        self.handled += processed(member)
        if (self.terms + self.kills) % 2:
            member.proc.send_signal(signal.SIGKILL)
            member.proc.wait()
            self.kills += 1
        else:
            assert member.stop(signal.SIGTERM) == 0
            self.terms += 1


@pytest.mark.timeout(900)
def test_members_joining_and_leaving_lose_nothing_and_double_nothing(
    daemons: DaemonFactory, daemon_env: dict[str, str], backend: str, tmp_path: Path
) -> None:
    total = SUBMISSIONS[backend]
    stays = daemons("stays")
    tokens = stays.tokens.grant(SENDERS)
    stays.client_for(SENDERS[-1])  # the tokens work
    shared = {}
    if backend == "embedded":  # one SQLite file for the group; views and keys apart
        shared["DOCBROKER_BACKEND_EMBEDDED_PATH"] = str(
            Path(daemon_env["DOCBROKER_DATA_DIR"]) / "log.sqlite"
        )
    churn = Churn(daemons, tmp_path, shared)

    def make(n: int) -> tuple[str, bytes]:
        sender, doc = doc_id(n)
        return doc, document(sender, RECIPIENTS, doc)

    submitters = Submitters(
        make,
        total,
        token=lambda data: tokens[sender_of(data) or ""],
        urls=lambda _: stays.url,
        interval=PACE[backend],
    ).start()
    started = time.monotonic()
    while len(submitters.accepted) < total and time.monotonic() - started < 400:
        churn.join()
        time.sleep(1.0)  # it takes partitions over and works them a moment
        if len(churn.live) > 1:
            churn.leave()
    submitters.join(120)
    while churn.live:
        churn.leave()
    assert len(submitters.accepted) == total
    codes = {s: directory().find(s).code for s in SENDERS}  # type: ignore[union-attr]
    senders = {doc_id(n)[1]: codes[doc_id(n)[0]] for n in range(total)}
    expected = Expected(senders, dict.fromkeys(senders, CODES), resent=submitters.resent)
    _, problems = check(
        f"churn ({backend})",
        daemon_env,
        expected,
        total,
        joins=churn.joins,
        left_gracefully=churn.terms,
        killed=churn.kills,
        routed_by_members_that_left=int(churn.handled),
    )
    assert problems == []
    assert churn.joins >= 4 and churn.kills >= 1, "the group must actually churn"
    assert churn.handled > 0, "the members that came and went must have taken work"
