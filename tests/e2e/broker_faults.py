"""What the broker-fault scenarios share (tests/e2e/test_kafka_*): a paced load of
several senders, /readyz sampled throughout, and the complete output read back and
accounted for with tests/ledger.py."""

from __future__ import annotations

import json
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from broker.cli.client import ApiProblem, DocbrokerClient, Unreachable
from tests.conftest import EXAMPLE_DIRECTORY_2024
from tests.e2e.daemon import Daemon
from tests.edxml_samples import document
from tests.ledger import Expected, Ledger, audit_verifies

RECIPIENTS = {"000.00.01.H35": "H35.S01", "000.00.02.H35": "H35.S02"}  # QCVN 102 -> code
# Senders (QCVN 102 code -> directory code, share of the load): inbound is keyed by
# sender, so their partitions carry unequal loads. The last one's directory record
# requires a signature: its (unsigned) documents pass the door and are refused by the
# pipeline, each once, with a status 02 to it.
SENDERS = {
    "000.00.00.H35": ("H35", 3),
    "000.00.03.H35": ("H35.S03", 2),
    "000.00.05.H35": ("H35.S05", 1),
}
SIGNATURE_REQUIRED = "H35.S05"
REFUSAL = ("signature-missing",)
CLIENT_TIMEOUT = 60.0  # longer than any fault: each submission is answered, not retried


def directory_seed(tmp_path: Path) -> Path:
    """The 2024 directory with SIGNATURE_REQUIRED's policy `required`."""
    blocks = EXAMPLE_DIRECTORY_2024.read_text(encoding="utf-8").split("[[agency]]")
    for i, block in enumerate(blocks):
        if f'code = "{SIGNATURE_REQUIRED}"\n' in block:
            blocks[i] = block.replace('signature_policy = ""', 'signature_policy = "required"')
    path = tmp_path / "directory.toml"
    path.write_text("[[agency]]".join(blocks), encoding="utf-8")
    return path


@dataclass
class Load:
    """Threads submitting `total` documents at `rate` per second, round the senders by
    their shares; every answer and every failed attempt is kept."""

    url: str
    tokens: dict[str, str]  # QCVN 102 code -> token
    total: int
    rate: float  # submissions per second
    threads: int = 4
    answers: dict[str, list[int]] = field(default_factory=dict)  # DocumentId -> HTTP statuses
    failures: Counter[str] = field(default_factory=Counter)  # error class -> attempts
    posts: Counter[str] = field(default_factory=Counter)  # DocumentId -> POSTs made
    latencies: list[float] = field(default_factory=list)
    plan: list[tuple[str, str]] = field(default_factory=list)  # (sender, DocumentId)

    def __post_init__(self) -> None:
        wheel = [s for s, (_, share) in SENDERS.items() for _ in range(share)]
        self.plan = [(s, f"{s},2026/11/24,{n}/CLUSTER") for n, s in
                     enumerate(wheel[i % len(wheel)] for i in range(self.total))]  # fmt: skip
        self._lock = threading.Lock()
        self._next = 0
        self._workers = [
            threading.Thread(target=self._work, daemon=True) for _ in range(self.threads)
        ]

    def start(self) -> None:
        self._started = time.monotonic()
        for t in self._workers:
            t.start()

    def join(self, timeout: float) -> None:
        for t in self._workers:
            t.join(timeout)

    @property
    def answered(self) -> int:
        return len(self.answers)

    def _take(self) -> int | None:
        with self._lock:
            n, self._next = self._next, self._next + 1
        if n >= self.total:
            return None
        time.sleep(max(0.0, self._started + n / self.rate - time.monotonic()))
        return n

    def _work(self) -> None:
        while (n := self._take()) is not None:
            sender, doc_id = self.plan[n]
            data = document(sender=sender, recipients=tuple(RECIPIENTS), document_id=doc_id)
            client = DocbrokerClient(self.url, timeout=CLIENT_TIMEOUT, token=self.tokens[sender])
            while True:
                began = time.monotonic()
                with self._lock:
                    self.posts[doc_id] += 1
                try:
                    answer = client.submit(data)
                except (Unreachable, ApiProblem, OSError) as exc:
                    status = getattr(exc, "status", 0)
                    with self._lock:
                        self.failures[f"{type(exc).__name__} {status or ''}".strip()] += 1
                    if 400 <= status < 500:  # refused: an answer, not an outage
                        self.answers.setdefault(doc_id, []).append(status)
                        break
                    time.sleep(0.5)
                    continue
                with self._lock:
                    self.answers.setdefault(doc_id, []).append(
                        200 if answer.get("duplicate") else 202
                    )
                    self.latencies.append(time.monotonic() - began)
                break

    def expected(self) -> list[Expected]:
        recipients = tuple(RECIPIENTS.values())
        out = []
        for sender, (code, _share) in SENDERS.items():
            docs = {d: recipients for s, d in self.plan if s == sender}
            refusing = code == SIGNATURE_REQUIRED
            refused = dict.fromkeys(docs if refusing else (), REFUSAL)
            resent = {d: self.posts[d] for d in docs if self.posts[d] > 1}
            out.append(Expected(code, docs, refused, resent=resent))
        return out

    def answered_wrongly(self) -> dict[str, list[int]]:
        """Submissions not answered exactly once with their message id: one 202, or,
        after attempts that failed (a 503 when the append outlasted http.append_timeout,
        an answer lost), one 200 `duplicate` (that append had landed: the door answers
        with its first message id)."""
        wrong = {}
        for doc_id, answers in self.answers.items():
            retried = self.posts[doc_id] > 1
            if answers != [202] and not (retried and answers == [200]):
                wrong[doc_id] = answers
        return wrong


class Readiness:
    """/readyz sampled every quarter second from another thread."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.samples: list[tuple[float, int, str]] = []  # (time, status, failed checks)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Readiness:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(15)

    def _run(self) -> None:
        while not self._stop.wait(0.25):
            status, why = 0, ""
            try:
                with urllib.request.urlopen(f"{self.url}/readyz", timeout=10) as resp:
                    status = resp.status
            except urllib.error.HTTPError as exc:
                status = exc.code
                checks = json.loads(exc.read() or b"{}").get("checks", {})
                why = "; ".join(f"{k}: {v}" for k, v in checks.items() if not v.startswith("ok"))
            except OSError as exc:
                why = str(exc)
            self.samples.append((time.monotonic(), status, why))

    def figures(self) -> dict[str, Any]:
        """How many samples were not 200, and the longest run of them (seconds)."""
        longest, run_start = 0.0, None
        for at, status, _ in self.samples:
            if status != 200 and run_start is None:
                run_start = at
            elif status == 200 and run_start is not None:
                longest, run_start = max(longest, at - run_start), None
        if run_start is not None:
            longest = max(longest, self.samples[-1][0] - run_start)
        bad = [s for s in self.samples if s[1] != 200]
        return {
            "samples": len(self.samples),
            "not_ready": len(bad),
            "longest_not_ready_s": round(longest, 1),
            "why": sorted({why[:160] for _, _, why in bad})[:3],
        }


def discrepancies(ledger: Ledger, expected: list[Expected]) -> list[str]:
    """The ledger's discrepancies against each sender's Expected (an Expected names one
    sender), without counting the other senders' documents as never sent; then what
    none of them sent."""
    out = [p for e in expected for p in ledger.discrepancies(e) if "but never sent" not in p]
    strays = {d for d, _ in ledger.deliveries()} - {d for e in expected for d in e.documents}
    if strays:
        out.append(f"delivered but never sent: {sorted(strays)[:5]}")
    return out


def complete_output(env: dict[str, str], expected: list[Expected], timeout: float) -> Ledger:
    """The ledger once it holds everything expected and has stopped growing for a few
    seconds (what is processed twice shows up late), or `timeout` seconds passed."""
    deadline = time.monotonic() + timeout
    last: dict[str, int] | None = None
    while True:
        ledger = Ledger.read(env)
        summary = ledger.summary()
        complete = not discrepancies(ledger, expected)
        if (complete and summary == last) or time.monotonic() > deadline:
            return ledger
        last = summary if complete else None
        time.sleep(3)


def tally(env: dict[str, str], load: Load) -> tuple[dict[str, Any], list[str]]:
    """The figures of the output, and what is wrong with it: a submission not answered
    exactly once, a discrepancy of the complete output (a delivery missing or
    doubled, a refusal not once, a false status), a break in the audit chain."""
    expected = load.expected()
    ledger = complete_output(env, expected, timeout=180)
    problems = discrepancies(ledger, expected)
    other = load.answered_wrongly()
    refused = sum(len(e.refused) for e in expected)
    summary = ledger.summary()
    figures = {
        "submissions": load.total,
        "answered_once": len(load.answers) - len(other),
        "answered_200_after_a_retry": sum(a == [200] for a in load.answers.values()),
        "failed_attempts": dict(load.failures),
        "slowest_answer_s": round(max(load.latencies), 1),
        "deliveries": summary["deliveries"],
        "refusals_expected": refused,
        "refusals_seen": summary["refusal_events"],
        "false_statuses_02": sum(1 for p in problems if "false status 02" in p),
        "discrepancies": len(problems),
    }
    wrong = problems[:20]
    if len(load.answers) != load.total:
        wrong.append(f"{load.total - len(load.answers)} submissions never answered")
    if other:
        wrong.append(f"not answered once: {sorted(other.items())[:5]}")
    if summary["deliveries"] != (load.total - refused) * len(RECIPIENTS):
        wrong.append(f"{summary['deliveries']} deliveries")
    intact, report = audit_verifies(env)
    if not intact:
        wrong.append(f"audit verify: {report}")
    figures["audit_intact"] = intact
    return figures, wrong


def replication_warnings(daemon: Daemon) -> list[dict[str, Any]]:
    """The daemon's log lines warning about how its topics are replicated."""
    return [
        e
        for e in daemon.log_events()
        if e.get("level") == "warning" and "replication factor" in e.get("event", "")
    ]
