"""The door every adapter takes envelopes in through: check, record, answer.

`take_in` validates the bytes (so the caller gets the problem codes and the
warnings at once; a strict sender's warnings refuse), checks that an
authenticated caller sends only as itself, answers a resent new
document with the message id it was first taken in under (idempotence on
(sender, DocumentId) within the dedup window), and appends the submission to
`inbound`, or the refusal with its problems (the pipeline records it in the
audit trail). It returns once the append is durable.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

import structlog
from structlog.contextvars import bound_contextvars

from broker.clock import now_ms
from broker.core.errors import DocbrokerError, InputRefused
from broker.core.problems import Irregularity, Problem
from broker.core.records import new_message_id, trace_id_from
from broker.directory.model import Agency
from broker.edxml.model import BusinessKind, Envelope, Kind
from broker.pipeline.intake import Submission, door_refusal_record, inbound_record
from broker.runtime import Runtime

log = structlog.get_logger(__name__)


@dataclass(frozen=True, slots=True)
class Taken:
    """What became of a submission: taken in, a resend of one, or refused."""

    message_id: str  # of this submission, or of the first one for a resend
    submission: Submission
    envelope: Envelope | None = None
    duplicate: bool = False
    problems: tuple[Problem, ...] = ()
    warnings: tuple[Irregularity, ...] = ()  # of an accepted package (or a resend)

    @property
    def refused(self) -> bool:
        return bool(self.problems)


def sender_problem(
    caller: Agency, env: Envelope, acts_for: Sequence[Agency] = ()
) -> Problem | None:
    """An agency sends only as itself (or, for an SDK system, as an agency it acts
    for): From/OrganId must be one of their codes."""
    if acting_agency(caller, env, acts_for) is not None:
        return None
    return Problem(
        "sender-mismatch", f"From/OrganId is {env.sender_id} but the caller is {caller.code}"
    )


def acting_agency(caller: Agency, env: Envelope, acts_for: Sequence[Agency] = ()) -> Agency | None:
    """The agency the caller sends this envelope as: itself or one it acts for."""
    return next((a for a in (caller, *acts_for) if env.sender_id in a.codes()), None)


async def take_in(
    runtime: Runtime,
    data: bytes,
    *,
    source: str,
    caller: Agency | None,
    traceparent: str | None = None,
    also: Callable[[Envelope], list[Problem]] | None = None,
    axis_doc_id: str | None = None,
    acts_for: Sequence[Agency] = (),
) -> Taken:
    """Take one envelope in from `caller` (None: a trusted adapter, e.g. the national
    axis, which names its own id for the package in `axis_doc_id`); `also` adds an
    adapter's own checks (e.g. the SDK's message type); `acts_for`, the agencies the
    caller may send as besides itself (an SDK system's registered sub-agencies)."""
    received = now_ms()
    sub = Submission(
        data,
        new_message_id(received),
        trace_id_from(traceparent),
        received,
        source,
        authenticated=caller.code if caller else None,
        axis_doc_id=axis_doc_id,
    )
    with bound_contextvars(message_id=sub.message_id, trace_id=sub.trace_id):
        verdict = await asyncio.to_thread(runtime.processor.validator.validate, data)
        try:
            env = verdict.envelope_or_raise()
        except InputRefused as exc:
            return await _refused(runtime, sub, exc.problems)
        problems = [p for p in [sender_problem(caller, env, acts_for) if caller else None] if p]
        problems += also(env) if also else []
        if caller is not None and not problems:
            caller = acting_agency(caller, env, acts_for) or caller
            sub = replace(sub, authenticated=caller.code)
        sender = caller or runtime.directory.current.find(env.sender_id)
        problems += runtime.processor.for_sender(verdict, sender).problems
        if problems:
            return await _refused(runtime, sub, problems, env)
        first = _already_taken(runtime, env, sender, received)
        if first is not None:
            log.info("resent document", document_id=env.document_id, original=first)
            return Taken(first, sub, env, duplicate=True, warnings=verdict.warnings)
        started = time.monotonic()
        await runtime.log.append([inbound_record(sub, env, runtime.topics)])
        runtime.metrics.envelope_accepted(len(data), time.monotonic() - started)
        log.info(
            "envelope accepted",
            document_id=env.subject_document_id,
            sender=env.sender_id,
            recipients=list(env.recipient_ids),
            size=len(data),
            source=source,
            warnings=[w.code for w in verdict.warnings],
        )
        return Taken(sub.message_id, sub, env, warnings=verdict.warnings)


def _already_taken(runtime: Runtime, env: Envelope, sender: Agency | None, now: int) -> str | None:
    """The message id this sender's new document was taken in under within the dedup
    window, if it was: a resend is answered, not taken twice."""
    if env.kind is not Kind.DOCUMENT or env.business_kind is not BusinessKind.NEW:
        return None
    if sender is None:
        return None
    key = (sender.code, env.document_id)
    first = runtime.dedup.lookup(*key)
    if first is None or now - first >= runtime.dedup.window_ms:
        return None
    return runtime.dedup.message_ids.get(key) or None


async def _refused(
    runtime: Runtime, sub: Submission, problems: Sequence[Problem], env: Envelope | None = None
) -> Taken:
    """Keep the refused bytes and the reason: the sender may ask what happened."""
    for p in problems:
        runtime.metrics.envelope_refused("accept", p.code)
    try:
        await runtime.log.append([door_refusal_record(sub, problems, runtime.topics)])
    except DocbrokerError as err:  # the refusal still stands; the trail has a gap
        log.error("could not record a refusal", error=str(err), codes=[p.code for p in problems])
    log.info("envelope refused", codes=[p.code for p in problems])
    return Taken(sub.message_id, sub, env, problems=tuple(problems))
