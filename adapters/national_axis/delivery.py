"""Delivery state upstream: what the recipients' provinces took from the axis.

The axis lists what this province sent (getSentEdocList), one item per recipient's
copy, in the fields the SDK reads: `senderDocId` (the DocId sendEdoc answered),
`toCode` (the recipient), `sendStatus` (the copy's transport state: `done` once the
recipient's province confirmed it with updateStatus done). Each such copy not yet
known to be taken becomes an `upstream-taken` receipt, from which the pipeline
records the `delivered` event: the sender then sees `delivered_at` for that
recipient in /v1/documents/….
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import structlog

from adapters.national_axis.client import AxisClient
from broker import vdxp
from broker.clock import now_ms
from broker.core.receipts import Receipt, ReceiptKind
from broker.runtime import Runtime

log = structlog.get_logger(__name__)


def taken(entry: Mapping[str, Any]) -> bool:
    """Whether the recipient's province confirmed this copy."""
    return str(entry.get("sendStatus") or "").strip().lower() == vdxp.TRANSPORT_DONE


async def check_deliveries(client: AxisClient, runtime: Runtime) -> int:
    """One look at getSentEdocList; returns how many copies were newly found taken."""
    entries = await client.sent()
    receipts = []
    seen: set[tuple[str, str]] = set()
    for entry in entries:
        if not taken(entry):
            continue
        for row in await _untaken(runtime, entry):
            key = (row["message_id"], row["recipient"])
            if key in seen:
                continue
            seen.add(key)
            receipts.append(
                Receipt(
                    ReceiptKind.UPSTREAM_TAKEN,
                    now_ms(),
                    row["message_id"],
                    row["document_id"],
                    row["sender"],
                    row["recipient"],
                    row["trace_id"],
                    row["kind"],
                    axis_doc_id=str(entry.get("senderDocId") or ""),
                ).to_record(runtime.topics.receipts)
            )
    if receipts:
        await runtime.log.append(receipts)
        log.info("recipients' provinces took documents from the axis", copies=len(receipts))
    return len(receipts)


async def _untaken(runtime: Runtime, entry: Mapping[str, Any]) -> list[dict[str, str]]:
    """The copies of this package (by the DocId sendEdoc answered) not yet known to
    be taken, for the recipient the entry names (all of them when it names none this
    directory knows)."""
    doc_id = str(entry.get("senderDocId") or "")
    if not doc_id:
        return []
    rows = await runtime.documents.upstream_undelivered(doc_id)
    to = runtime.directory.current.find(str(entry.get("toCode") or ""))
    if to is None:
        return rows
    return [r for r in rows if r["recipient"] == to.code]
