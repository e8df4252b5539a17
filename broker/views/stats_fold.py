"""What one audit event adds to the statistics: counter increments and changes to the
open-mail and due-date tables. Pure: the statistics store applies the effects.

Counters are keyed (agency, day, measure, key), the day in the reports' time zone.
An agency is the code the event names (a sender as its document names it, a
recipient as the directory routed it); the report resolves codes in the directory.
"""

from __future__ import annotations

import bisect
import functools
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, tzinfo
from typing import Any

from broker.core.events import EventType

Body = Mapping[str, Any]

# Measures (the `measure` column); their keys in brackets.
SENT = "sent"  # accepted submissions, at the sender [document | status]
RECEIVED = "received"  # routed to a mailbox, at the recipient [document | status]
AXIS_IN = "axis_in"  # routed to a mailbox, taken in from the national axis [kind]
AXIS_OUT = "axis_out"  # routed upstream to the national axis, at the sender [kind]
AXIS_CONFIRMED = "axis_confirmed"  # the national axis confirmed it, at the sender [kind]
REFUSED = "refused"  # refusals at the sender, per problem [stage:code | recipient:code]
STATUS = "status"  # statuses reached, at the agency that reached them [01..16]
ON_TIME = "on_time"  # a recipient's 06 by the document's due date [on_time | late]
DELIVERY = "delivery"  # routed -> first fetched, at the recipient [bucket index]

SOURCE_AXIS = "axis"
DONE = "06"  # hoàn thành
BROKER_ACTOR = "docbroker"

# Delivery times: log-spaced buckets, 8 per power of ten, from 10 ms to ~12 days. A
# percentile is the upper bound of the bucket it falls in: within 1/8 decade (~33 %).
BUCKETS_PER_DECADE = 8
_FIRST_MS = 10.0
BUCKET_BOUNDS_MS: tuple[float, ...] = tuple(
    _FIRST_MS * 10 ** (i / BUCKETS_PER_DECADE) for i in range(1, 8 * BUCKETS_PER_DECADE + 1)
)


def bucket_of(ms: float) -> int:
    """The index of the bucket holding a delivery time of `ms` (the last one takes all
    longer times)."""
    return min(bisect.bisect_left(BUCKET_BOUNDS_MS, max(ms, 0.0)), len(BUCKET_BOUNDS_MS) - 1)


def percentile(histogram: Mapping[int, int], q: float) -> float | None:
    """The q-th percentile (0 < q <= 100) of a bucket histogram: the upper bound of the
    bucket it falls in. Histograms of any days add up exactly, so this is the same
    whether days were merged before or not."""
    total = sum(histogram.values())
    if total <= 0:
        return None
    rank = max(1, math.ceil(total * q / 100))
    seen = 0
    for index in sorted(histogram):
        seen += histogram[index]
        if seen >= rank:
            return BUCKET_BOUNDS_MS[index]
    return BUCKET_BOUNDS_MS[max(histogram)]


def local_day(at_ms: int, zone: tzinfo) -> str:
    """The day (yyyy-mm-dd) an instant falls on in the reports' time zone."""
    return _day_of_minute(at_ms // 60_000, zone)


@functools.lru_cache(maxsize=8192)
def _day_of_minute(minute: int, zone: tzinfo) -> str:
    """Zones change offset on whole minutes: one conversion per minute of events."""
    return datetime.fromtimestamp(minute * 60, UTC).astimezone(zone).date().isoformat()


@dataclass
class Effects:
    """What one event changes. `counts` are (agency, day, measure, key, n)."""

    counts: list[tuple[str, str, str, str, int]] = field(default_factory=list)
    message: tuple[str, str, str, str | None, str] | None = None  # id, kind, source, due, doc
    routed: tuple[str, str, int] | None = None  # (message id, recipient, at) to a mailbox
    upstream: tuple[str, str, int] | None = None  # (message id, sender, at) to the axis
    delivered: tuple[str, str, int] | None = None  # (message id, recipient, at)
    acknowledged: tuple[str, str] | None = None  # (message id, recipient)
    done: tuple[str, str, int] | None = None  # (document id, agency, at): a 06


def details(e: Body) -> Mapping[str, Any]:
    d = e.get("details")
    return d if isinstance(d, Mapping) else {}


def effects_of(e: Body, zone: tzinfo) -> Effects:
    """The effects of one stored event body (`Event.body()` plus chain fields)."""
    out = Effects()
    kind = e.get("type")
    at_ms = int(e.get("at_ms") or 0)
    day = local_day(at_ms, zone)
    d = details(e)
    if kind == EventType.ACCEPTED:
        _accepted(e, d, day, out)
    elif kind == EventType.ROUTED:
        who = str(e.get("recipient") or "")
        if d.get("to") == "upstream":
            out.upstream = (str(e["message_id"]), str(e.get("sender") or ""), at_ms)
        elif who:
            out.routed = (str(e["message_id"]), who, at_ms)
    elif kind == EventType.REFUSED:
        stage = str(d.get("stage") or "pipeline")
        sender = str(e.get("sender") or "")
        for problem in d.get("problems") or ():
            code = problem.get("code") if isinstance(problem, Mapping) else None
            out.counts.append((sender, day, REFUSED, f"{stage}:{code or 'unknown'}", 1))
    elif kind == EventType.RECIPIENT_REFUSED:  # one recipient could not be served
        code = str(d.get("code") or "unknown")
        out.counts.append((str(e.get("sender") or ""), day, REFUSED, f"recipient:{code}", 1))
    elif kind == EventType.STATUS_EMITTED:
        code = d.get("status_code")
        actor = str(e.get("actor") or "")
        agency = str(e.get("recipient") or "") if actor in ("", BROKER_ACTOR) else actor
        if code and agency:
            out.counts.append((agency, day, STATUS, str(code), 1))
        if d.get("to") == "mailbox" and e.get("recipient"):  # a status docbroker made
            doc = str(e.get("document_id") or "")
            out.message = (str(e["message_id"]), "status", BROKER_ACTOR, None, doc)
            out.routed = (str(e["message_id"]), str(e["recipient"]), at_ms)
    elif kind == EventType.DELIVERED and e.get("recipient"):
        out.delivered = (str(e["message_id"]), str(e["recipient"]), at_ms)
    elif kind == EventType.ACKNOWLEDGED and e.get("recipient"):
        out.acknowledged = (str(e["message_id"]), str(e["recipient"]))
    elif kind == EventType.SENT_UPSTREAM:
        envelope = str(d.get("kind") or "document")
        out.counts.append((str(e.get("sender") or ""), day, AXIS_CONFIRMED, envelope, 1))
    return out


def _accepted(e: Body, d: Mapping[str, Any], day: str, out: Effects) -> None:
    envelope = str(d.get("kind") or "document")
    sender = str(e.get("actor") or e.get("sender") or "")  # the actor: its directory code
    out.counts.append((sender, day, SENT, envelope, 1))
    due = d.get("due_date") if envelope == "document" else None
    out.message = (
        str(e["message_id"]),
        envelope,
        str(d.get("source") or "unknown"),
        str(due) if due else None,
        str(e.get("document_id") or ""),
    )
    code = d.get("status_code")
    if envelope == "status" and code:
        out.counts.append((sender, day, STATUS, str(code), 1))
        if code == DONE:
            out.done = (str(e.get("document_id") or ""), sender, int(e.get("at_ms") or 0))


def routed_counts(
    recipient: str, day: str, envelope: str, source: str
) -> list[tuple[str, str, str, str, int]]:
    """The counters of one delivery to a mailbox, the message's kind and source known."""
    out = [(recipient, day, RECEIVED, envelope, 1)]
    if source == SOURCE_AXIS:
        out.append((recipient, day, AXIS_IN, envelope, 1))
    return out


def on_time_key(done_at_ms: int, due: str, zone: tzinfo) -> str:
    """Whether a 06 reached at `done_at_ms` was by the due date (that whole day)."""
    return "on_time" if local_day(done_at_ms, zone) <= due else "late"
