"""The audit trail: one event record per change of state of a document.

Events are keyed by document id so that the life of one document is in one
partition, in order. Building them is pure; the pipeline and the adapters
append them in the same transaction as the change they describe.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from broker.log.interface import NewRecord
from broker.records import H, make_headers


class EventType(StrEnum):
    RECEIVED = "received"  # the pipeline took a submission from inbound
    REFUSED = "refused"  # a submission failed a check (at accept or in the pipeline)
    ROUTED = "routed"  # put into a recipient's mailbox
    ACKNOWLEDGED = "acknowledged"  # the recipient acknowledged its mailbox entry


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
    sha256: str | None = None
    details: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> bytes:
        body = {
            "type": str(self.type),
            "at": datetime.fromtimestamp(self.at_ms / 1000, UTC).isoformat(timespec="milliseconds"),
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
        return json.dumps(body, ensure_ascii=False, sort_keys=True).encode("utf-8")

    def to_record(self, topic: str) -> NewRecord:
        key = self.document_id or self.message_id
        return NewRecord(
            topic=topic,
            key=key.encode("utf-8"),
            value=self.to_json(),
            headers=make_headers(
                {
                    H.MESSAGE_ID: self.message_id,
                    H.DOCUMENT_ID: self.document_id,
                    H.SENDER: self.sender,
                    H.RECIPIENT: self.recipient,
                    H.TRACE_ID: self.trace_id,
                    H.PRODUCED_AT: self.at_ms,
                }
            ),
        )
