"""The status packages the pipeline makes (01 on acknowledgement, 02 on refusals),
and the refusal of a record: the base every processing step builds on. Pure."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from broker.core.events import Event, EventType
from broker.core.logrecords import NewRecord, Record
from broker.core.problems import Problem
from broker.core.receipts import Receipt
from broker.core.records import H, make_headers
from broker.core.topics import Topics
from broker.directory.model import Agency
from broker.directory.routing import Decision, Route
from broker.edxml.builder import build_status, build_status_for
from broker.edxml.model import Envelope, Kind, Organization, ResponseFor, StatusCode
from broker.edxml.validator import EnvelopeValidator, Verdict
from broker.pipeline.batch import BatchContext, Ids, Outcome, ids_of, parse_date, status_message_id
from broker.pipeline.intake import AUTHENTICATED
from broker.trust.context import TrustContext
from broker.trust.policy import SenderPolicy


@dataclass(frozen=True)
class StatusMaker:
    """The processor's configuration, and what every step uses: the status packages
    docbroker makes, and the refusal of a record (its dead letter, event and 02)."""

    topics: Topics
    validator: EnvelopeValidator
    trust: TrustContext
    default_policy: SenderPolicy = field(default_factory=SenderPolicy)
    bind_by_subject_uid: bool = True
    dedup_window_ms: int = 30 * 86400 * 1000
    broker_name: str = "Trục liên thông văn bản"
    strict_default: bool = False  # for senders whose directory record does not say
    max_record_bytes: int | None = None  # the largest record the log takes (None: any)

    def for_sender(self, verdict: Verdict, sender: Agency | None) -> Verdict:
        """The verdict under the sender's policy: a strict sender's warnings refuse."""
        strict = self.strict_default if sender is None or sender.strict is None else sender.strict
        return verdict.strict() if strict else verdict

    @property
    def broker_org(self) -> Organization:
        return Organization(self.trust.organ_id, self.broker_name)

    def _status_to_sender(
        self,
        env: Envelope,
        sender: Agency,
        code: StatusCode,
        reason: str,
        ids: Ids,
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
        ids: Ids,
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
        status_ids = Ids(message_id, ids.trace_id, ctx.now_ms, sha)
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
        ids = ids_of(record)
        sender_id = env.sender_id if env else record.header_str(H.SENDER)
        document_id = env.subject_document_id if env else record.header_str(H.DOCUMENT_ID)
        rejected = rejected_record(
            self.topics.rejected, record, problems, ids, sender_id, document_id, stage, ctx.now_ms
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
                    "caller": record.header_str(AUTHENTICATED) or None,
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
            promulgation_date=parse_date(receipt.promulgation_date),
        )
        data = build_status_for(
            answered, code, sender=by, description=description, timestamp=ctx.stamp
        )
        ids = Ids(receipt.message_id, receipt.trace_id, receipt.at_ms, receipt.sha256)
        return self._emit_status(
            data, receipt.sender, to, receipt.document_id, code, ids, ctx, actor, about
        )

    def _delivery(
        self,
        topic: str,
        forwarded: bytes,
        sha: str,
        agency: str,
        requested: str,
        env: Envelope,
        ids: Ids,
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

    def _upstream(
        self,
        forwarded: bytes,
        sha: str,
        decisions: Sequence[Decision],
        env: Envelope,
        ids: Ids,
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


def rejected_record(
    topic: str,
    record: Record,
    problems: Sequence[Problem],
    ids: Ids,
    sender_id: str,
    document_id: str,
    stage: str,
    at_ms: int,
) -> NewRecord:
    """The dead letter of a refused record: its bytes, its problems and the caller the
    adapter authenticated (what a replay checks it against again)."""
    return NewRecord(
        topic=topic,
        key=(sender_id or ids.message_id).encode(),
        value=record.value or b"",
        headers=make_headers(
            {
                H.MESSAGE_ID: ids.message_id,
                H.DOCUMENT_ID: document_id or None,
                H.SENDER: sender_id or None,
                H.TRACE_ID: ids.trace_id,
                H.RECEIVED_AT: ids.received_at,
                H.PRODUCED_AT: at_ms,
                H.SHA256: ids.sha256,
                H.STAGE: stage,
                H.SOURCE: record.header_str(H.SOURCE) or None,
                AUTHENTICATED: record.header_str(AUTHENTICATED) or None,  # who sent it
                H.PROBLEMS: json.dumps([p.to_dict() for p in problems], ensure_ascii=False),
            }
        ),
    )
