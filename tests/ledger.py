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
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from broker.config import load_settings
from broker.core.logrecords import Record
from broker.core.topics import Topics
from broker.log import DurableLog, open_log
from broker.views.audit import read_all

REFUSED, RECEIVED = "02", "01"


def end_offsets(env: Mapping[str, str], topic: str) -> dict[int, int]:
    """Partition -> end offset of the deployment's `topic` (e.g. "inbound"), read by a
    client of its own (on Kafka a transaction's marker takes an offset too)."""
    settings = load_settings(None, dict(env))
    name = getattr(Topics.with_prefix(settings.backend.topic_prefix), topic)

    async def main() -> dict[int, int]:
        log = open_log(settings)
        await log.start()
        try:
            ends = await log.end_offsets([name])
        finally:
            await log.close()
        return {tp.partition: end for tp, end in ends.items()}

    return asyncio.run(main())


@dataclass(frozen=True)
class Expected:
    """What a set of submissions should have produced: each document (by DocumentId)
    from `sender` delivered once to each of its recipients (directory codes), none
    refused but those named in `refused` (document -> problem codes)."""

    # The sender's directory code, or each document's (DocumentId -> code).
    sender: str | Mapping[str, str]
    documents: Mapping[str, tuple[str, ...]]  # DocumentId -> recipients (directory codes)
    refused: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    acknowledged: bool = False  # the recipients acknowledged: one 01 each to the sender
    # Documents the client sent again, the same bytes, after a lost answer (DocumentId
    # -> POSTs made): the door answers a resend with the first message id, or, if it
    # appended it too (it could not recognise it yet), the pipeline records it as a
    # `duplicate` event, at most one per extra POST; never a refusal, a dead letter
    # or a 02 about a document that was delivered.
    resent: Mapping[str, int] = field(default_factory=dict)

    def sender_of(self, document_id: str) -> str:
        return self.sender if isinstance(self.sender, str) else self.sender[document_id]


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
                return await cls.collect(log, topics)
            finally:
                await log.close()

        return asyncio.run(main())

    @classmethod
    async def collect(cls, log: DurableLog, topics: Topics) -> Ledger:
        """Every record of the output topics of a log that is open (in process)."""
        got = [await read_all(log, getattr(topics, t)) for t in
               ("mailbox", "upstream", "rejected", "events")]  # fmt: skip
        events = [json.loads(r.value) for r in got[3] if r.value]
        return cls(got[0], got[1], got[2], events)

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

    def refusal_codes(self) -> dict[str, list[tuple[str, ...]]]:
        """DocumentId -> the problem codes of each `refused` event naming it."""
        out: dict[str, list[tuple[str, ...]]] = {}
        for e in self.events:
            if e["type"] == "refused":
                codes = tuple(p["code"] for p in e.get("details", {}).get("problems", []))
                out.setdefault(e["document_id"], []).append(codes)
        return out

    def discrepancies(self, expected: Expected) -> list[str]:
        """Everything the output holds that `expected` does not say, and the reverse."""
        seen = _Seen.of(self)
        out: list[str] = []
        for doc, recipients in expected.documents.items():
            if doc in expected.refused:
                out += seen.refusal_problems(doc, expected, recipients)
            else:
                out += seen.delivery_problems(doc, recipients, expected)
        sent = set(expected.documents)
        for what, docs in (
            ("delivered", {d for d, _ in seen.deliveries}),
            ("refused", set(seen.refused)),
            ("dead-lettered", set(seen.dead)),
            ("accepted", set(seen.accepted)),
            ("answered by a status", {d for _, d, _ in seen.statuses}),
        ):
            if strays := docs - sent:
                out.append(f"{what} but never sent: {sorted(strays)[:5]}")
        elsewhere = {
            (code, d, to)
            for code, d, to in seen.statuses
            if d in sent and to != expected.sender_of(d)
        }
        if elsewhere:
            out.append(f"statuses not to the document's sender: {sorted(elsewhere)[:5]}")
        return out

    def missing(self, expected: Expected) -> list[str]:
        """What `expected` names that is not there (yet): a delivery, a refusal."""
        deliveries, refused = self.deliveries(), self.event_counts("refused")
        out = [f"{doc} refusal" for doc in expected.refused if not refused[doc]]
        for doc, recipients in expected.documents.items():
            if doc not in expected.refused:
                out += [f"{doc} to {r}" for r in recipients if not deliveries[(doc, r)]]
        return out

    def false_statuses(self, expected: Expected) -> int:
        """Status 02 to the sender beyond what `expected` allows (about a document that
        was delivered, or a second one about a refused document)."""
        statuses = self.statuses()
        return sum(
            max(0, statuses[(REFUSED, doc, expected.sender_of(doc))] - (doc in expected.refused))
            for doc in expected.documents
        )

    def summary(self) -> dict[str, int]:
        return {
            "deliveries": sum(self.deliveries().values()),
            "statuses_02": sum(n for (c, _, _), n in self.statuses().items() if c == REFUSED),
            "statuses_01": sum(n for (c, _, _), n in self.statuses().items() if c == RECEIVED),
            "refusal_events": sum(self.event_counts("refused").values()),
            "dead_letters": len(self.rejected),
            "accepted_events": sum(self.event_counts("accepted").values()),
            "duplicate_events": sum(self.event_counts("duplicate").values()),
        }


@dataclass(frozen=True)
class _Seen:
    """The ledger counted once, for the checks of each expected document."""

    deliveries: Counter[tuple[str, str]]
    statuses: Counter[tuple[str, str, str]]
    accepted: Counter[str]
    routed: Counter[str]
    refused: Counter[str]
    codes: dict[str, list[tuple[str, ...]]]
    dead: Counter[str]
    duplicates: Counter[str]

    @classmethod
    def of(cls, ledger: Ledger) -> _Seen:
        return cls(
            ledger.deliveries(),
            ledger.statuses(),
            ledger.event_counts("accepted"),
            ledger.event_counts("routed"),
            ledger.event_counts("refused"),
            ledger.refusal_codes(),
            ledger.dead_letters(),
            ledger.event_counts("duplicate"),
        )

    def delivery_problems(
        self, doc: str, recipients: tuple[str, ...], expected: Expected
    ) -> list[str]:
        """A document delivered once to each recipient, accepted and routed once, never
        refused, its resends (if any) recorded as duplicates, its 01s as acknowledged."""
        out = [
            f"{doc} delivered {n} times to {r}"
            for r in recipients
            if (n := self.deliveries[(doc, r)]) != 1
        ]
        if self.accepted[doc] != 1 or self.routed[doc] != len(recipients):
            out.append(f"{doc}: {self.accepted[doc]} accepted, {self.routed[doc]} routed events")
        sender = expected.sender_of(doc)
        n02 = self.statuses[(REFUSED, doc, sender)]
        if self.refused[doc] or self.dead[doc] or n02:
            out.append(
                f"{doc}: {self.refused[doc]} refusals {self.codes.get(doc, [])}, "
                f"{self.dead[doc]} dead letters, {n02} status 02 to {sender} (false)"
            )
        posts = expected.resent.get(doc, 1)
        if self.duplicates[doc] > posts - 1:
            out.append(f"{doc}: {self.duplicates[doc]} duplicate events for {posts} POSTs")
        n01 = self.statuses[(RECEIVED, doc, sender)]
        want01 = len(recipients) if expected.acknowledged else n01
        if n01 != want01 or n01 > len(recipients):
            out.append(f"{doc}: {n01} status 01 to the sender, {want01} expected")
        return out

    def refusal_problems(
        self, doc: str, expected: Expected, recipients: tuple[str, ...]
    ) -> list[str]:
        """A refused document: one refusal with the expected problem codes, one dead
        letter, one status 02 to its sender, never accepted nor delivered."""
        out = []
        codes, sender = expected.refused[doc], expected.sender_of(doc)
        got = self.codes.get(doc, [])
        if len(got) != 1 or self.dead[doc] != 1 or not set(codes) <= set(got[0]):
            out.append(
                f"{doc}: refusals {got}, {self.dead[doc]} dead letters; one {codes} expected"
            )
        if (n02 := self.statuses[(REFUSED, doc, sender)]) != 1:
            out.append(f"{doc}: {n02} status 02 to {sender}; 1 expected")
        if self.accepted[doc]:
            out.append(f"{doc}: refused but {self.accepted[doc]} accepted events")
        out += [
            f"{doc} refused but delivered to {r}" for r in recipients if self.deliveries[(doc, r)]
        ]
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
