"""Delivery state upstream: what the recipients' provinces took from the axis.

The axis lists what this province sent (getSentEdocList) with the transport status
of each recipient's copy: `done` once the recipient's province confirmed it
(updateStatus done). Each such copy not yet known to be taken becomes an
`upstream-taken` receipt, from which the pipeline records the `delivered` event:
the sender then sees `delivered_at` for that recipient in /v1/documents/….
"""

from __future__ import annotations

from typing import Any

import structlog

from adapters.national_axis.client import AxisClient
from broker.receipts import Receipt, ReceiptKind
from broker.records import now_ms
from broker.runtime import Runtime

log = structlog.get_logger(__name__)


async def check_deliveries(client: AxisClient, runtime: Runtime) -> int:
    """One look at getSentEdocList; returns how many copies were newly found taken."""
    entries = await client.sent()
    receipts = []
    seen: set[tuple[str, str]] = set()
    for entry in entries:
        if str(entry.get("status") or "").lower() != "done":
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
                    axis_doc_id=str(entry.get("docId") or ""),
                ).to_record(runtime.topics.receipts)
            )
    if receipts:
        await runtime.log.append(receipts)
        log.info("recipients' provinces took documents from the axis", copies=len(receipts))
    return len(receipts)


async def _untaken(runtime: Runtime, entry: dict[str, Any]) -> list[dict[str, str]]:
    """The copies of this axis docId not yet known to be taken, for the recipient the
    entry names (all of them when it names none this directory knows)."""
    rows = await runtime.documents.upstream_undelivered(str(entry.get("docId") or ""))
    to = runtime.directory.current.find(str(entry.get("to") or ""))
    if to is None:
        return rows
    return [r for r in rows if r["recipient"] == to.code]
