"""POST /v1/envelopes: take a submission in, answer 202 only once it is durable."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime

import structlog
from aiohttp import web
from structlog.contextvars import bound_contextvars

from adapters.http_api.keys import RUNTIME
from adapters.http_api.problems import problem_response, simple_problem
from broker.errors import DocbrokerError, InputRefused
from broker.intake import Submission, door_refusal_record, inbound_record
from broker.records import new_message_id, now_ms, trace_id_from

log = structlog.get_logger(__name__)

ACCEPTED_TYPES = frozenset(
    {
        "application/xml",
        "text/xml",
        "application/edxml+xml",
        "application/octet-stream",
    }
)


def iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="milliseconds")


async def submit(request: web.Request) -> web.StreamResponse:
    runtime = request.app[RUNTIME]
    limit = int(runtime.settings.limits.max_envelope_bytes)
    if request.content_length is not None and request.content_length > limit:
        runtime.metrics.envelope_refused("accept", "too-large")
        return simple_problem(
            "too-large", f"the envelope has {request.content_length} bytes; the limit is {limit}"
        )
    if request.content_type not in ACCEPTED_TYPES:
        return simple_problem(
            "unsupported-media-type",
            f"send the edXML bytes as application/xml, not {request.content_type}",
        )
    try:
        data = await request.read()
    except web.HTTPRequestEntityTooLarge:
        runtime.metrics.envelope_refused("accept", "too-large")
        return simple_problem("too-large", f"the envelope exceeds the limit of {limit} bytes")
    message_id = new_message_id()
    trace_id = trace_id_from(request.headers.get("traceparent"))
    received = now_ms()
    with bound_contextvars(message_id=message_id, trace_id=trace_id):
        try:
            env = await asyncio.to_thread(runtime.processor.validator.check, data)
        except InputRefused as exc:
            await _record_refusal(request, data, exc, message_id, trace_id, received)
            return problem_response(
                exc.problems, instance=request.path, headers={"Docbroker-Message-Id": message_id}
            )
        sub = Submission(data, message_id, trace_id, received, source="http")
        started = time.monotonic()
        await runtime.log.append([inbound_record(sub, env, runtime.topics)])
        runtime.metrics.envelope_accepted(len(data), time.monotonic() - started)
        log.info(
            "envelope accepted",
            document_id=env.subject_document_id,
            sender=env.sender_id,
            recipients=list(env.recipient_ids),
            size=len(data),
        )
        body = {
            "message_id": message_id,
            "document_id": env.subject_document_id,
            "kind": str(env.kind),
            "sender": env.sender_id,
            "recipients": list(env.recipient_ids),
            "size": len(data),
            "sha256": sub.sha256,
            "received_at": iso(received),
            "trace_id": trace_id,
        }
        return web.json_response(
            body, status=202, headers={"Location": f"/v1/envelopes/{message_id}"}
        )


async def _record_refusal(
    request: web.Request,
    data: bytes,
    exc: InputRefused,
    message_id: str,
    trace_id: str,
    received: int,
) -> None:
    """Keep the refused bytes and the reason: the sender may ask what happened."""
    runtime = request.app[RUNTIME]
    for p in exc.problems:
        runtime.metrics.envelope_refused("accept", p.code)
    sub = Submission(data, message_id, trace_id, received, source="http")
    try:
        await runtime.log.append([door_refusal_record(sub, exc.problems, runtime.topics)])
    except DocbrokerError as err:  # the refusal still stands; the trail has a gap
        log.error(
            "could not record a refusal", error=str(err), codes=[p.code for p in exc.problems]
        )
    log.info("envelope refused", codes=[p.code for p in exc.problems])
