"""Audit events exactly as the pipeline writes them, for the document view's tests.

Submissions and receipts go through the real InboundProcessor (test PKI, example
directory); their events are chained with `events.link` as the pipeline chains
them, one chain per pipeline partition, so the view reads what production writes.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from functools import cache
from typing import Any

from broker.core.events import ChainHead, Event, link
from broker.core.logrecords import NewRecord
from broker.core.receipts import Receipt, ReceiptKind
from broker.core.topics import Topics
from broker.directory.book import Directory
from broker.pipeline.batch import BatchContext
from broker.pipeline.processing import InboundProcessor
from tests.edxml_samples import status
from tests.processing_kit import TOPICS, as_record, consumed, directory, first_seen, processor

PROVINCE, VP, NOI_VU = "000.00.00.H35", "000.00.01.H35", "000.00.02.H35"
UPSTREAM = "000.00.00.G22"  # outside the province: goes to the national axis
UNKNOWN = "999.99.99.X99"  # in no directory
COMMUNE = "000.20.41.H35"
DOC_ID = "000.00.00.H35,2026/11/24,12/UBND-VP"  # the samples' DocumentId
T0 = 1_800_000_000_000


@cache
def _processor() -> InboundProcessor:
    return processor()


def described_status(sender: str, code: str, description: str) -> bytes:
    """A status package answering the samples' document, with a Description."""
    return status(sender=sender, code=code).replace(
        b"</edXML:StatusCode>",
        f"</edXML:StatusCode><edXML:Description>{description}</edXML:Description>".encode(),
    )


def as_written_before_about(bodies: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The events as the pipeline wrote them before a 02 named the recipient it is
    about (`details.about`) and an accepted status its text: what older logs hold."""
    older = []
    for body in bodies:
        details = {
            k: v
            for k, v in (body.get("details") or {}).items()
            if k not in ("about", "status_description")
        }
        older.append({**body, "details": details})
    return older


class Trail:
    """An audit trail built step by step: what the pipeline would have committed."""

    def __init__(self, topics: Topics = TOPICS) -> None:
        self.topics = topics
        self.heads: dict[str, ChainHead] = {}
        self.records: list[NewRecord] = []  # events and chain heads, in append order

    def submit(
        self,
        *datas: bytes,
        at_ms: int,
        message_id: str = "m-1",
        seen: Mapping[tuple[str, str], int] | None = None,
        d: Directory | None = None,
        chain: str = "inbound:0",
    ) -> list[NewRecord]:
        """One pipeline batch of submissions (`message_id`, then `message_id`-2, ...)."""
        ids = [message_id] + [f"{message_id}-{i}" for i in range(2, len(datas) + 1)]
        batch = [
            consumed(data, offset=i, message_id=m)
            for i, (data, m) in enumerate(zip(datas, ids, strict=True))
        ]
        known = first_seen(seen or {})
        ctx = BatchContext(d or directory(), lambda s, doc: known.get((s, doc)), at_ms)
        outcomes = _processor().process_batch(batch, ctx)
        return self.link([e for o in outcomes for e in o.events], chain)

    def receipt(
        self,
        kind: ReceiptKind,
        *,
        at_ms: int,
        recipient: str,
        message_id: str = "m-1",
        envelope_kind: str = "document",
        sender: str = PROVINCE,
        chain: str = "receipts:0",
        document_id: str = DOC_ID,
        **fields: str,
    ) -> list[NewRecord]:
        """A recipient fetched or acknowledged a mailbox entry (as the HTTP API writes it),
        or the national axis took or refused it (`fields`: axis_doc_id, error_code...)."""
        receipt = Receipt(
            kind,
            at_ms,
            message_id,
            document_id,
            sender,
            recipient,
            "t" * 32,
            envelope_kind,
            "12/UBND-VP",
            "2026/11/20",
            "ab" * 32,
            **fields,
        )
        ctx = BatchContext(directory(), lambda s, doc: None, at_ms)
        outcome = _processor().process(as_record(receipt.to_record(TOPICS.receipts)), ctx)
        return self.link(list(outcome.events), chain)

    def link(self, events: Sequence[Event], chain: str) -> list[NewRecord]:
        head = self.heads.get(chain, ChainHead(chain))
        records, self.heads[chain] = link(events, head, self.topics.events, self.topics.chains)
        self.records += records
        return records

    def bodies(self) -> list[dict[str, Any]]:
        """The events as stored in the `events` topic."""
        return [json.loads(r.value or b"") for r in self.records if r.topic == self.topics.events]

    def types(self) -> list[str]:
        return [b["type"] for b in self.bodies()]
