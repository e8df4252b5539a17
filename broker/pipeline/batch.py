"""What one batch of the pipeline is processed against, and what each record turns
into: values shared by the steps (broker.pipeline.processing, statuses, receipts). Pure."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime
from typing import Any

from lxml import etree

from broker.core.events import Event, EventType
from broker.core.logrecords import NewRecord, Record
from broker.core.problems import Irregularity
from broker.core.records import FirstSeen, H, received_at_ms
from broker.directory.book import Directory
from broker.directory.model import Agency
from broker.directory.routing import Decision
from broker.edxml.builder import vietnam_time
from broker.edxml.model import Envelope, Kind, StatusCode
from broker.trust.sender import SenderCheck

DedupLookup = Callable[[str, str], FirstSeen | None]  # (sender code, document id) -> first

NATIONAL_AXIS = "national-axis"  # the actor of what the national axis did
MESSAGE_ID_MAX = 64  # the HTTP API's bound on a message id in a path
_ID_PART = re.compile(r"^[0-9A-Za-z][0-9A-Za-z._-]*$")  # the agency-code alphabet of paths


@dataclass(frozen=True, slots=True)
class BatchContext:
    """What one batch is processed against: the directory and dedup index as they are."""

    directory: Directory
    seen: DedupLookup
    now_ms: int  # the batch's time (the runner read the clock)

    @property
    def at(self) -> datetime:
        return datetime.fromtimestamp(self.now_ms / 1000, UTC)

    @property
    def stamp(self) -> datetime:
        """The batch's time as edXML timestamps are written (Vietnam, naive)."""
        return vietnam_time(self.at)


@dataclass(frozen=True, slots=True)
class Outcome:
    """The records one input record turns into, and what happened to it."""

    outcome: str  # routed | rejected | failed | receipt
    records: tuple[NewRecord, ...] = ()
    events: tuple[Event, ...] = ()
    deliveries: int = 0  # mailbox records of the submission itself (for the latency metric)
    codes: tuple[str, ...] = ()  # problem codes of a refusal
    signature: tuple[str, str] | None = None  # (outcome, policy) of the sender's signature
    dedup: tuple[tuple[str, str], ...] = ()  # (sender, document id) to remember
    warnings: tuple[str, ...] = ()  # the warning codes of an accepted submission, each once


@dataclass(frozen=True, slots=True)
class Passed:
    """A submission the checks let through: its view, its sender, the sender's
    signature verdict and the package's warnings."""

    env: Envelope
    sender: Agency
    check: SenderCheck | None  # None until the signature was checked
    warnings: tuple[Irregularity, ...]
    # The package as the validator parsed it (None if it changed it), to check the
    # signature on and then stamp and sign without parsing again; stamping changes it.
    root: etree._Element | None = None


@dataclass(frozen=True)
class Ids:
    message_id: str
    trace_id: str
    received_at: int
    sha256: str
    source: str = ""  # H.SOURCE: which adapter took it in (http | spool | axis | sdk)


def status_message_id(message_id: str, code: StatusCode, to: str, about: str | None = None) -> str:
    """The id of a status docbroker makes about the submission `message_id`, for the
    agency `to`: `<message id>.<status code>.<to>`, then `.<about>` for a status about
    one recipient. Unique per (submission, code, to, about), so the mailbox (unique on
    recipient and message id) keeps each. Codes outside the id alphabet, or an id
    longer than the API accepts, give `<message id>.<status code>.<16 hex of a hash>`."""
    parts = [to] if about is None else [to, about]
    readable = ".".join([message_id, code.value, *parts])
    if len(readable) <= MESSAGE_ID_MAX and all(_ID_PART.match(p) for p in parts):
        return readable
    digest = hashlib.sha256("\n".join(parts).encode()).hexdigest()[:16]
    return f"{message_id}.{code.value}.{digest}"


def ids_of(record: Record) -> Ids:
    return Ids(
        record.header_str(H.MESSAGE_ID),
        record.header_str(H.TRACE_ID),
        received_at_ms(record),
        record.header_str(H.SHA256) or hashlib.sha256(record.value or b"").hexdigest(),
        record.header_str(H.SOURCE),
    )


def first_seen(record: Record, at_ms: int) -> FirstSeen:
    """What the dedup index keeps of a submission the pipeline took in at `at_ms`."""
    return FirstSeen(at_ms, record.header_str(H.MESSAGE_ID), ids_of(record).sha256)


def with_changes(outcome: Outcome, **changes: Any) -> Outcome:
    return replace(outcome, **changes)


def iso_seconds(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="seconds")


def parse_date(raw: str) -> date | None:
    try:
        y, m, d = (int(x) for x in raw.split("/"))
        return date(y, m, d)
    except ValueError:
        return None


@dataclass(frozen=True, slots=True)
class Hop:
    """A submission as this hop forwards it: the stamped and signed bytes, their hash,
    the submission's ids, and the fields every event about it carries."""

    forwarded: bytes
    sha256: str
    ids: Ids
    common: dict[str, str]


def event_fields(env: Envelope, ids: Ids) -> dict[str, str]:
    return {
        "message_id": ids.message_id,
        "document_id": env.subject_document_id,
        "sender": env.sender_id,
        "trace_id": ids.trace_id,
    }


def accepted_event(passed: Passed, ids: Ids, size: int, at_ms: int) -> Event:
    """The audit event of an accepted submission (what the document view and the
    reports read of it)."""
    env, check = passed.env, passed.check
    return Event(
        EventType.ACCEPTED,
        at_ms,
        actor=passed.sender.code,
        sha256=ids.sha256,
        details={
            "kind": str(env.kind),
            "business": env.business_kind.name.lower(),
            "status_code": env.status_code.value if env.status_code else None,
            "status_description": env.status_description if env.kind is Kind.STATUS else None,
            "targets": list(env.business.targets) if env.business else [],
            "recipients": list(env.recipient_ids),
            "size": size,
            "subject": env.subject,
            "code": str(env.code) if env.code else "",
            "received_at_ms": ids.received_at,
            "sender_signature": check.audit() if check else None,
            "warnings": [w.to_dict() for w in passed.warnings],
            "source": ids.source or None,  # the reports' inbound from the national axis
            "due_date": env.due_date.isoformat() if env.due_date else None,  # on-time processing
        },
        **event_fields(env, ids),
    )


def routed_event(decision: Decision, hop: Hop, at_ms: int) -> Event:
    return Event(
        EventType.ROUTED,
        at_ms,
        recipient=decision.agency,
        actor="docbroker",
        sha256=hop.sha256,
        details={"to": str(decision.route), "requested": decision.requested},
        **hop.common,
    )
