"""What the pipeline does with one inbound record, as a function of the record.

check (edXML validation; the sender's signature per policy, acting on the
signed part when one verifies) -> route (each recipient's mailbox) -> stamp
(this hop's TraceHeader) and sign (the broker's signature) -> output records and
events. A refusal is a value (a `rejected` record and an event), never an
exception: a poison record never blocks its partition.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import structlog

from broker.edxml.model import Envelope
from broker.edxml.validator import EnvelopeValidator
from broker.errors import InputRefused
from broker.events import Event, EventType
from broker.intake import refusal_records
from broker.log.interface import NewRecord, Record
from broker.problems import Problem
from broker.records import H, make_headers, now_ms, received_at_ms
from broker.topics import Topics
from broker.trust.context import TrustContext
from broker.trust.sender import check_sender

log = structlog.get_logger(__name__)


@dataclass(frozen=True, slots=True)
class Outcome:
    """The records one inbound record turns into, and what happened to it."""

    outcome: str  # routed | rejected | failed
    records: tuple[NewRecord, ...]
    deliveries: int = 0
    codes: tuple[str, ...] = ()  # problem codes of a refusal
    signature: tuple[str, str] | None = None  # (outcome, policy) of the sender's signature


@dataclass(frozen=True, slots=True)
class InboundProcessor:
    """Built once at start; `process` is then a pure function of the record."""

    topics: Topics
    validator: EnvelopeValidator
    trust: TrustContext | None = None  # None: no signature steps (tests of routing alone)

    def process(self, record: Record, at_ms: int | None = None) -> Outcome:
        at = now_ms() if at_ms is None else at_ms
        data = record.value or b""
        try:
            envelope = self.validator.check(data)
            forwarded, signature, verdict = data, None, None
            if self.trust is not None:
                check = check_sender(data, envelope, self.trust.verifier, self.trust.book)
                if check.problems:
                    refused = self.refuse(
                        record,
                        check.problems,
                        at,
                        "rejected",
                        details={"sender_signature": check.audit()},
                    )
                    return replace(refused, signature=(check.outcome, check.policy))
                if check.signed_data is not None:
                    # Act on what the signature covers, not on the bytes around it.
                    envelope = self.validator.check(check.signed_data)
                signature = check.audit()
                verdict = (check.outcome, check.policy)
                forwarded = self.trust.signer.stamp_and_sign(data, self.trust.organ_id)
        except InputRefused as exc:
            return self.refuse(record, exc.problems, at, "rejected")
        except Exception as exc:  # a bug must not wedge the partition
            log.exception("pipeline step failed", offset=record.offset, partition=record.partition)
            problem = Problem("internal-error", f"{exc.__class__.__name__}: {exc}")
            return self.refuse(record, [problem], at, "failed")
        return replace(self._route(record, envelope, at, forwarded, signature), signature=verdict)

    def process_batch(self, records: Sequence[Record]) -> list[Outcome]:
        return [self.process(r) for r in records]

    def refuse(
        self,
        record: Record,
        problems: Sequence[Problem],
        at: int,
        outcome: str = "rejected",
        details: dict[str, Any] | None = None,
    ) -> Outcome:
        """Dead-letter the record with its problems (and an event)."""
        recs = refusal_records(
            topics=self.topics,
            data=record.value or b"",
            problems=problems,
            stage="pipeline",
            message_id=record.header_str(H.MESSAGE_ID),
            trace_id=record.header_str(H.TRACE_ID),
            received_at_ms=received_at_ms(record),
            at_ms=at,
            sender=record.header_str(H.SENDER),
            document_id=record.header_str(H.DOCUMENT_ID),
            details=details,
        )
        return Outcome(outcome, tuple(recs), codes=tuple(p.code for p in problems))

    def _route(
        self,
        record: Record,
        env: Envelope,
        at: int,
        forwarded: bytes,
        signature: dict[str, Any] | None,
    ) -> Outcome:
        data = record.value or b""
        digest = hashlib.sha256(data).hexdigest()
        forwarded_digest = hashlib.sha256(forwarded).hexdigest()
        message_id = record.header_str(H.MESSAGE_ID)
        trace_id = record.header_str(H.TRACE_ID)
        received = received_at_ms(record)
        document_id = env.subject_document_id
        common = {
            "message_id": message_id,
            "document_id": document_id,
            "sender": env.sender_id,
            "trace_id": trace_id,
            "sha256": digest,
        }
        out: list[NewRecord] = [
            Event(
                EventType.RECEIVED,
                at,
                actor=env.sender_id,
                details={
                    "kind": str(env.kind),
                    "business": env.business_kind.name.lower(),
                    "status_code": env.status_code.value if env.status_code else None,
                    "size": len(data),
                    "received_at_ms": received,
                    "sender_signature": signature,
                },
                **common,
            ).to_record(self.topics.events)
        ]
        for recipient in env.recipient_ids:
            out.append(
                NewRecord(
                    topic=self.topics.mailbox,
                    key=recipient.encode("utf-8"),
                    value=forwarded,
                    headers=make_headers(
                        {
                            H.MESSAGE_ID: message_id,
                            H.DOCUMENT_ID: document_id,
                            H.SENDER: env.sender_id,
                            H.RECIPIENT: recipient,
                            H.TRACE_ID: trace_id,
                            H.RECEIVED_AT: received,
                            H.PRODUCED_AT: at,
                            H.KIND: str(env.kind),
                            H.SHA256: forwarded_digest,
                        }
                    ),
                )
            )
            out.append(
                Event(
                    EventType.ROUTED,
                    at,
                    recipient=recipient,
                    actor="docbroker",
                    details={"to": "mailbox", "forwarded_sha256": forwarded_digest},
                    **common,
                ).to_record(self.topics.events)
            )
        return Outcome("routed", tuple(out), deliveries=len(env.recipient_ids))
