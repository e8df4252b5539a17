"""Receipts: a recipient fetched or acknowledged a mailbox entry; the national axis
took an upstream envelope, or it could not be delivered there.

Adapters append them to the `receipts` topic (key = recipient); the pipeline
turns them into audit events (on acknowledgement of a document, the status 01
for its sender; on an upstream failure, the status 02); the mailbox view marks
the entry.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from enum import StrEnum

from broker.core.logrecords import NewRecord, Record
from broker.core.records import H, make_headers


class ReceiptKind(StrEnum):
    FETCHED = "fetched"
    ACKNOWLEDGED = "acknowledged"
    SENT_UPSTREAM = "sent-upstream"  # the national axis confirmed it (recipient: external)
    UPSTREAM_FAILED = "upstream-failed"  # the national axis could not take it
    UPSTREAM_TAKEN = "upstream-taken"  # the recipient's province took it from the axis


@dataclass(frozen=True, slots=True)
class Receipt:
    kind: ReceiptKind
    at_ms: int
    message_id: str
    document_id: str
    sender: str  # the document's sender, as the document names it
    recipient: str  # the mailbox (directory code)
    trace_id: str = ""
    envelope_kind: str = "document"  # document | status
    code: str = ""  # the document's số và ký hiệu, for the status 01
    promulgation_date: str = ""  # yyyy/MM/dd
    sha256: str = ""
    axis_doc_id: str = ""  # the national axis's id for it (SENT_UPSTREAM)
    error_code: str = ""  # the axis's ErrorCode, or a transport error (UPSTREAM_FAILED)
    reason: str = ""

    def to_record(self, topic: str) -> NewRecord:
        return NewRecord(
            topic=topic,
            key=self.recipient.encode(),
            value=json.dumps(asdict(self), ensure_ascii=False, sort_keys=True).encode(),
            headers=make_headers(
                {
                    H.MESSAGE_ID: self.message_id,
                    H.DOCUMENT_ID: self.document_id,
                    H.SENDER: self.sender,
                    H.RECIPIENT: self.recipient,
                    H.TRACE_ID: self.trace_id,
                    H.PRODUCED_AT: self.at_ms,
                    H.KIND: str(self.kind),
                }
            ),
        )

    @classmethod
    def from_record(cls, record: Record) -> Receipt:
        data = json.loads(record.value or b"{}")
        data["kind"] = ReceiptKind(data["kind"])
        return cls(**data)
