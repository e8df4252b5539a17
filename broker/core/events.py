"""The audit trail: an event for every change of state, hash-chained.

Events are keyed by document id (a document's life is in one partition, in
order). Only the pipeline writes them, each pipeline partition being one
*chain*: every event carries its chain id, its sequence number in the chain
and the SHA-256 of the previous event of the chain, and the chain's head
(sequence and hash of its last event) is kept in the compacted `chains` topic
in the same transaction. Changing, removing or inserting an event breaks a
link or the head; `docbroker audit verify` finds the first break.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from broker.core.logrecords import NewRecord
from broker.core.records import H, iso_ms, make_headers

GENESIS = "0" * 64


class EventType(StrEnum):
    ACCEPTED = "accepted"  # the pipeline took a submission in
    REFUSED = "refused"  # a submission failed a check (at the door or in the pipeline)
    ROUTED = "routed"  # put in a mailbox, or queued upstream for the national axis
    RECIPIENT_REFUSED = "recipient-refused"  # one recipient could not be served
    STATUS_EMITTED = "status-emitted"  # docbroker made a status package (01 on ack, 02 refusals)
    DELIVERED = "delivered"  # the recipient fetched it
    ACKNOWLEDGED = "acknowledged"  # the recipient acknowledged it
    SENT_UPSTREAM = "sent-upstream"  # the national axis confirmed it
    DUPLICATE = "duplicate"  # the same bytes again under a DocumentId already taken in
    REPLAYED = "replayed"  # a dead letter sent again (to upstream, or through the pipeline)


@dataclass(frozen=True, slots=True)
class Event:
    type: EventType
    at_ms: int
    message_id: str
    document_id: str
    sender: str
    trace_id: str
    recipient: str | None = None
    actor: str | None = None  # who caused it: an agency code or "docbroker"
    sha256: str | None = None  # of the bytes the event is about
    details: dict[str, Any] = field(default_factory=dict)

    def body(self) -> dict[str, Any]:
        return {
            "type": str(self.type),
            "at": iso_ms(self.at_ms),
            "at_ms": self.at_ms,
            "message_id": self.message_id,
            "document_id": self.document_id,
            "sender": self.sender,
            "recipient": self.recipient,
            "actor": self.actor,
            "trace_id": self.trace_id,
            "sha256": self.sha256,
            "details": self.details,
        }


@dataclass(frozen=True, slots=True)
class ChainHead:
    """The last link of a chain: its sequence number and hash."""

    chain: str
    seq: int = 0
    hash: str = GENESIS

    def to_json(self) -> bytes:
        return json.dumps({"chain": self.chain, "seq": self.seq, "hash": self.hash}).encode()

    @classmethod
    def from_json(cls, data: bytes) -> ChainHead:
        obj = json.loads(data)
        return cls(str(obj["chain"]), int(obj["seq"]), str(obj["hash"]))


def event_bytes(event: Event, chain: str, seq: int, prev: str) -> bytes:
    body = {**event.body(), "chain": chain, "seq": seq, "prev": prev}
    return json.dumps(body, ensure_ascii=False, sort_keys=True, separators=(",", ":")).encode()


def link(
    events: Sequence[Event], head: ChainHead, events_topic: str, chains_topic: str
) -> tuple[list[NewRecord], ChainHead]:
    """Event records chained after `head`, then the record of the new head."""
    records = []
    seq, prev = head.seq, head.hash
    for event in events:
        seq += 1
        value = event_bytes(event, head.chain, seq, prev)
        prev = hashlib.sha256(value).hexdigest()
        records.append(
            NewRecord(
                topic=events_topic,
                key=(event.document_id or event.message_id).encode(),
                value=value,
                headers=make_headers(
                    {
                        H.MESSAGE_ID: event.message_id,
                        H.DOCUMENT_ID: event.document_id,
                        H.SENDER: event.sender,
                        H.RECIPIENT: event.recipient,
                        H.TRACE_ID: event.trace_id,
                        H.PRODUCED_AT: event.at_ms,
                        "chain": head.chain,
                    }
                ),
            )
        )
    new_head = ChainHead(head.chain, seq, prev)
    if events:
        records.append(NewRecord(chains_topic, new_head.to_json(), key=head.chain.encode()))
    return records, new_head


@dataclass(frozen=True, slots=True)
class ChainBreak:
    chain: str
    seq: int
    reason: str


def verify_chains(
    events: Sequence[bytes], heads: dict[str, ChainHead], *, pruned: bool = False
) -> tuple[dict[str, int], list[ChainBreak]]:
    """Check every chain: sequence without gaps, each `prev` the hash of the one before,
    the last hash the recorded head. Returns events per chain and the breaks found
    (the first of each chain).

    `pruned`: the log's oldest events were removed by retention (README, Retention),
    so each chain is verified from its first event still held (whose `prev` is the
    hash of an archived event), and a chain with no event left is not a break."""
    chains: dict[str, list[tuple[int, str, str]]] = {}
    breaks: list[ChainBreak] = []
    for raw in events:
        try:
            obj = json.loads(raw)
            chains.setdefault(str(obj["chain"]), []).append(
                (int(obj["seq"]), str(obj["prev"]), hashlib.sha256(raw).hexdigest())
            )
        except (ValueError, KeyError, TypeError) as exc:
            breaks.append(ChainBreak("?", 0, f"an event that is not a chained event: {exc}"))
    counts = {}
    for chain, links in sorted(chains.items()):
        links.sort()
        counts[chain] = len(links)
        found = _verify_chain(chain, links, heads.get(chain), pruned=pruned)
        if found is not None:
            breaks.append(found)
    for chain, head in heads.items():
        if chain not in chains and head.seq > 0 and not pruned:
            breaks.append(ChainBreak(chain, 1, f"all {head.seq} events of the chain are missing"))
    return counts, breaks


def _verify_chain(
    chain: str, links: Sequence[tuple[int, str, str]], head: ChainHead | None, *, pruned: bool
) -> ChainBreak | None:
    """The first break of one chain's links (seq, prev, hash) in order, or None."""
    expected_prev, expected_seq = GENESIS, 1
    if pruned and links[0][0] > 1:
        expected_seq, expected_prev = links[0][0], links[0][1]
    for seq, prev, digest in links:
        if seq != expected_seq:
            return ChainBreak(
                chain, expected_seq, f"event {expected_seq} is missing (next found: {seq})"
            )
        if prev != expected_prev:
            return ChainBreak(
                chain,
                seq,
                f"its prev hash is not the hash of event {seq - 1}: that event was changed "
                "or replaced",
            )
        expected_prev, expected_seq = digest, seq + 1
    if head is not None and (head.seq, head.hash) != (expected_seq - 1, expected_prev):
        return ChainBreak(
            chain, head.seq, "the chain's recorded head does not match its last event"
        )
    return None


def archived_counts(events: Sequence[bytes], heads: Mapping[str, ChainHead]) -> dict[str, int]:
    """Per chain, how many of its first events are no longer held (pruned into an
    archive): those before its first event present, all of a chain with none left."""
    first: dict[str, int] = {}
    for raw in events:
        try:
            obj = json.loads(raw)
            chain, seq = str(obj["chain"]), int(obj["seq"])
        except (ValueError, KeyError, TypeError):
            continue
        first[chain] = min(seq, first.get(chain, seq))
    out = {chain: seq - 1 for chain, seq in first.items() if seq > 1}
    for chain, head in heads.items():
        if chain not in first and head.seq > 0:
            out[chain] = head.seq
    return out
