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
from collections.abc import Sequence

import structlog

from broker.core.errors import InputRefused
from broker.core.events import Event, EventType
from broker.core.logrecords import NewRecord, Record
from broker.core.problems import Problem
from broker.core.records import IDEMPOTENCY_PREFIX, FirstSeen, H, idempotency_key
from broker.directory.book import Directory
from broker.directory.model import Agency
from broker.directory.routing import Decision, Route, route_envelope
from broker.edxml.model import BusinessKind, Envelope, Kind, StatusCode
from broker.pipeline.batch import (
    BatchContext,
    Hop,
    Outcome,
    Passed,
    accepted_event,
    event_fields,
    first_seen,
    ids_of,
    iso_seconds,
    routed_event,
    with_changes,
)
from broker.pipeline.intake import (
    AUTHENTICATED,
    AXIS_DEDUP_SENDER,
    IDEMPOTENCY_KEY,
    SOURCE_AXIS,
    STAGE_ACCEPT,
)
from broker.pipeline.receipts import ReceiptSteps
from broker.pipeline.replays import is_replay, replay_dedup_key, replayed
from broker.trust.policy import PolicyBook, SenderPolicy
from broker.trust.sender import SenderCheck, check_sender

log = structlog.get_logger(__name__)


class InboundProcessor(ReceiptSteps):
    """Built once at start; `process_batch` is a function of records and a context."""

    # -- entry points

    def process_batch(self, records: Sequence[Record], ctx: BatchContext) -> list[Outcome]:
        """In order; a document repeated inside the batch is caught too."""
        fresh: dict[tuple[str, str], FirstSeen] = {}

        def seen(sender: str, document_id: str) -> FirstSeen | None:
            return fresh.get((sender, document_id)) or ctx.seen(sender, document_id)

        batch_ctx = BatchContext(ctx.directory, seen, ctx.now_ms)
        out = []
        for record in records:
            outcome = self.process(record, batch_ctx)
            first = first_seen(record, ctx.now_ms)
            for key in outcome.dedup:
                fresh.setdefault(key, first)
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

    def _submission(self, record: Record, ctx: BatchContext) -> Outcome:
        """A package from the national axis is taken once per axis docId, whatever its
        fate: the receiver may append it again after a crash before it confirmed."""
        if is_replay(record):  # a dead letter sent again, once (broker.pipeline.replays)
            return replayed(record, self.topics, ctx)
        axis_doc = record.header_str(H.AXIS_DOC_ID)
        if not axis_doc or record.header_str(H.SOURCE) != SOURCE_AXIS:
            return self._checked(record, ctx)
        if ctx.seen(AXIS_DEDUP_SENDER, axis_doc) is not None:
            return Outcome("duplicate")
        outcome = self._checked(record, ctx)
        return with_changes(outcome, dedup=(*outcome.dedup, (AXIS_DEDUP_SENDER, axis_doc)))

    def _checked(self, record: Record, ctx: BatchContext) -> Outcome:
        if record.header_str(H.STAGE) == STAGE_ACCEPT:  # refused at the door: record it
            problems = [
                Problem.from_dict(p) for p in json.loads(record.header_str(H.PROBLEMS) or "[]")
            ]
            refused = self.refuse(
                record, problems or [Problem("internal-error", "no problems")], ctx, stage="accept"
            )
            return with_changes(refused, codes=())  # the door counted it in the metrics
        validated = self.validator.validate(record.value or b"")
        try:
            env = validated.envelope_or_raise()
        except InputRefused as exc:
            return self.refuse(record, exc.problems, ctx)
        sender = ctx.directory.find(env.sender_id)
        problem = sender_problem(record, env, sender)
        if problem is not None or sender is None:
            return self.refuse(record, [problem] if problem else [], ctx, env)
        judged = self.for_sender(validated, sender)
        if not judged.ok:
            return self.refuse(record, judged.problems, ctx, env, sender)
        passed = Passed(env, sender, None, validated.warnings, validated.root)
        return self._signed_and_new(record, passed, ctx)

    def _signed_and_new(self, record: Record, passed: Passed, ctx: BatchContext) -> Outcome:
        """The sender's signature per its policy (acting on what it covers), then a new
        document not already received from that sender within the window, then routed."""
        env, sender = passed.env, passed.sender
        check = self._signature(record.value or b"", passed, ctx)
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
            return with_changes(refused, signature=verdict)
        if check.signed_data is not None:  # act on what the signature covers
            signed = check.result.signed_xml if check.result is not None else None
            if signed is not None:  # already parsed by the verifier
                env = self.validator.read_signed(signed)
            else:
                env = self.validator.check(check.signed_data)
        dedup = dedup_keys(record, env, sender)
        for key in dedup:
            again = self._already_received(record, env, sender, key, ctx)
            if again is not None:
                return with_changes(again, signature=verdict)
        passed = Passed(env, sender, check, passed.warnings, passed.root)
        if record.header_str(H.SOURCE) == SOURCE_AXIS:
            return with_changes(self._route_down(record, passed, ctx), dedup=dedup)
        routed = self._route(record, passed, ctx)
        if routed.outcome != "routed":  # too large to forward: not received, may be resent
            return with_changes(routed, signature=verdict)
        return with_changes(routed, signature=verdict, dedup=dedup)

    def _already_received(
        self,
        record: Record,
        env: Envelope,
        sender: Agency,
        key: tuple[str, str],
        ctx: BatchContext,
    ) -> Outcome | None:
        """A new document its sender already sent within the window: the same bytes again
        (a resend the door could not recognise yet: another instance, a lost answer) are
        recorded as a duplicate and change nothing else, no 02 about a document that was
        delivered; other bytes under a used DocumentId are refused (truthfully, a 02).
        The first submission itself (claimed at the door) is not a duplicate of itself."""
        ids, first = ids_of(record), ctx.seen(*key)
        if first is None or first.message_id == ids.message_id:
            return None
        keyed = key[0].startswith(IDEMPOTENCY_PREFIX)
        if not keyed and ctx.now_ms - first.at_ms >= self.dedup_window_ms:
            return None
        if first.sha256 and first.sha256 == ids.sha256:
            event = Event(
                EventType.DUPLICATE,
                ctx.now_ms,
                actor="docbroker",
                sha256=ids.sha256,
                details={"first_message_id": first.message_id},
                **event_fields(env, ids),
            )
            return Outcome("duplicate", events=(event,))
        problem = Problem(
            "idempotency-key-reused" if keyed else "duplicate-document",
            f"{env.sender_id} already sent {'its Idempotency-Key' if keyed else env.document_id}"
            f" (first received {iso_seconds(first.at_ms)} as {first.message_id}), with "
            "other content",
        )
        return self.refuse(record, [problem], ctx, env, sender)

    def _signature(self, data: bytes, passed: Passed, ctx: BatchContext) -> SenderCheck:
        env, sender = passed.env, passed.sender
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
        return check_sender(data, env, self.trust.verifier, book, at=ctx.at, root=passed.root)

    def _route(
        self,
        record: Record,
        passed: Passed,
        ctx: BatchContext,
        decisions: Sequence[Decision] | None = None,
    ) -> Outcome:
        """Accepted: the audit event (with the sender's signature verdict and the
        package's warnings), then each recipient's route (`decisions`, or all)."""
        env = passed.env
        if decisions is None:
            decisions = route_envelope(env, ctx.directory)
            if decisions and all(d.route is Route.REFUSED for d in decisions):
                return self._no_recipient(record, passed, decisions, ctx)
        data = record.value or b""
        ids = ids_of(record)
        forwarded = self.trust.signer.stamp_and_sign(
            data, self.trust.organ_id, ctx.stamp, root=passed.root
        )
        hop = Hop(forwarded, hashlib.sha256(forwarded).hexdigest(), ids, event_fields(env, ids))
        events = [accepted_event(passed, ids, len(data), ctx.now_ms)]
        records: list[NewRecord] = []
        upstream: list[Decision] = []
        deliveries = 0
        for decision in decisions:
            if decision.route is Route.REFUSED:
                recs, evs = self._recipient_refused(passed, decision, hop, ctx)
                records += recs
                events += evs
                continue
            if decision.route is Route.MAILBOX:
                records.append(
                    self._delivery(
                        self.topics.mailbox,
                        forwarded,
                        hop.sha256,
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
            events.append(routed_event(decision, hop, ctx.now_ms))
        if upstream:
            records.append(self._upstream(forwarded, hop.sha256, upstream, env, ids, ctx.now_ms))
        if (too_large := self._oversized(records)) is not None:
            return self.refuse(record, [too_large], ctx, env, passed.sender)
        codes = tuple(dict.fromkeys(w.code for w in passed.warnings))
        return Outcome("routed", tuple(records), tuple(events), deliveries, warnings=codes)

    def _no_recipient(
        self, record: Record, passed: Passed, decisions: Sequence[Decision], ctx: BatchContext
    ) -> Outcome:
        """Not one recipient can be served (unknown, suspended, the sender itself): the
        submission is refused as a whole, a dead letter that can be replayed once the
        cause is fixed (e.g. the agency added to the directory); not taken in, so the
        sender may also send it again."""
        problems = [Problem(d.code or "unknown-recipient", d.reason) for d in decisions]
        return self.refuse(record, problems, ctx, passed.env, passed.sender)

    def _oversized(self, records: Sequence[NewRecord]) -> Problem | None:
        """Whether a record the submission turns into is more than the log takes (its
        text escaped, e.g. `>` written `&gt;`, a package that fits may not): refused
        here, a value like any refusal, rather than by the commit of its batch."""
        largest = max((r.size for r in records), default=0)
        if self.max_record_bytes is None or largest <= self.max_record_bytes:
            return None
        return Problem(
            "too-large",
            f"its stamped and signed copy takes {largest} bytes, "
            f"more than the {self.max_record_bytes} a record may hold",
        )

    def too_large(self, record: Record, ctx: BatchContext, detail: str) -> Outcome:
        """The refusal of a record whose outputs the log refused as too large: a dead
        letter, an event and, when its package names a known sender, a 02."""
        problem = Problem("too-large", f"its outputs exceed the record limit: {detail}")
        try:
            env: Envelope | None = self.validator.check(record.value or b"")
        except InputRefused:
            env = None
        sender = ctx.directory.find(env.sender_id) if env is not None else None
        return self.refuse(record, [problem], ctx, env, sender)

    def _recipient_refused(
        self, passed: Passed, decision: Decision, hop: Hop, ctx: BatchContext
    ) -> tuple[list[NewRecord], list[Event]]:
        """A recipient that cannot be served: its event, and a 02 about it to the sender."""
        event = Event(
            EventType.RECIPIENT_REFUSED,
            ctx.now_ms,
            recipient=decision.requested,
            actor="docbroker",
            details={"code": decision.code, "reason": decision.reason},
            **hop.common,
        )
        if passed.env.kind is not Kind.DOCUMENT:
            return [], [event]
        recs, evs = self._status_to_sender(
            passed.env,
            passed.sender,
            StatusCode.REFUSED,
            decision.reason,
            hop.ids,
            ctx,
            about=decision.requested,
        )
        return recs, [event, *evs]

    def _route_down(self, record: Record, passed: Passed, ctx: BatchContext) -> Outcome:
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


def sender_problem(record: Record, env: Envelope, sender: Agency | None) -> Problem | None:
    """Why the package's sender may not send it: unknown, suspended, one of ours coming
    down from the national axis, or not the agency the adapter authenticated."""
    if sender is None:
        return Problem("unknown-sender", f"{env.sender_id} is not in the agency directory")
    if not sender.active:
        return Problem("sender-suspended", f"{sender.code} ({sender.name}) is suspended")
    if record.header_str(H.SOURCE) == SOURCE_AXIS and sender.local:
        return Problem(
            "sender-mismatch",
            f"the national axis brought a package from {env.sender_id}, an agency of this province",
        )
    authenticated = record.header_str(AUTHENTICATED)
    if authenticated and authenticated not in sender.codes():
        return Problem(
            "sender-mismatch", f"From/OrganId is {env.sender_id} but the caller is {authenticated}"
        )
    return None


def dedup_keys(record: Record, env: Envelope, sender: Agency) -> tuple[tuple[str, str], ...]:
    """What a submission is first of, if nothing committed came before it: a new
    document's (sender, DocumentId), and the caller's Idempotency-Key."""
    keys = []
    if env.kind is Kind.DOCUMENT and env.business_kind is BusinessKind.NEW:
        keys.append((sender.code, env.document_id))
    idem, caller = record.header_str(IDEMPOTENCY_KEY), record.header_str(AUTHENTICATED)
    if idem and caller:
        keys.append(idempotency_key(caller, idem))
    return tuple(keys)


def lookup_keys(record: Record, directory: Directory) -> list[tuple[str, str]]:
    """The dedup keys processing `record` may ask about (for a worker process, which
    gets the answers with the batch): its sender's (sender, DocumentId), its axis docId,
    its caller's Idempotency-Key."""
    sender = directory.find(record.header_str(H.SENDER))
    keys = [(sender.code if sender else "", record.header_str(H.DOCUMENT_ID))]
    if is_replay(record):
        keys.append(replay_dedup_key(record))
    axis_doc = record.header_str(H.AXIS_DOC_ID)
    if axis_doc:
        keys.append((AXIS_DEDUP_SENDER, axis_doc))
    idem, caller = record.header_str(IDEMPOTENCY_KEY), record.header_str(AUTHENTICATED)
    if idem and caller:
        keys.append(idempotency_key(caller, idem))
    return keys
