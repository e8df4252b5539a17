"""Fair limits against a real `docbroker serve`, as agencies use it: agency A floods
(long polls and submissions far beyond its caps, from several processes with threads
each: tests/e2e/flood.py) while agency B submits, lists and fetches at a steady pace.
A is refused with 429 and Retry-After, counted in docbroker_http_limited_total as
often as its clients saw it; B is never refused, and its p99 latency while A floods
stays within twice its p99 without the flood, measured the same way in the same run:
in turns (the flood paused and drained, then flooding), so that the noise of a shared
machine falls on both alike.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from tests.e2e.conftest import DaemonFactory
from tests.e2e.daemon import ROOT, Daemon
from tests.e2e.flood import LONG_POLL, Caller
from tests.edxml_samples import document

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

FLOODER, STEADY, OTHER = "000.00.00.H35", "000.00.01.H35", "000.00.02.H35"
MAX_REQUESTS, MAX_LONG_POLLS = 8, 4
PROCESSES, POLLERS, SUBMITTERS = 2, 5, 5  # per process: 20 threads against caps of 8 and 4
ROUNDS, PER_ROUND = 5, 60  # B's requests: 300 without the flood, 300 during it
GAP = 0.02  # seconds between two requests of B: a steady pace, not a load
REASONS = ("agency-requests", "agency-long-polls", "bytes-in-flight", "rate")


@pytest.fixture
def backend() -> str:
    return "embedded"


def limited(url: str) -> dict[str, float]:
    """docbroker_http_limited_total by reason."""
    with urllib.request.urlopen(f"{url}/metrics", timeout=10) as resp:
        text = resp.read().decode()
    found = {}
    for reason in REASONS:
        prefix = f'docbroker_http_limited_total{{reason="{reason}"}} '
        (line,) = [x for x in text.splitlines() if x.startswith(prefix)]
        found[reason] = float(line[len(prefix) :])
    return found


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


class Steady:
    """Agency B: submit one document, list its mailbox, fetch an envelope, in turn."""

    def __init__(self, daemon: Daemon, token: str, message_ids: list[str]) -> None:
        self.caller = Caller(daemon.url, token)
        self.message_ids = message_ids
        self.sent = 0
        self.refused: list[int] = []

    def request(self, i: int) -> tuple:
        if i % 3 == 0:
            self.sent += 1
            doc_id = f"{STEADY},2026/12/02,{self.sent}/STEADY-{time.monotonic_ns()}"
            return ("POST", "/v1/envelopes", document(STEADY, (OTHER,), doc_id))
        if i % 3 == 1:
            return ("GET", f"/v1/mailboxes/{STEADY}/envelopes?limit=10")
        message_id = self.message_ids[i % len(self.message_ids)]
        return ("GET", f"/v1/mailboxes/{STEADY}/envelopes/{message_id}")

    def measure(self, samples: int) -> list[float]:
        """Seconds each request took; refusals are noted."""
        took = []
        for i in range(samples):
            request = self.request(i)
            started = time.perf_counter()
            resp = self.caller.call(*request)
            took.append(time.perf_counter() - started)
            if resp.status not in (200, 202):
                self.refused.append(resp.status)
            time.sleep(GAP)
        return took


def mail_for_steady(daemon: Daemon) -> list[str]:
    """A few envelopes in B's mailbox to fetch, again and again."""
    sender = daemon.client_for(OTHER)
    ids = [
        sender.submit(document(OTHER, (STEADY,), f"{OTHER},2026/12/02,{n}/MAIL"))["message_id"]
        for n in range(5)
    ]
    inbox = daemon.client_for(STEADY)
    deadline = time.monotonic() + 30
    while len(inbox.inbox(STEADY, wait=1)["envelopes"]) < len(ids):
        assert time.monotonic() < deadline, "B's mail did not arrive"
    return ids


def flood(daemon: Daemon, token: str, stop: Path) -> list[subprocess.Popen[str]]:
    command = [sys.executable, "-m", "tests.e2e.flood", daemon.url, token, FLOODER, OTHER]
    return [
        subprocess.Popen(
            [*command, str(stop), str(POLLERS), str(SUBMITTERS)],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            text=True,
        )
        for _ in range(PROCESSES)
    ]


def capped(url: str) -> float:
    """Refusals by the agency caps so far."""
    seen = limited(url)
    return seen["agency-requests"] + seen["agency-long-polls"]


def flooding(url: str, since: float) -> None:
    """Once A is refused again (its threads back at work, at the caps)."""
    deadline = time.monotonic() + 30
    while capped(url) == since:
        assert time.monotonic() < deadline, "the flood never reached the caps"
        time.sleep(0.05)


def flooded(processes: list[subprocess.Popen[str]]) -> dict[str, int]:
    """A's answers by status, over every flooding process (they stop on the stop file)."""
    statuses: dict[str, int] = {}
    for proc in processes:
        out, _ = proc.communicate(timeout=60)
        assert proc.returncode == 0, out
        result = json.loads(out)
        assert result["without_retry_after"] == 0 and result["errors"] == 0, result
        for status, n in result["statuses"].items():
            statuses[status] = statuses.get(status, 0) + n
    return statuses


def figures(took: list[float]) -> str:
    return f"p50 {percentile(took, 50) * 1000:.1f} ms, p99 {percentile(took, 99) * 1000:.1f} ms"


def test_a_flooding_agency_is_refused_and_another_is_served_as_before(
    daemons: DaemonFactory, tmp_path: Path
) -> None:
    daemon = daemons(
        DOCBROKER_HTTP_AGENCY_MAX_REQUESTS=str(MAX_REQUESTS),
        DOCBROKER_HTTP_AGENCY_MAX_LONG_POLLS=str(MAX_LONG_POLLS),
    )
    tokens = daemon.tokens.grant([FLOODER, STEADY, OTHER])
    daemon.client_for(FLOODER).agencies()  # the tokens work at this daemon
    steady = Steady(daemon, tokens[STEADY], mail_for_steady(daemon))

    steady.measure(20)  # warm-up
    before = limited(daemon.url)
    stop = tmp_path / "stop-flood"
    pause = Path(f"{stop}.pause")
    pause.touch()
    processes = flood(daemon, tokens[FLOODER], stop)
    unloaded: list[float] = []
    loaded: list[float] = []
    try:
        for _ in range(ROUNDS):
            unloaded += steady.measure(PER_ROUND)
            pause.unlink()
            flooding(daemon.url, capped(daemon.url))
            loaded += steady.measure(PER_ROUND)
            pause.touch()
            time.sleep(LONG_POLL + 0.5)  # A's requests under way are answered
    finally:
        stop.touch()
        steady.caller.close()
    statuses = flooded(processes)
    after = limited(daemon.url)

    seen = {r: after[r] - before[r] for r in REASONS}
    report = (
        f"B unloaded: {figures(unloaded)}; B during the flood: {figures(loaded)}; "
        f"A's answers by status: {dict(sorted(statuses.items()))}; limited: {seen}"
    )
    print(report)
    assert steady.refused == [], report
    assert statuses.get("429", 0) > 0 and set(statuses) <= {"200", "202", "429"}, report
    assert seen["agency-requests"] > 0 and seen["agency-long-polls"] > 0, report
    assert seen["agency-requests"] + seen["agency-long-polls"] == statuses["429"], report
    assert seen["bytes-in-flight"] == 0 and seen["rate"] == 0, report
    assert percentile(loaded, 99) <= 2 * percentile(unloaded, 99), report
