"""The pipeline's step for `receipts`: the audit events of a fetch, an acknowledgement
(and the 01 to the sender), a package the national axis confirmed or refused. Pure."""

from __future__ import annotations

from broker.core.events import Event, EventType
from broker.core.logrecords import NewRecord, Record
from broker.core.receipts import Receipt, ReceiptKind
from broker.edxml.model import Organization, StatusCode
from broker.pipeline.batch import NATIONAL_AXIS, BatchContext, Outcome
from broker.pipeline.statuses import StatusMaker


class ReceiptSteps(StatusMaker):
    """What a receipt turns into."""

    def _receipt(self, record: Record, ctx: BatchContext) -> Outcome:
        receipt = Receipt.from_record(record)
        common = {
            "message_id": receipt.message_id,
            "document_id": receipt.document_id,
            "sender": receipt.sender,
            "trace_id": receipt.trace_id,
        }
        if receipt.kind in (ReceiptKind.FETCHED, ReceiptKind.UPSTREAM_TAKEN):
            event = Event(
                EventType.DELIVERED,
                receipt.at_ms,
                recipient=receipt.recipient,
                actor=receipt.recipient,
                sha256=receipt.sha256 or None,
                **common,
            )
            return Outcome("receipt", events=(event,))
        if receipt.kind is ReceiptKind.SENT_UPSTREAM:
            event = Event(
                EventType.SENT_UPSTREAM,
                receipt.at_ms,
                recipient=receipt.recipient,
                actor=NATIONAL_AXIS,
                sha256=receipt.sha256 or None,
                details={"axis_doc_id": receipt.axis_doc_id, "kind": receipt.envelope_kind},
                **common,
            )
            return Outcome("receipt", events=(event,))
        if receipt.kind is ReceiptKind.UPSTREAM_FAILED:
            return self._upstream_failed(receipt, ctx)
        events = [
            Event(
                EventType.ACKNOWLEDGED,
                receipt.at_ms,
                recipient=receipt.recipient,
                actor=receipt.recipient,
                sha256=receipt.sha256 or None,
                **common,
            )
        ]
        records: list[NewRecord] = []
        recipient = ctx.directory.find(receipt.recipient)
        sender = ctx.directory.find(receipt.sender)
        if receipt.envelope_kind == "document" and recipient is not None and sender is not None:
            me = Organization(recipient.code102 or recipient.code, recipient.name)
            recs, evs = self._status_for_receipt(
                receipt, sender, StatusCode.RECEIVED, me, ctx, actor=recipient.code
            )
            records += recs
            events += evs
        return Outcome("receipt", tuple(records), tuple(events))

    def _upstream_failed(self, receipt: Receipt, ctx: BatchContext) -> Outcome:
        """The national axis could not take an envelope for `receipt.recipient`: the
        recipient is refused in the audit trail, and a document's sender gets a 02."""
        event = Event(
            EventType.RECIPIENT_REFUSED,
            receipt.at_ms,
            receipt.message_id,
            receipt.document_id,
            receipt.sender,
            receipt.trace_id,
            recipient=receipt.recipient,
            actor=NATIONAL_AXIS,
            sha256=receipt.sha256 or None,
            details={
                "code": "upstream-failed",
                "reason": receipt.reason,
                "axis_error": receipt.error_code,
            },
        )
        sender = ctx.directory.find(receipt.sender)
        if receipt.envelope_kind != "document" or sender is None or not sender.local:
            return Outcome("receipt", events=(event,))
        recs, evs = self._status_for_receipt(
            receipt,
            sender,
            StatusCode.REFUSED,
            self.broker_org,
            ctx,
            actor="docbroker",
            description=f"the national axis could not take it for {receipt.recipient}: "
            f"{receipt.reason}",
            about=receipt.recipient,
        )
        return Outcome("receipt", tuple(recs), (event, *evs))
