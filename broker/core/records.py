"""Record headers and identifiers every docbroker record carries.

Header values are UTF-8 bytes. Every record carries at least message id,
document id, sender, trace id and timestamps; mailbox and ack records also the
recipient.
"""

from __future__ import annotations

import os
import re
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

from broker.core.logrecords import Headers, Record


class H:
    """Header names (stable: read models and other instances depend on them)."""

    MESSAGE_ID = "message-id"
    DOCUMENT_ID = "document-id"
    SENDER = "sender"
    RECIPIENT = "recipient"
    TRACE_ID = "trace-id"
    RECEIVED_AT = "received-at"  # ms since epoch: the durable accept
    PRODUCED_AT = "produced-at"  # ms since epoch: when this record was made
    KIND = "kind"  # document | status
    SHA256 = "sha256"  # hex digest of the value
    PROBLEMS = "problems"  # JSON list of problems (rejected records)
    STAGE = "stage"  # where a refusal happened: accept | pipeline
    SOURCE = "source"  # which adapter took the submission in: http | spool | axis
    ACKED_AT = "acked-at"
    AXIS_DOC_ID = "axis-doc-id"  # the national axis's id of a package it brought down
    UPSTREAM_TO = "upstream-to"  # JSON list: the directory codes an upstream record is for
    UPSTREAM_REQUESTED = "upstream-requested"  # JSON list: the same, as the package names them
    AUTHENTICATED = "authenticated"  # the agency or system the adapter authenticated
    REPLAYED_AS = "replayed-as"  # a marker on `rejected`: that dead letter was replayed
    REPLAY_KEY = "replay-key"  # which dead letter a replay is of: `<message id>@<ms>`
    REPLAY_ACTOR = "replay-actor"  # who asked for a replay: cli:<user>, console:<admin>


def make_headers(
    values: Mapping[str, str | int | None] | Iterable[tuple[str, str | int | None]],
) -> Headers:
    """Headers from names to str/int values; None values are left out."""
    items = values.items() if isinstance(values, Mapping) else values
    return tuple((k, str(v).encode("utf-8")) for k, v in items if v is not None)


def iso_ms(ms: int | None) -> str | None:
    """ISO-8601 UTC with milliseconds, as records, events and the API write times."""
    if ms is None:
        return None
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="milliseconds")


def new_message_id(at_ms: int) -> str:
    """A UUIDv7 (time-ordered, RFC 9562) for a message received at `at_ms`: listings
    sort by arrival, ids stay unguessable."""
    ms = at_ms
    rand = int.from_bytes(os.urandom(10), "big")
    value = (ms & ((1 << 48) - 1)) << 80 | 0x7 << 76 | (rand >> 68 & 0xFFF) << 64
    value |= 0b10 << 62 | (rand & ((1 << 62) - 1))
    return str(uuid.UUID(int=value))


_TRACEPARENT = re.compile(r"^[0-9a-f]{2}-([0-9a-f]{32})-[0-9a-f]{16}-[0-9a-f]{2}$")


def trace_id_from(traceparent: str | None) -> str:
    """The W3C trace id of an incoming traceparent header, or a new one."""
    if traceparent:
        m = _TRACEPARENT.match(traceparent.strip().lower())
        if m and m.group(1) != "0" * 32:
            return m.group(1)
    return uuid.uuid4().hex


def received_at_ms(record: Record) -> int:
    raw = record.header(H.RECEIVED_AT)
    try:
        return int(raw) if raw is not None else record.timestamp_ms
    except ValueError:
        return record.timestamp_ms


@dataclass(frozen=True, slots=True)
class FirstSeen:
    """The first submission of a (sender, DocumentId): when it was received, as which
    message, the SHA-256 of its bytes ("" where an older entry did not say)."""

    at_ms: int
    message_id: str
    sha256: str = ""
    # True: the pipeline took it in (it decides, in partition order); False: the door's
    # claim of a submission still on its way (a hint for answering resends).
    committed: bool = True


IDEMPOTENCY_PREFIX = "@idem:"  # dedup key `@idem:<caller>` + Idempotency-Key


def idempotency_key(caller: str, key: str) -> tuple[str, str]:
    """The dedup index key of a caller's Idempotency-Key."""
    return (f"{IDEMPOTENCY_PREFIX}{caller}", key)
