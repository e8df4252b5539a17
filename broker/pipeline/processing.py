"""What the pipeline does with one record, as a function of the record and a snapshot.

A submission (topic `inbound`):
  check -> edXML validation; the sender is a known, active agency and, when an
           adapter authenticated the caller, that agency; a strict sender's
           warnings refuse (others are recorded); the sender's signature
           per its policy (acting on the signed part when one verifies); a new
           document not already received from that sender within the window;
  route -> each recipient: a local mailbox, upstream (the national axis), or
           refused with a status 02 back to the sender;
  stamp and sign -> this hop's TraceHeader and the broker's signature;
  record -> audit events (chained by the pipeline shell).
A receipt (topic `receipts`): the recipient fetched or acknowledged; on the
acknowledgement of a document, the status 01 (đã đến) goes to its sender.

A refusal is a value (a `rejected` record and an event), never an exception: a
poison record never blocks its partition.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime
from typing import Any

import structlog

from broker.core.errors import InputRefused
from broker.core.events import Event, EventType
from broker.core.logrecords import NewRecord, Record
from broker.core.problems import Irregularity, Problem
from broker.core.receipts import Receipt, ReceiptKind
from broker.core.records import H, make_headers, received_at_ms
from broker.core.topics import Topics
from broker.directory.book import Directory
from broker.directory.model import Agency
from broker.directory.routing import Decision, Route, route_envelope
from broker.edxml.builder import build_status, build_status_for, vietnam_time
from broker.edxml.model import BusinessKind, Envelope, Kind, Organization, ResponseFor, StatusCode
from broker.edxml.validator import EnvelopeValidator, Verdict
from broker.pipeline.intake import AUTHENTICATED, AXIS_DEDUP_SENDER, SOURCE_AXIS, STAGE_ACCEPT
from broker.trust.context import TrustContext
from broker.trust.policy import PolicyBook, SenderPolicy
from broker.trust.sender import SenderCheck, check_sender

log = structlog.get_logger(__name__)

DedupLookup = Callable[[str, str], int | None]  # (sender code, document id) -> first seen ms

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
class _Passed:
    """A submission the checks let through: its view, its sender, the sender's
    signature verdict and the package's warnings."""

    env: Envelope
    sender: Agency
    check: SenderCheck
    warnings: tuple[Irregularity, ...]


@dataclass(frozen=True)
class _Ids:
    message_id: str
    trace_id: str
    received_at: int
    sha256: str


@dataclass(frozen=True)
class InboundProcessor:
    """Built once at start; `process_batch` is a function of records and a context."""

    topics: Topics
    validator: EnvelopeValidator
    trust: TrustContext
    default_policy: SenderPolicy = field(default_factory=SenderPolicy)
    bind_by_subject_uid: bool = True
    dedup_window_ms: int = 30 * 86400 * 1000
    broker_name: str = "Trục liên thông văn bản"
    strict_default: bool = False  # for senders whose directory record does not say

    def for_sender(self, verdict: Verdict, sender: Agency | None) -> Verdict:
        """The verdict under the sender's policy: a strict sender's warnings refuse."""
        strict = self.strict_default if sender is None or sender.strict is None else sender.strict
        return verdict.strict() if strict else verdict

    @property
    def broker_org(self) -> Organization:
        return Organization(self.trust.organ_id, self.broker_name)

    # -- entry points

    def process_batch(self, records: Sequence[Record], ctx: BatchContext) -> list[Outcome]:
        """In order; a document repeated inside the batch is caught too."""
        fresh: dict[tuple[str, str], int] = {}

        def seen(sender: str, document_id: str) -> int | None:
            return fresh.get((sender, document_id)) or ctx.seen(sender, document_id)

        batch_ctx = BatchContext(ctx.directory, seen, ctx.now_ms)
        out = []
        for record in records:
            outcome = self.process(record, batch_ctx)
            for key in outcome.dedup:
                fresh[key] = ctx.now_ms
            out.append(outcome)
        return out

    def process(self, record: Record, ctx: BatchContext) -> Outcome:
        try:
            if record.topic == self.topics.receipts:
                return self._receipt(record, ctx)
            return self._submission(record, ctx)
        except Exception as exc:  # a bug must not wedge the partition
            log.exception(
                "pipeline step failed",
                topic=record.topic,
                offset=record.offset,
                partition=record.partition,
            )
            problem = Problem("internal-error", f"{exc.__class__.__name__}: {exc}")
            return self.refuse(record, [problem], ctx, outcome="failed")

    # -- submissions

    def _submission(self, record: Record, ctx: BatchContext) -> Outcome:
        """A package from the national axis is taken once per axis docId, whatever its
        fate: the receiver may append it again after a crash before it confirmed."""
        axis_doc = record.header_str(H.AXIS_DOC_ID)
        if not axis_doc or record.header_str(H.SOURCE) != SOURCE_AXIS:
            return self._checked(record, ctx)
        if ctx.seen(AXIS_DEDUP_SENDER, axis_doc) is not None:
            return Outcome("duplicate")
        outcome = self._checked(record, ctx)
        return _with(outcome, dedup=(*outcome.dedup, (AXIS_DEDUP_SENDER, axis_doc)))

    def _checked(self, record: Record, ctx: BatchContext) -> Outcome:
        data = record.value or b""
        if record.header_str(H.STAGE) == STAGE_ACCEPT:  # refused at the door: record it
            problems = [
                Problem.from_dict(p) for p in json.loads(record.header_str(H.PROBLEMS) or "[]")
            ]
            return self.refuse(
                record, problems or [Problem("internal-error", "no problems")], ctx, stage="accept"
            )
        validated = self.validator.validate(data)
        try:
            env = validated.envelope_or_raise()
        except InputRefused as exc:
            return self.refuse(record, exc.problems, ctx)
        sender = ctx.directory.find(env.sender_id)
        if sender is None:
            return self.refuse(
                record,
                [Problem("unknown-sender", f"{env.sender_id} is not in the agency directory")],
                ctx,
                env,
            )
        if not sender.active:
            return self.refuse(
                record,
                [Problem("sender-suspended", f"{sender.code} ({sender.name}) is suspended")],
                ctx,
                env,
            )
        if record.header_str(H.SOURCE) == SOURCE_AXIS and sender.local:
            problem = Problem(
                "sender-mismatch",
                f"the national axis brought a package from {env.sender_id}, "
                "an agency of this province",
            )
            return self.refuse(record, [problem], ctx, env)
        authenticated = record.header_str(AUTHENTICATED)
        if authenticated and authenticated not in sender.codes():
            return self.refuse(
                record,
                [
                    Problem(
                        "sender-mismatch",
                        f"From/OrganId is {env.sender_id} but the caller is {authenticated}",
                    )
                ],
                ctx,
                env,
            )
        judged = self.for_sender(validated, sender)
        if not judged.ok:
            return self.refuse(record, judged.problems, ctx, env, sender)
        check = self._signature(data, env, sender, ctx)
        verdict = (check.outcome, check.policy)
        if check.problems:
            refused = self.refuse(
                record,
                check.problems,
                ctx,
                env,
                sender,
                details={"sender_signature": check.audit()},
            )
            return _with(refused, signature=verdict)
        if check.signed_data is not None:
            env = self.validator.check(check.signed_data)  # act on what the signature covers
        dedup: tuple[tuple[str, str], ...] = ()
        if env.kind is Kind.DOCUMENT and env.business_kind is BusinessKind.NEW:
            key = (sender.code, env.document_id)
            first = ctx.seen(*key)
            if first is not None and ctx.now_ms - first < self.dedup_window_ms:
                problem = Problem(
                    "duplicate-document",
                    f"{env.sender_id} already sent "
                    f"{env.document_id} (first received {_iso(first)})",
                )
                return _with(self.refuse(record, [problem], ctx, env, sender), signature=verdict)
            dedup = (key,)
        passed = _Passed(env, sender, check, validated.warnings)
        if record.header_str(H.SOURCE) == SOURCE_AXIS:
            return _with(self._route_down(record, passed, ctx), dedup=dedup)
        return _with(self._route(record, passed, ctx), signature=verdict, dedup=dedup)

    def _signature(
        self, data: bytes, env: Envelope, sender: Agency, ctx: BatchContext
    ) -> SenderCheck:
        policy = SenderPolicy(
            mode=sender.signature_policy or self.default_policy.mode,  # type: ignore[arg-type]
            allow_sha1=sender.allow_sha1 or self.default_policy.allow_sha1,
            certificates=frozenset(sender.certificates),
        )
        book = PolicyBook(
            self.default_policy,
            {env.sender_id: policy},
            self.bind_by_subject_uid,
            aliases={env.sender_id: sender.codes()},
        )
        return check_sender(data, env, self.trust.verifier, book, at=ctx.at)

    def _route(
        self,
        record: Record,
        passed: _Passed,
        ctx: BatchContext,
        decisions: Sequence[Decision] | None = None,
    ) -> Outcome:
        """Accepted: the audit event (with the sender's signature verdict and the
        package's warnings), then each recipient's route (`decisions`, or all)."""
        env, sender, check, warnings = passed.env, passed.sender, passed.check, passed.warnings
        if decisions is None:
            decisions = route_envelope(env, ctx.directory)
        data = record.value or b""
        ids = _ids(record)
        forwarded = self.trust.signer.stamp_and_sign(data, self.trust.organ_id, ctx.stamp)
        forwarded_sha = hashlib.sha256(forwarded).hexdigest()
        document_id = env.subject_document_id
        common = {
            "message_id": ids.message_id,
            "document_id": document_id,
            "sender": env.sender_id,
            "trace_id": ids.trace_id,
        }
        events = [
            Event(
                EventType.ACCEPTED,
                ctx.now_ms,
                actor=sender.code,
                sha256=ids.sha256,
                details={
                    "kind": str(env.kind),
                    "business": env.business_kind.name.lower(),
                    "status_code": env.status_code.value if env.status_code else None,
                    "status_description": env.status_description
                    if env.kind is Kind.STATUS
                    else None,
                    "targets": list(env.business.targets) if env.business else [],
                    "recipients": list(env.recipient_ids),
                    "size": len(data),
                    "subject": env.subject,
                    "code": str(env.code) if env.code else "",
                    "received_at_ms": ids.received_at,
                    "sender_signature": check.audit(),
                    "warnings": [w.to_dict() for w in warnings],
                },
                **common,
            )
        ]
        records: list[NewRecord] = []
        upstream: list[Decision] = []
        deliveries = 0
        for decision in decisions:
            if decision.route is Route.REFUSED:
                events.append(
                    Event(
                        EventType.RECIPIENT_REFUSED,
                        ctx.now_ms,
                        recipient=decision.requested,
                        actor="docbroker",
                        details={"code": decision.code, "reason": decision.reason},
                        **common,
                    )
                )
                if env.kind is Kind.DOCUMENT:
                    recs, evs = self._status_to_sender(
                        env,
                        sender,
                        StatusCode.REFUSED,
                        decision.reason,
                        ids,
                        ctx,
                        about=decision.requested,
                    )
                    records += recs
                    events += evs
                continue
            if decision.route is Route.MAILBOX:
                records.append(
                    self._delivery(
                        self.topics.mailbox,
                        forwarded,
                        forwarded_sha,
                        decision.agency,
                        decision.requested,
                        env,
                        ids,
                        ctx.now_ms,
                    )
                )
                deliveries += 1
            else:
                upstream.append(decision)
            events.append(
                Event(
                    EventType.ROUTED,
                    ctx.now_ms,
                    recipient=decision.agency,
                    actor="docbroker",
                    sha256=forwarded_sha,
                    details={"to": str(decision.route), "requested": decision.requested},
                    **common,
                )
            )
        if upstream:
            records.append(self._upstream(forwarded, forwarded_sha, upstream, env, ids, ctx.now_ms))
        codes = tuple(dict.fromkeys(w.code for w in warnings))
        return Outcome("routed", tuple(records), tuple(events), deliveries, warnings=codes)

    def _route_down(self, record: Record, passed: _Passed, ctx: BatchContext) -> Outcome:
        """A package the national axis brought down is for this province's agencies among
        its recipients; the others are served by their own provinces, so they are neither
        sent back up nor refused. None of ours: refused, and the sender hears."""
        env = passed.env
        decisions = route_envelope(env, ctx.directory)
        ours = [d for d in decisions if d.route is Route.MAILBOX or d.code == "recipient-suspended"]
        if not ours:
            problem = Problem(
                "unknown-recipient",
                f"none of {', '.join(env.recipient_ids)} is an agency of this province",
            )
            return self.refuse(record, [problem], ctx, env, passed.sender)
        return self._route(record, passed, ctx, ours)

    def _upstream(
        self,
        forwarded: bytes,
        sha: str,
        decisions: Sequence[Decision],
        env: Envelope,
        ids: _Ids,
        at: int,
    ) -> NewRecord:
        """One record for the national axis with every external recipient (one sendEdoc
        with a `to` list, so that a province receiving several of them takes it once),
        keyed by sender: one sender's packages go up in order."""
        first = decisions[0]
        record = self._delivery(
            self.topics.upstream, forwarded, sha, first.agency, first.requested, env, ids, at
        )
        to = make_headers(
            {
                H.UPSTREAM_TO: json.dumps([d.agency for d in decisions]),
                H.UPSTREAM_REQUESTED: json.dumps([d.requested for d in decisions]),
            }
        )
        return replace(record, key=env.sender_id.encode(), headers=record.headers + to)

    def _delivery(
        self,
        topic: str,
        forwarded: bytes,
        sha: str,
        agency: str,
        requested: str,
        env: Envelope,
        ids: _Ids,
        at: int,
    ) -> NewRecord:
        promulgation = env.promulgation.date if env.promulgation else None
        return NewRecord(
            topic=topic,
            key=agency.encode(),
            value=forwarded,
            headers=make_headers(
                {
                    H.MESSAGE_ID: ids.message_id,
                    H.DOCUMENT_ID: env.subject_document_id,
                    H.SENDER: env.sender_id,
                    H.RECIPIENT: agency,
                    "requested-as": requested,
                    H.TRACE_ID: ids.trace_id,
                    H.RECEIVED_AT: ids.received_at,
                    H.PRODUCED_AT: at,
                    H.KIND: str(env.kind),
                    H.SHA256: sha,
                    "code": str(env.code) if env.code else None,
                    "promulgation-date": promulgation.strftime("%Y/%m/%d")
                    if promulgation
                    else None,
                    "status-code": env.status_code.value if env.status_code else None,
                }
            ),
        )

    def _status_to_sender(
        self,
        env: Envelope,
        sender: Agency,
        code: StatusCode,
        reason: str,
        ids: _Ids,
        ctx: BatchContext,
        about: str | None = None,
    ) -> tuple[list[NewRecord], list[Event]]:
        """A status from the broker to the document's sender (02 on refusals); `about`
        is the refused recipient as the document named it, None for the whole submission."""
        data = build_status(
            env, code, sender=self.broker_org, description=reason, timestamp=ctx.stamp
        )
        return self._emit_status(
            data,
            env.sender_id,
            sender,
            env.document_id,
            code,
            ids,
            ctx,
            actor="docbroker",
            about=about,
        )

    def _emit_status(
        self,
        data: bytes,
        requested: str,
        to: Agency,
        document_id: str,
        code: StatusCode,
        ids: _Ids,
        ctx: BatchContext,
        actor: str,
        about: str | None = None,
    ) -> tuple[list[NewRecord], list[Event]]:
        """The status record and its event. `about` (a refused recipient) goes into the
        message id, so that the sender's mailbox keeps one 02 per refused recipient,
        and into the event, which otherwise names only the sender it goes to."""
        status_env = self.validator.check(data)
        signed = self.trust.signer.stamp_and_sign(data, self.trust.organ_id, ctx.stamp)
        sha = hashlib.sha256(signed).hexdigest()
        topic = self.topics.mailbox if to.local else self.topics.upstream
        message_id = status_message_id(ids.message_id, code, to.code, about)
        status_ids = _Ids(message_id, ids.trace_id, ctx.now_ms, sha)
        if to.local:
            record = self._delivery(
                topic, signed, sha, to.code, requested, status_env, status_ids, ctx.now_ms
            )
        else:
            decision = Decision(requested, Route.UPSTREAM, to.code)
            record = self._upstream(signed, sha, [decision], status_env, status_ids, ctx.now_ms)
        event = Event(
            EventType.STATUS_EMITTED,
            ctx.now_ms,
            status_ids.message_id,
            document_id,
            status_env.sender_id,
            ids.trace_id,
            recipient=to.code,
            actor=actor,
            sha256=sha,
            details={
                "status_code": code.value,
                "to": topic.rsplit(".", 1)[-1],
                "description": status_env.status_description,
                **({"about": about} if about is not None else {}),
            },
        )
        return [record], [event]

    # -- refusals

    def refuse(
        self,
        record: Record,
        problems: Sequence[Problem],
        ctx: BatchContext,
        env: Envelope | None = None,
        sender: Agency | None = None,
        *,
        outcome: str = "rejected",
        stage: str = "pipeline",
        details: dict[str, Any] | None = None,
    ) -> Outcome:
        """Dead-letter the record with its problems, an event, and a status 02 to the
        sender where the sender is known."""
        ids = _ids(record)
        sender_id = env.sender_id if env else record.header_str(H.SENDER)
        document_id = env.subject_document_id if env else record.header_str(H.DOCUMENT_ID)
        rejected = NewRecord(
            topic=self.topics.rejected,
            key=(sender_id or ids.message_id).encode(),
            value=record.value or b"",
            headers=make_headers(
                {
                    H.MESSAGE_ID: ids.message_id,
                    H.DOCUMENT_ID: document_id or None,
                    H.SENDER: sender_id or None,
                    H.TRACE_ID: ids.trace_id,
                    H.RECEIVED_AT: ids.received_at,
                    H.PRODUCED_AT: ctx.now_ms,
                    H.SHA256: ids.sha256,
                    H.STAGE: stage,
                    H.SOURCE: record.header_str(H.SOURCE) or None,
                    H.PROBLEMS: json.dumps([p.to_dict() for p in problems], ensure_ascii=False),
                }
            ),
        )
        events = [
            Event(
                EventType.REFUSED,
                ctx.now_ms,
                ids.message_id,
                document_id,
                sender_id,
                ids.trace_id,
                actor="docbroker",
                sha256=ids.sha256,
                details={
                    "stage": stage,
                    "problems": [p.to_dict() for p in problems],
                    **(details or {}),
                },
            )
        ]
        records = [rejected]
        if env is not None and sender is not None and sender.active and env.kind is Kind.DOCUMENT:
            reason = "; ".join(f"{p.code}: {p.message}" for p in problems)
            recs, evs = self._status_to_sender(env, sender, StatusCode.REFUSED, reason, ids, ctx)
            records += recs
            events += evs
        return Outcome(
            outcome, tuple(records), tuple(events), codes=tuple(p.code for p in problems)
        )

    # -- receipts

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

    def _status_for_receipt(
        self,
        receipt: Receipt,
        to: Agency,
        code: StatusCode,
        by: Organization,
        ctx: BatchContext,
        *,
        actor: str,
        description: str = "",
        about: str | None = None,
    ) -> tuple[list[NewRecord], list[Event]]:
        """A status from `by` about the document a receipt concerns, to its sender."""
        answered = ResponseFor(
            organ_id=receipt.sender,
            document_id=receipt.document_id,
            code=receipt.code,
            promulgation_date=_date(receipt.promulgation_date),
        )
        data = build_status_for(
            answered, code, sender=by, description=description, timestamp=ctx.stamp
        )
        ids = _Ids(receipt.message_id, receipt.trace_id, receipt.at_ms, receipt.sha256)
        return self._emit_status(
            data, receipt.sender, to, receipt.document_id, code, ids, ctx, actor, about
        )

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


def _ids(record: Record) -> _Ids:
    return _Ids(
        record.header_str(H.MESSAGE_ID),
        record.header_str(H.TRACE_ID),
        received_at_ms(record),
        record.header_str(H.SHA256) or hashlib.sha256(record.value or b"").hexdigest(),
    )


def _with(outcome: Outcome, **changes: Any) -> Outcome:
    return replace(outcome, **changes)


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="seconds")


def _date(raw: str) -> date | None:
    try:
        y, m, d = (int(x) for x in raw.split("/"))
        return date(y, m, d)
    except ValueError:
        return None
