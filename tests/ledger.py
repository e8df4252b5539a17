"""The complete output of a deployment, for the fault tests: every record of `mailbox`,
`upstream`, `rejected` and `events`, read back from the log and accounted for.

A fault test names what each submission should have produced (`Expected`) and asks
for every discrepancy (`Ledger.discrepancies`): a delivery missing or doubled, a
refusal or a dead letter that should not exist, a status 02 about a document that
was delivered, a status 01 doubled, an `accepted` event twice. Counting only the
documents in mailboxes cannot see a submission processed twice (the second becomes
a refusal and a 02, not a second delivery); this can.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from broker.config import load_settings
from broker.core.logrecords import Record
from broker.core.topics import Topics
from broker.log import open_log
from broker.views.audit import read_all

REFUSED, RECEIVED = "02", "01"


@dataclass(frozen=True)
class Expected:
    """What a set of submissions should have produced: each document (by DocumentId)
    from `sender` delivered once to each of its recipients (directory codes), none
    refused but those named in `refused` (document -> problem codes)."""

    sender: str  # the sender's directory code
    documents: Mapping[str, tuple[str, ...]]  # DocumentId -> recipients (directory codes)
    refused: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    acknowledged: bool = False  # the recipients acknowledged: one 01 each to the sender


@dataclass
class Ledger:
    mailbox: list[Record]
    upstream: list[Record]
    rejected: list[Record]
    events: list[dict[str, Any]]

    @classmethod
    def read(cls, env: Mapping[str, str]) -> Ledger:
        """Every record of the deployment's output topics (read_committed on Kafka)."""
        settings = load_settings(None, dict(env))
        topics = Topics.with_prefix(settings.backend.topic_prefix)

        async def main() -> Ledger:
            log = open_log(settings)
            await log.start()
            try:
                got = [await read_all(log, getattr(topics, t)) for t in
                       ("mailbox", "upstream", "rejected", "events")]  # fmt: skip
            finally:
                await log.close()
            events = [json.loads(r.value) for r in got[3] if r.value]
            return cls(got[0], got[1], got[2], events)

        return asyncio.run(main())

    # -- what is there

    def deliveries(self) -> Counter[tuple[str, str]]:
        """(DocumentId, recipient) of every document record in a mailbox."""
        return Counter(
            (r.header_str("document-id"), r.header_str("recipient"))
            for r in self.mailbox
            if r.header_str("kind") == "document"
        )

    def statuses(self) -> Counter[tuple[str, str, str]]:
        """(status code, DocumentId answered, recipient) of every status package in a
        mailbox or upstream."""
        return Counter(
            (r.header_str("status-code"), r.header_str("document-id"), r.header_str("recipient"))
            for r in (*self.mailbox, *self.upstream)
            if r.header_str("kind") == "status"
        )

    def event_counts(self, kind: str) -> Counter[str]:
        """DocumentId -> how many events of this type name it."""
        return Counter(e["document_id"] for e in self.events if e["type"] == kind)

    def dead_letters(self) -> Counter[str]:
        return Counter(r.header_str("document-id") for r in self.rejected)

    # -- what should be there

    def discrepancies(self, expected: Expected) -> list[str]:
        """Everything the output holds that `expected` does not say, and the reverse."""
        out: list[str] = []
        deliveries = self.deliveries()
        statuses = self.statuses()
        accepted = self.event_counts("accepted")
        refused = self.event_counts("refused")
        dead = self.dead_letters()
        for doc, recipients in expected.documents.items():
            if doc in expected.refused:
                out += _refusal_problems(doc, expected, refused, dead, deliveries, recipients)
                continue
            for r in recipients:
                n = deliveries[(doc, r)]
                if n != 1:
                    out.append(f"{doc} delivered {n} times to {r}")
            if accepted[doc] != 1:
                out.append(f"{doc}: {accepted[doc]} accepted events")
            if refused[doc] or dead[doc]:
                out.append(f"{doc}: {refused[doc]} refusals, {dead[doc]} dead letters (false)")
            n02 = statuses[(REFUSED, doc, expected.sender)]
            if n02:
                out.append(f"{doc}: {n02} false status 02 to {expected.sender}")
            n01 = statuses[(RECEIVED, doc, expected.sender)]
            want01 = len(recipients) if expected.acknowledged else n01
            if n01 != want01 or n01 > len(recipients):
                out.append(f"{doc}: {n01} status 01 to the sender, {want01} expected")
        strays = {d for d, _ in deliveries} - set(expected.documents)
        if strays:
            out.append(f"delivered but never sent: {sorted(strays)[:5]}")
        return out

    def summary(self) -> dict[str, int]:
        return {
            "deliveries": sum(self.deliveries().values()),
            "statuses_02": sum(n for (c, _, _), n in self.statuses().items() if c == REFUSED),
            "statuses_01": sum(n for (c, _, _), n in self.statuses().items() if c == RECEIVED),
            "refusal_events": sum(self.event_counts("refused").values()),
            "dead_letters": len(self.rejected),
            "accepted_events": sum(self.event_counts("accepted").values()),
        }


def _refusal_problems(
    doc: str,
    expected: Expected,
    refused: Counter[str],
    dead: Counter[str],
    deliveries: Counter[tuple[str, str]],
    recipients: Iterable[str],
) -> list[str]:
    out = []
    if refused[doc] != 1 or dead[doc] != 1:
        out.append(f"{doc}: refused {refused[doc]} times, {dead[doc]} dead letters; 1 expected")
    out += [f"{doc} refused but delivered to {r}" for r in recipients if deliveries[(doc, r)]]
    return out


def audit_verifies(env: Mapping[str, str]) -> tuple[bool, str]:
    """`docbroker audit verify` on the deployment: (every chain intact, its output)."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("DOCBROKER_")}
    proc = subprocess.run(
        [sys.executable, "-m", "broker", "audit", "verify"],
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    return proc.returncode == 0, proc.stdout + proc.stderr
