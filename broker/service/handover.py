"""Handing envelopes over to their recipient: reading one out, acknowledging it.

Adapter-neutral (the native API and the SDK surface both use it). The first
read by the recipient itself appends a `fetched` receipt (the audit trail's
`delivered`); an acknowledgement appends `acknowledged` (the pipeline then
sends the status 01 to the sender) and waits until the mailbox view shows it,
so that the caller reads its own write.
"""

from __future__ import annotations

from broker.clock import now_ms
from broker.core.errors import Archived, BackendUnavailable
from broker.core.logrecords import TopicPartition
from broker.core.receipts import Receipt, ReceiptKind
from broker.runtime import Runtime
from broker.views.mailbox import Delivery


def receipt_for(d: Delivery, kind: ReceiptKind) -> Receipt:
    return Receipt(
        kind=kind,
        at_ms=now_ms(),
        message_id=d.message_id,
        document_id=d.document_id,
        sender=d.sender,
        recipient=d.recipient,
        trace_id=d.trace_id,
        envelope_kind=d.kind,
        code=d.code,
        promulgation_date=d.promulgation_date,
        sha256=d.sha256,
    )


async def read_envelope(runtime: Runtime, d: Delivery, *, by_recipient: bool) -> bytes:
    """The envelope's bytes as delivered; `by_recipient` False for an administrator
    looking (nothing is recorded as delivered then). Recent mail comes from the
    mailbox view's memory, older mail from the log."""
    body = runtime.view.recent_body(d)
    if body is None:
        body = await _read_from_log(runtime, d)
    if by_recipient and d.fetched_at_ms is None:
        await runtime.log.append(
            [receipt_for(d, ReceiptKind.FETCHED).to_record(runtime.topics.receipts)]
        )
    return body


async def _read_from_log(runtime: Runtime, d: Delivery) -> bytes:
    record = await runtime.log.read_at(d.topic, d.partition, d.offset)
    if record is None or record.value is None:
        starts = await runtime.log.start_offsets([d.topic])
        if d.offset < starts.get(TopicPartition(d.topic, d.partition), 0):
            raise Archived(
                f"{d.message_id} was acknowledged and has since left the log "
                "(retention): a signed archive holds it"
            )
        raise BackendUnavailable(
            f"the record of {d.message_id} ({d.topic}[{d.partition}]@{d.offset}) is not readable"
        )
    return record.value


async def acknowledge(runtime: Runtime, d: Delivery) -> Delivery:
    """Acknowledge once (again is a no-op); the entry as the view shows it after."""
    if d.acked_at_ms is not None:
        return d
    receipt = receipt_for(d, ReceiptKind.ACKNOWLEDGED)
    positions = await runtime.log.append([receipt.to_record(runtime.topics.receipts)])
    await runtime.view.wait_applied(positions, runtime.settings.http.read_your_writes_timeout)
    return await runtime.view.get(d.recipient, d.message_id) or d
