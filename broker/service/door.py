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
from broker.core.errors import BackendUnavailable, DocbrokerError, InputRefused
from broker.core.problems import Irregularity, Problem
from broker.core.records import (
    IDEMPOTENCY_PREFIX,
    FirstSeen,
    idempotency_key,
    new_message_id,
    trace_id_from,
)
from broker.directory.model import Agency
from broker.edxml.model import BusinessKind, Envelope, Kind
from broker.offload import sha256_hex
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
    idempotency: tuple[str, str] | None = None,
    sha256: str | None = None,
) -> Taken:
    """Take one envelope in from `caller` (None: a trusted adapter, e.g. the national
    axis, which names its own id for the package in `axis_doc_id`); `also` adds an
    adapter's own checks (e.g. the SDK's message type); `acts_for`, the agencies the
    caller may send as besides itself (an SDK system's registered sub-agencies);
    `idempotency`, the caller and Idempotency-Key the request came with; `sha256`,
    the bytes' SHA-256 (hex) when the adapter already has it.

    A large body is hashed and validated in worker threads, off the event loop."""
    received = now_ms()
    sub = Submission(
        data,
        new_message_id(received),
        trace_id_from(traceparent),
        received,
        source,
        authenticated=caller.code if caller else None,
        axis_doc_id=axis_doc_id,
        sha256=sha256 or await sha256_hex(data),
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
        keys = _claims(env, sender, idempotency)
        if idempotency is not None:
            sub = replace(sub, idempotency_key=idempotency[1])
        again = await _resend(runtime, keys, sub, env, verdict.warnings)
        if again is not None and again.problems:
            return await _refused(runtime, sub, again.problems, env)
        if again is not None:
            return again
        started = time.monotonic()
        await _append(runtime, sub, env, keys)
        runtime.metrics.envelope_accepted(len(data), time.monotonic() - started)
        _log_accepted(env, sub, verdict.warnings)
        return Taken(sub.message_id, sub, env, warnings=verdict.warnings)


def _log_accepted(env: Envelope, sub: Submission, warnings: Sequence[Irregularity]) -> None:
    log.info(
        "envelope accepted",
        document_id=env.subject_document_id,
        sender=env.sender_id,
        recipients=list(env.recipient_ids),
        size=len(sub.data),
        source=sub.source,
        warnings=[w.code for w in warnings],
    )


def _claims(
    env: Envelope, sender: Agency | None, idempotency: tuple[str, str] | None
) -> list[tuple[str, str]]:
    """The dedup keys a submission claims: a new document's (sender, DocumentId), and
    the caller's Idempotency-Key."""
    keys = []
    if env.kind is Kind.DOCUMENT and env.business_kind is BusinessKind.NEW and sender:
        keys.append((sender.code, env.document_id))
    if idempotency is not None:
        keys.append(idempotency_key(*idempotency))
    return keys


async def _resend(
    runtime: Runtime,
    keys: Sequence[tuple[str, str]],
    sub: Submission,
    env: Envelope,
    warnings: Sequence[Irregularity],
) -> Taken | None:
    """The first submission this one repeats, if any: the same bytes again are answered
    with the first message id, whether it was taken in a moment ago (its append still
    on its way: waited for, up to http.append_timeout) or by any instance within the
    dedup window; other bytes under a used DocumentId or Idempotency-Key are refused."""
    dedup = runtime.dedup
    for key in keys:
        pending = dedup.pending.get(key)
        if pending is not None:
            await _settle_first(runtime, pending[1])
        first = dedup.lookup(*key)
        if first is None or first.message_id == sub.message_id:
            continue
        if sub.received_at_ms - first.at_ms >= dedup.window_ms:
            continue
        if first.sha256 and first.sha256 != sub.sha256:
            what = "Idempotency-Key" if key[0].startswith(IDEMPOTENCY_PREFIX) else "DocumentId"
            code = (
                "idempotency-key-reused"
                if key[0].startswith(IDEMPOTENCY_PREFIX)
                else "duplicate-document"
            )
            message = f"this {what} was already used, as {first.message_id}, for another package"
            return Taken(first.message_id, sub, env, problems=(Problem(code, message),))
        log.info("resent document", document_id=env.document_id, original=first.message_id)
        return Taken(first.message_id, sub, env, duplicate=True, warnings=tuple(warnings))
    return None


async def _settle_first(runtime: Runtime, task: asyncio.Future[object]) -> None:
    """Wait for the first submission's append (shielded: this request must not cancel
    it); still unsettled after http.append_timeout: 503, retry."""
    timeout = runtime.settings.http.append_timeout
    try:
        await asyncio.wait_for(asyncio.shield(task), timeout)
    except TimeoutError:
        raise BackendUnavailable(
            "the first submission of this document is still being written to the log; "
            "retry in a moment",
            retry_after=max(1, round(timeout)),
        ) from None
    except Exception:  # noqa: S110 - the first append failed: this one is taken in afresh
        pass


async def _append(
    runtime: Runtime, sub: Submission, env: Envelope, keys: Sequence[tuple[str, str]]
) -> None:
    """The submission and its claims, in one atomic append, waited for at most
    `http.append_timeout`: then 503, while the append goes on. Until it settles, a
    resend waits for it; once it did, the resend gets its id."""
    claim = FirstSeen(sub.received_at_ms, sub.message_id, sub.sha256, committed=False)
    records = [inbound_record(sub, env, runtime.topics)]
    records += [runtime.dedup.record(key, claim) for key in keys]
    task = asyncio.ensure_future(runtime.log.append(records))
    for key in keys:
        runtime.dedup.pending[key] = (claim, task)
    task.add_done_callback(lambda t: _settled(runtime, keys, claim, t))
    timeout = runtime.settings.http.append_timeout
    try:
        await asyncio.wait_for(asyncio.shield(task), timeout)
    except TimeoutError:
        raise BackendUnavailable(
            f"the log did not confirm the submission within {timeout:g} s; retry: a resend "
            "is answered with the message id of whichever attempt was taken in",
            retry_after=max(1, round(timeout)),
        ) from None


def _settled(
    runtime: Runtime,
    keys: Sequence[tuple[str, str]],
    claim: FirstSeen,
    task: asyncio.Future[object],
) -> None:
    dedup = runtime.dedup
    for key in keys:
        if key in dedup.pending and dedup.pending[key][1] is task:
            del dedup.pending[key]
    if not task.cancelled() and task.exception() is None:
        dedup.remember(keys, claim)


async def _refused(
    runtime: Runtime, sub: Submission, problems: Sequence[Problem], env: Envelope | None = None
) -> Taken:
    """Keep the refused bytes and the reason: the sender may ask what happened."""
    for p in problems:
        runtime.metrics.envelope_refused("accept", p.code)
    try:
        await runtime.log.append([door_refusal_record(sub, problems, runtime.topics, env)])
    except DocbrokerError as err:  # the refusal still stands; the trail has a gap
        log.error("could not record a refusal", error=str(err), codes=[p.code for p in problems])
    log.info("envelope refused", codes=[p.code for p in problems])
    return Taken(sub.message_id, sub, env, problems=tuple(problems))
