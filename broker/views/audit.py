"""Reading the audit trail back: one document's life, and the check of every chain."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from broker.core.errors import Archived
from broker.core.events import ChainBreak, ChainHead, archived_counts, verify_chains
from broker.core.logrecords import Record, TopicPartition
from broker.core.topics import Topics
from broker.log.interface import DurableLog


async def read_all(
    log_: DurableLog, topic: str, only: Sequence[TopicPartition] | None = None
) -> list[Record]:
    """Every record of a topic (or of some of its partitions) committed so far."""
    ends = await log_.end_offsets([topic])
    if only is not None:
        ends = {tp: end for tp, end in ends.items() if tp in only}
    out: list[Record] = []
    async with log_.tailer([topic], {}, only=only) as tailer:
        while not await tailer.caught_up(ends):
            out.extend(await tailer.poll(0.5, 5000))
    return out


async def document_events(
    log_: DurableLog, topics: Topics, document_id: str
) -> list[dict[str, Any]]:
    """The events of one document (they share its partition), in order. None held,
    and the partition pruned by retention: `Archived` (an archive may hold them)."""
    key = document_id.encode()
    tp = TopicPartition(topics.events, await log_.partition_for(topics.events, key))
    records = await read_all(log_, topics.events, [tp])
    events = [json.loads(r.value) for r in records if r.key == key and r.value]
    if not events:
        start = (await log_.start_offsets([topics.events])).get(tp, 0)
        if start > 0:
            raise Archived(
                f"no event of document {document_id} is in the log; the first {start} "
                f"events of its partition ({tp.topic}[{tp.partition}]) were pruned by "
                "retention: if it is older, a signed archive holds its trail"
            )
    return sorted(events, key=lambda e: (e["at_ms"], e["chain"], e["seq"]))


@dataclass(frozen=True, slots=True)
class AuditReport:
    """What `audit verify` found: events per chain held in the log, the breaks, and
    per chain how many of its first events were archived (pruned by retention)."""

    counts: dict[str, int]
    breaks: list[ChainBreak]
    archived: dict[str, int]


async def verify_audit(log_: DurableLog, topics: Topics) -> AuditReport:
    """Every chain verified from its first event still in the log (all of it when the
    events topic was never pruned)."""
    starts = await log_.start_offsets([topics.events])
    pruned = any(start > 0 for start in starts.values())
    events = [r.value for r in await read_all(log_, topics.events) if r.value]
    heads: dict[str, ChainHead] = {}
    for record in await read_all(log_, topics.chains):
        if record.value:
            head = ChainHead.from_json(record.value)
            if head.seq >= heads.get(head.chain, ChainHead(head.chain)).seq:
                heads[head.chain] = head
    counts, breaks = verify_chains(events, heads, pruned=pruned)
    return AuditReport(counts, breaks, archived_counts(events, heads) if pruned else {})


def trace_lines(events: Sequence[dict[str, Any]]) -> list[str]:
    """A readable life of a document: one line per event."""
    lines = []
    for e in events:
        d = e.get("details") or {}
        what = e["type"]
        if what == "accepted":
            what += f" from {e['sender']}: {d.get('kind')} ({d.get('business')})"
            sig = d.get("sender_signature") or {}
            if sig:
                what += f", sender signature {sig.get('outcome')}"
            warnings = d.get("warnings") or []
            if warnings:
                what += ", warnings: " + ", ".join(w["code"] for w in warnings)
        elif what == "routed":
            what += f" to {e['recipient']} ({d.get('to')})"
        elif what == "recipient-refused":
            what += f" {e['recipient']}: {d.get('code')} ({d.get('reason')})"
        elif what == "status-emitted":
            what += f" {d.get('status_code')} to {e['recipient']} ({d.get('description')})"
        elif what in ("delivered", "acknowledged"):
            what += f" by {e['recipient']}"
        elif what == "refused":
            codes = ", ".join(p["code"] for p in d.get("problems", []))
            what += f" at {d.get('stage')}: {codes}"
            if d.get("caller"):
                what += f" (caller {d['caller']})"
        elif what == "replayed":
            what += f" by {e['actor']} as {d.get('replayed_as')} (to {d.get('to')})"
        lines.append(f"{e['at']}  {what}  [message {e['message_id']}, {e['chain']}#{e['seq']}]")
    return lines
