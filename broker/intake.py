"""Taking a submission in: the records an adapter appends for it. Pure.

An adapter (HTTP, spool folder, national axis) checks the bytes first so that the
caller gets the problem codes at once, then appends either the submission to
`inbound` or, when refused, the bytes to `rejected` with an event. The pipeline
checks inbound records again: nothing reaches a mailbox unchecked.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from broker.edxml.model import Envelope
from broker.events import Event, EventType
from broker.log.interface import NewRecord
from broker.problems import Problem
from broker.records import H, make_headers
from broker.topics import Topics


@dataclass(frozen=True, slots=True)
class Submission:
    """One envelope as received, with the ids given to it at the door."""

    data: bytes
    message_id: str
    trace_id: str
    received_at_ms: int
    source: str  # http | spool | axis

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.data).hexdigest()


def inbound_record(sub: Submission, env: Envelope, topics: Topics) -> NewRecord:
    """The submission for the pipeline, keyed by sender (one sender's documents stay in order).

    For a status, the document id header names the answered document, so that
    the status joins that document's audit trail."""
    return NewRecord(
        topic=topics.inbound,
        key=env.sender_id.encode("utf-8"),
        value=sub.data,
        headers=make_headers(
            {
                H.MESSAGE_ID: sub.message_id,
                H.DOCUMENT_ID: env.subject_document_id,
                H.SENDER: env.sender_id,
                H.TRACE_ID: sub.trace_id,
                H.RECEIVED_AT: sub.received_at_ms,
                H.PRODUCED_AT: sub.received_at_ms,
                H.KIND: str(env.kind),
                H.SHA256: sub.sha256,
                H.SOURCE: sub.source,
            }
        ),
    )


def problems_json(problems: Sequence[Problem]) -> str:
    return json.dumps([p.to_dict() for p in problems], ensure_ascii=False)


def refusal_records(
    *,
    topics: Topics,
    data: bytes,
    problems: Sequence[Problem],
    stage: str,
    message_id: str,
    trace_id: str,
    received_at_ms: int,
    at_ms: int,
    sender: str = "",
    document_id: str = "",
    details: dict[str, Any] | None = None,
) -> list[NewRecord]:
    """A dead letter in `rejected` (the bytes and their problems) and its event."""
    digest = hashlib.sha256(data).hexdigest()
    rejected = NewRecord(
        topic=topics.rejected,
        key=(sender or message_id).encode("utf-8"),
        value=data,
        headers=make_headers(
            {
                H.MESSAGE_ID: message_id,
                H.DOCUMENT_ID: document_id or None,
                H.SENDER: sender or None,
                H.TRACE_ID: trace_id,
                H.RECEIVED_AT: received_at_ms,
                H.PRODUCED_AT: at_ms,
                H.SHA256: digest,
                H.STAGE: stage,
                H.PROBLEMS: problems_json(problems),
            }
        ),
    )
    event = Event(
        type=EventType.REFUSED,
        at_ms=at_ms,
        message_id=message_id,
        document_id=document_id,
        sender=sender,
        trace_id=trace_id,
        actor="docbroker",
        sha256=digest,
        details={"stage": stage, "problems": [p.to_dict() for p in problems], **(details or {})},
    )
    return [rejected, event.to_record(topics.events)]
