"""A document's state from its audit events: a pure fold, tested without storage.

`fold_document` takes a document's stored event bodies (`events.event_bytes`:
`Event.body()` plus chain, seq and prev) and says where the document is for each
of its recipients (routed, delivered, acknowledged, the latest processing status).
The document view (broker.views.documents) keeps the events and calls it.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from broker.core.events import EventType
from broker.core.records import iso_ms

DOCBROKER = "docbroker"  # the actor of what docbroker decided itself
Body = Mapping[str, Any]  # an event as stored in the `events` topic
Resolve = Callable[[str], str | None]  # any agency code -> its directory code, when known


# -- the state of one document


@dataclass(frozen=True, slots=True)
class StatusSeen:
    """A processing status (QCVN 102 StatusCode) about one recipient's copy.

    code: "01" đã đến, "02" từ chối tiếp nhận, "03" đã tiếp nhận, ... (StatusCode).
    at_ms: when docbroker took the status in or made it.
    by: whom the status speaks for: the recipient's own status names its sender as
        written in the package (either code form); the 01 docbroker makes when the
        recipient acknowledges names the recipient's directory code; a 02 docbroker
        made because it could not serve the recipient says "docbroker".
    description: the status's text (its Description; for docbroker's 02, why the
        recipient could not be served); None when it has none, and for a recipient's
        status recorded before the audit trail carried the text.
    """

    code: str
    at_ms: int
    by: str
    description: str | None

    def to_json(self) -> dict[str, Any]:
        return {
            "code": self.code,
            "at": iso_ms(self.at_ms),
            "by": self.by,
            "description": self.description,
        }


@dataclass(frozen=True, slots=True)
class RecipientState:
    """Where the document is for one recipient.

    agency: the directory code docbroker routed it to; None while it was only refused
        (an unknown code has no directory code).
    requested: the code as the document named the recipient.
    route: "mailbox" (a local agency), "upstream" (queued for the national axis) or
        "refused", as the latest routing decision says (an update is routed again).
    routed_at_ms: first put in the mailbox or queued upstream; None if never.
    delivered_at_ms: first fetched by the recipient (DELIVERED); for a recipient outside
        the province, when its province took it from the national axis.
    acknowledged_at_ms: first acknowledged by the recipient (ACKNOWLEDGED).
    sent_upstream_at_ms: the national axis confirmed it (SENT_UPSTREAM).
    refused_code, refused_reason: why docbroker could not serve the recipient (the
        reason is the text of the status 02 the sender got); None unless refused.
    latest_status: the status with the greatest time (ties: the later event) among
        the recipient's own statuses and those docbroker made about it; None if none.
    reached: every status code seen about the recipient, first seen first (what a
        search for documents that reached a status matches).
    """

    agency: str | None
    requested: str
    route: str
    routed_at_ms: int | None = None
    delivered_at_ms: int | None = None
    acknowledged_at_ms: int | None = None
    sent_upstream_at_ms: int | None = None
    refused_code: str | None = None
    refused_reason: str | None = None
    latest_status: StatusSeen | None = None
    reached: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {
            "agency": self.agency,
            "requested": self.requested,
            "route": self.route,
            "routed_at": iso_ms(self.routed_at_ms),
            "delivered_at": iso_ms(self.delivered_at_ms),
            "acknowledged_at": iso_ms(self.acknowledged_at_ms),
            "sent_upstream_at": iso_ms(self.sent_upstream_at_ms),
            "refused_code": self.refused_code,
            "refused_reason": self.refused_reason,
            "latest_status": self.latest_status.to_json() if self.latest_status else None,
        }


@dataclass(frozen=True, slots=True)
class Refusal:
    """A submission of the document refused as a whole.

    message_id: the submission's; stage: "accept" (at the door) or "pipeline";
    problems: each problem as `Problem.to_dict()`; at_ms: when it was refused.
    """

    message_id: str
    stage: str
    problems: tuple[dict[str, Any], ...]
    at_ms: int

    def to_json(self) -> dict[str, Any]:
        return {
            "message_id": self.message_id,
            "stage": self.stage,
            "problems": list(self.problems),
            "at": iso_ms(self.at_ms),
        }


@dataclass(frozen=True, slots=True)
class DocumentState:
    """One document as the audit trail tells it.

    document_id: its edXML DocumentId.
    sender: the document's sender as the package writes it (From/OrganId): the sender
        of its first accepted document envelope or, when none was accepted, of its
        first refused submission; None when only statuses about it were seen.
    kind: "document"; "status" when only statuses answering it were accepted (the
        document went through another broker); None when nothing was accepted.
    message_ids: the sender's submissions of it (accepted or refused), in order. The
        submissions of other agencies (statuses answering it, the same DocumentId
        from another sender) are not submissions of it.
    accepted_at_ms: when docbroker accepted its first submission; None if never.
    refused: the sender's submissions refused as a whole.
    recipients: every recipient its accepted submissions named, in routing order.
    subject, code: its Subject and number/notation (CodeNumber/CodeNotation), as its
        first accepted submission gave them ("" when unknown, e.g. events written
        before the audit trail carried them).
    """

    document_id: str
    sender: str | None
    kind: str | None
    message_ids: tuple[str, ...]
    accepted_at_ms: int | None
    refused: tuple[Refusal, ...]
    recipients: tuple[RecipientState, ...]
    subject: str = ""
    code: str = ""

    def to_json(self) -> dict[str, Any]:
        return {
            "document_id": self.document_id,
            "subject": self.subject,
            "code": self.code,
            "sender": self.sender,
            "kind": self.kind,
            "message_ids": list(self.message_ids),
            "accepted_at": iso_ms(self.accepted_at_ms),
            "refused": [r.to_json() for r in self.refused],
            "recipients": [r.to_json() for r in self.recipients],
        }


# -- the fold


def event_order(e: Body) -> tuple[int, str, int]:
    """Time, then the chain and its sequence (the order `audit.document_events` uses)."""
    return (int(e["at_ms"]), str(e["chain"]), int(e["seq"]))


def is_document_accepted(e: Body) -> bool:
    """A document envelope (not a status) the pipeline took in."""
    return e["type"] == EventType.ACCEPTED and details(e).get("kind") == "document"


_MARKS = {  # the first of each counts
    EventType.DELIVERED: "delivered_at_ms",
    EventType.ACKNOWLEDGED: "acknowledged_at_ms",
    EventType.SENT_UPSTREAM: "sent_upstream_at_ms",
}


@dataclass
class _Recipient:
    """A recipient while the fold runs: its state so far and every code it is known by."""

    state: RecipientState
    codes: set[str]

    def update(self, **changes: Any) -> None:
        self.state = replace(self.state, **changes)

    def saw(self, status: StatusSeen) -> None:
        """A status about this recipient, in event order: the latest so far."""
        reached = tuple(dict.fromkeys((*self.state.reached, status.code)))
        self.update(latest_status=status, reached=reached)


@dataclass
class _Recipients:
    """The document's recipients, found by any of their codes."""

    resolve: Resolve | None
    found: list[_Recipient] = field(default_factory=list)

    def find(self, code: str | None) -> _Recipient | None:
        if not code:
            return None
        for r in self.found:
            if code in r.codes:
                return r
        agency = self.resolve(code) if self.resolve else None
        return next((r for r in self.found if agency and r.state.agency == agency), None)

    def named(self, requested: str, agency: str | None = None) -> _Recipient:
        """The recipient a routing decision is about, added when new."""
        r = self.find(requested) or self.find(agency)
        if r is None:
            r = _Recipient(RecipientState(None, requested, ""), {requested})
            self.found.append(r)
        if agency:
            r.update(agency=agency)
            r.codes.add(agency)
        return r


def events_of(events: Iterable[Body], sender_codes: Collection[str]) -> list[Body]:
    """The events of the document one sender sent under a DocumentId (its identity is
    (sender, DocumentId): another agency may use the same DocumentId). Kept: what that
    sender's submissions caused (their `sender` is it), the statuses that answer it
    (addressed to it: a recipient's status names it in its recipients, docbroker's
    statuses and their deliveries name it as recipient)."""
    codes = set(sender_codes)
    return [
        e
        for e in events
        if e.get("sender") in codes
        or e.get("recipient") in codes
        or (
            details(e).get("kind") == "status"
            and codes.intersection(details(e).get("recipients") or ())
        )
    ]


def fold_document(events: Iterable[Body], resolve: Resolve | None = None) -> DocumentState | None:
    """The state of the document these events (all with its document id) tell; None
    without events. `resolve` maps any agency code to its directory code, to attribute
    statuses whose sender wrote itself in a form the events do not show."""
    ordered = sorted(events, key=event_order)
    return _Fold(ordered, resolve).state() if ordered else None


class _Fold:
    """One pass over a document's ordered events per concern: who the sender is, where
    each recipient was routed, the codes each recipient is known by, then progress and
    statuses (in order, so the last status applied is the latest)."""

    def __init__(self, ordered: Sequence[Body], resolve: Resolve | None) -> None:
        self.ordered = ordered
        self.origin = next((e for e in ordered if is_document_accepted(e)), None)
        refusals = [e for e in ordered if e["type"] == EventType.REFUSED]
        first = self.origin or (refusals[0] if refusals else None)
        self.sender: str | None = first["sender"] if first else None
        self.own = [e for e in ordered if self.sender in (None, e["sender"])]
        self.submitted = {e["message_id"] for e in self.own if is_document_accepted(e)}
        self.recipients = _Recipients(resolve)

    def state(self) -> DocumentState:
        self._route()
        self._learn_aliases()
        refused_before = self._refused_before()
        for e in self.ordered:
            self._progress(e, refused_before)
        return DocumentState(
            document_id=self.ordered[0]["document_id"],
            sender=self.sender,
            kind=self._kind(),
            message_ids=tuple(dict.fromkeys(e["message_id"] for e in self.own if _submits(e))),
            accepted_at_ms=self.origin["at_ms"] if self.origin else None,
            refused=tuple(_refusal(e) for e in self.own if e["type"] == EventType.REFUSED),
            recipients=tuple(r.state for r in self.recipients.found),
            subject=str(details(self.origin).get("subject") or ""),
            code=str(details(self.origin).get("code") or ""),
        )

    def _kind(self) -> str | None:
        if self.origin is not None:
            return "document"
        accepted = next((e for e in self.ordered if e["type"] == EventType.ACCEPTED), None)
        return details(accepted).get("kind") if accepted else None

    def _route(self) -> None:
        """Routing decisions of the sender's submissions. A status answering the document
        is routed too (back to the sender), but that does not make a recipient."""
        for e in self.ordered:
            if e["message_id"] not in self.submitted:
                continue
            d = details(e)
            if e["type"] == EventType.ROUTED:
                r = self.recipients.named(str(d.get("requested") or e["recipient"]), e["recipient"])
                r.update(
                    route=str(d.get("to", "")),
                    routed_at_ms=_first(r.state.routed_at_ms, e["at_ms"]),
                    refused_code=None,
                    refused_reason=None,
                )
            elif e["type"] == EventType.RECIPIENT_REFUSED:
                r = self.recipients.named(e["recipient"])
                r.update(
                    route="refused", refused_code=d.get("code"), refused_reason=d.get("reason")
                )
            elif e["type"] == EventType.REPLAYED and d.get("to") == "upstream":
                for r in self.recipients.found:  # those the national axis refused go again
                    if r.state.refused_code == "upstream-failed":
                        r.update(route="upstream", refused_code=None, refused_reason=None)

    def _learn_aliases(self) -> None:
        """The 01 docbroker makes on an acknowledgement is from the recipient in its
        QCVN 102 form (the event's sender) on behalf of its directory code (the actor)."""
        for e in self.ordered:
            if self._on_behalf_of_recipient(e):
                r = self.recipients.find(e["actor"])
                if r is not None:
                    r.codes.add(e["sender"])

    def _on_behalf_of_recipient(self, e: Body) -> bool:
        """A status docbroker made for a recipient about one of the sender's submissions
        (its message id is made from the submission's)."""
        return (
            e["type"] == EventType.STATUS_EMITTED
            and e.get("actor") not in (None, DOCBROKER)
            and self._made_for_submission(e)
        )

    def _made_for_submission(self, e: Body) -> bool:
        """A status docbroker made about one of the sender's submissions: its message id
        is made from the submission's."""
        return any(e["message_id"].startswith(f"{m}.") for m in self.submitted)

    def _refused_before(self) -> dict[tuple[str, int], str]:
        """The refused recipient each of docbroker's 02 statuses without `about` is
        about, by its link.

        Only a fallback for events written before the pipeline recorded `about` (the
        requested code the 02 concerns), which is what `_docbrokers_status` uses. Such
        an event names only the sender it goes to, but the pipeline emits it as the
        link right after the RECIPIENT_REFUSED of that recipient (same chain, next
        seq, a message id made from the submission's). A 02 that follows a REFUSED
        is about the whole submission and concerns no recipient.
        """
        links = {(e["chain"], e["seq"]): e for e in self.ordered}
        about: dict[tuple[str, int], str] = {}
        for e in self.ordered:
            if e["type"] != EventType.STATUS_EMITTED or e.get("actor") != DOCBROKER:
                continue
            if "about" in details(e):
                continue
            prev = links.get((e["chain"], e["seq"] - 1))
            if (
                prev is not None
                and prev["type"] == EventType.RECIPIENT_REFUSED
                and prev["message_id"] in self.submitted
                and e["message_id"].startswith(f"{prev['message_id']}.")
            ):
                about[(e["chain"], e["seq"])] = prev["recipient"]
        return about

    def _progress(self, e: Body, refused_before: Mapping[tuple[str, int], str]) -> None:
        """Apply one event to the recipient it is about, if any."""
        kind = e["type"]
        if kind in _MARKS and e["message_id"] in self.submitted:
            r = self.recipients.find(e.get("recipient"))
            if r is not None:
                name = _MARKS[kind]
                r.update(**{name: _first(getattr(r.state, name), e["at_ms"])})
        elif kind == EventType.ACCEPTED:
            self._recipients_status(e)
        elif kind == EventType.STATUS_EMITTED:
            self._docbrokers_status(e, refused_before)

    def _recipients_status(self, e: Body) -> None:
        """A status package a recipient sent about the document. The sender's own
        statuses (a recall) are about no recipient."""
        code = details(e).get("status_code")
        if details(e).get("kind") != "status" or not code or e["sender"] == self.sender:
            return
        r = self.recipients.find(e["sender"])
        if r is not None:
            description = details(e).get("status_description") or None
            r.saw(StatusSeen(str(code), e["at_ms"], e["sender"], description))

    def _docbrokers_status(self, e: Body, refused_before: Mapping[tuple[str, int], str]) -> None:
        """A status docbroker made: a 01 for the recipient that acknowledged (the actor),
        or a 02 for a recipient it refused (`about`, the code the document named it by;
        by chain order for events written without it)."""
        actor = str(e.get("actor"))
        d = details(e)
        if self._on_behalf_of_recipient(e):
            r = self.recipients.find(actor)
        elif "about" in d:
            about = d["about"] if self._made_for_submission(e) else None
            r = self.recipients.find(about if isinstance(about, str) else None)
        else:
            r = self.recipients.find(refused_before.get((e["chain"], e["seq"])))
        if r is not None:
            description = d.get("description") or None
            r.saw(StatusSeen(str(d.get("status_code")), e["at_ms"], actor, description))


def details(e: Body | None) -> Mapping[str, Any]:
    details = (e or {}).get("details")
    return details if isinstance(details, dict) else {}


def _submits(e: Body) -> bool:
    """A submission of the document: accepted, or refused as a whole."""
    return is_document_accepted(e) or e["type"] == EventType.REFUSED


def _refusal(e: Body) -> Refusal:
    d = details(e)
    problems = tuple(d.get("problems") or ())
    return Refusal(e["message_id"], str(d.get("stage", "")), problems, e["at_ms"])


def _first(seen: int | None, at_ms: int) -> int:
    return at_ms if seen is None else seen
