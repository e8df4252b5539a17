"""POST /v1/envelopes: take a submission in, answer 202 only once it is durable."""

from __future__ import annotations

import asyncio
import urllib.parse
from collections.abc import Awaitable, Callable
from typing import TypeVar

import structlog
from aiohttp import web

from adapters.http_api import idempotency
from adapters.http_api.access import principal_of
from adapters.http_api.keys import IDEMPOTENCY, RUNTIME
from adapters.http_api.problems import problem_response, simple_problem
from broker.core.errors import AccessRefused, InputRefused
from broker.core.problems import Problem
from broker.core.records import iso_ms
from broker.directory.auth import Principal
from broker.offload import sha256_hex
from broker.service.door import Taken, take_in

T = TypeVar("T")

log = structlog.get_logger(__name__)

ACCEPTED_TYPES = frozenset(
    {
        "application/xml",
        "text/xml",
        "application/edxml+xml",
        "application/octet-stream",
    }
)


async def read_body(request: web.Request, read: Callable[[], Awaitable[T]], *, slack: int = 0) -> T:
    """The request body through `read`, within the envelope size limit (plus `slack`
    bytes of framing, e.g. the SDK's trailing CRLF) and the request timeout (a slow
    sender cannot hold a connection forever)."""
    runtime = request.app[RUNTIME]
    limit = int(runtime.settings.limits.max_envelope_bytes) + slack
    timeout = runtime.settings.http.request_timeout
    too_large = None
    if request.content_length is not None and request.content_length > limit:
        too_large = f"the request has {request.content_length} bytes; the limit is {limit}"
    else:
        try:
            async with asyncio.timeout(timeout):
                return await read()
        except web.HTTPRequestEntityTooLarge:
            too_large = f"the request exceeds the limit of {limit} bytes"
        except TimeoutError:
            raise InputRefused(
                [Problem("request-timeout", f"the body did not arrive within {timeout:g} s")]
            ) from None
    runtime.metrics.envelope_refused("accept", "too-large")
    raise InputRefused([Problem("too-large", too_large)])


async def submit(request: web.Request) -> web.StreamResponse:
    """Take one envelope: as the authenticated agency, once per Idempotency-Key."""
    principal = principal_of(request)
    if principal.agency is None:
        raise AccessRefused.because("forbidden", "an admin credential cannot send documents")
    if request.content_type not in ACCEPTED_TYPES:
        return simple_problem(
            "unsupported-media-type",
            f"send the edXML bytes as application/xml, not {request.content_type}",
        )
    data = await read_body(request, request.read)
    digest = await sha256_hex(data)  # once: for the Idempotency-Key and the submission
    key = request.headers.get(idempotency.HEADER)
    if key is None:
        return await _take(request, principal, data, digest, None)
    return await request.app[IDEMPOTENCY].once(
        principal.name, key, digest, lambda: _take(request, principal, data, digest, key)
    )


async def _take(
    request: web.Request, principal: Principal, data: bytes, digest: str, key: str | None
) -> web.Response:
    """Through the door; an Idempotency-Key is claimed in the log with the submission,
    so that a retry at another instance is recognised too."""
    runtime = request.app[RUNTIME]
    taken = await take_in(
        runtime,
        data,
        source="http",
        caller=principal.agency,
        traceparent=request.headers.get("traceparent"),
        idempotency=(principal.name, key) if key else None,
        sha256=digest,
    )
    if taken.refused:
        return problem_response(
            taken.problems,
            instance=request.path,
            headers={"Docbroker-Message-Id": taken.message_id},
        )
    assert taken.envelope is not None
    return web.json_response(
        accepted_json(taken),
        status=200 if taken.duplicate else 202,
        headers={"Location": document_url(taken.envelope.subject_document_id)},
    )


def document_url(document_id: str) -> str:
    return "/v1/documents/" + urllib.parse.quote(document_id, safe="")


def accepted_json(taken: Taken) -> dict[str, object]:
    env, sub = taken.envelope, taken.submission
    assert env is not None
    return {
        "message_id": taken.message_id,
        "document_id": env.subject_document_id,
        "kind": str(env.kind),
        "sender": env.sender_id,
        "recipients": list(env.recipient_ids),
        "size": len(sub.data),
        "sha256": sub.sha256,
        "received_at": iso_ms(sub.received_at_ms),
        "trace_id": sub.trace_id,
        "duplicate": taken.duplicate,
        "warnings": [w.to_dict() for w in taken.warnings],
    }
