"""Taking a submission in: the record an adapter appends for it. Pure.

An adapter (HTTP, spool folder, national axis) checks the bytes first so that the
caller gets the problem codes at once, then appends the submission to `inbound`:
accepted, or refused at the door (marked with its problems, so that the
pipeline, the only writer of the audit trail, records the refusal). The
pipeline checks accepted records again: nothing reaches a mailbox unchecked.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass

from broker.core.logrecords import NewRecord
from broker.core.problems import Problem
from broker.core.records import H, make_headers
from broker.core.topics import Topics
from broker.edxml.model import Envelope

STAGE_ACCEPT = "accept"  # refused at the door; the pipeline only records it
SOURCE_AXIS = "axis"  # H.SOURCE of a package the national axis brought down
AXIS_DEDUP_SENDER = "@axis"  # dedup index key (AXIS_DEDUP_SENDER, axis docId): taken once
AUTHENTICATED = H.AUTHENTICATED  # header: the agency the adapter authenticated
IDEMPOTENCY_KEY = "idempotency-key"  # header: the caller's Idempotency-Key, if any


@dataclass(frozen=True, slots=True)
class Submission:
    """One envelope as received, with the ids given to it at the door."""

    data: bytes
    message_id: str
    trace_id: str
    received_at_ms: int
    source: str  # http | spool | axis
    authenticated: str | None = None  # the calling agency, when the adapter authenticated one
    axis_doc_id: str | None = None  # the national axis's id, for a package it brought down
    idempotency_key: str | None = None  # the Idempotency-Key it came with
    # The SHA-256 of `data`, hex: computed once. The door passes it in, hashed off the
    # event loop for a large body (broker.offload); left empty, it is computed here.
    sha256: str = ""

    def __post_init__(self) -> None:
        if not self.sha256:
            object.__setattr__(self, "sha256", hashlib.sha256(self.data).hexdigest())


def inbound_record(sub: Submission, env: Envelope, topics: Topics) -> NewRecord:
    """The submission for the pipeline, keyed by sender (one sender's documents stay in
    order, and its duplicates meet in one partition).

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
                AUTHENTICATED: sub.authenticated,
                H.AXIS_DOC_ID: sub.axis_doc_id,
                IDEMPOTENCY_KEY: sub.idempotency_key,
            }
        ),
    )


def problems_json(problems: Sequence[Problem]) -> str:
    return json.dumps([p.to_dict() for p in problems], ensure_ascii=False)


def door_refusal_record(
    sub: Submission, problems: Sequence[Problem], topics: Topics, env: Envelope | None = None
) -> NewRecord:
    """A submission refused at the door, kept with its problems and its authenticated
    caller for the audit trail; `env`, its view when it could be read (its sender and
    document then name the dead letter, and its refusal joins the document's trace)."""
    return NewRecord(
        topic=topics.inbound,
        key=(sub.authenticated or sub.message_id).encode("utf-8"),
        value=sub.data,
        headers=make_headers(
            {
                H.MESSAGE_ID: sub.message_id,
                H.DOCUMENT_ID: env.subject_document_id if env else None,
                H.SENDER: env.sender_id if env else None,
                H.KIND: str(env.kind) if env else None,
                H.TRACE_ID: sub.trace_id,
                H.RECEIVED_AT: sub.received_at_ms,
                H.PRODUCED_AT: sub.received_at_ms,
                H.SHA256: sub.sha256,
                H.SOURCE: sub.source,
                H.STAGE: STAGE_ACCEPT,
                H.PROBLEMS: problems_json(problems),
                AUTHENTICATED: sub.authenticated,
            }
        ),
    )
