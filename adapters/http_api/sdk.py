"""The national axis's operations under /vdxp, as VNPT's unchanged SDK (SDKVXP 2.0.1) calls them.

An agency system built for the national axis points its endpoint at
`https://<docbroker>/vdxp` and works unchanged: the SDK's operation paths and
methods, its parameters as signed `XroadVnpt-<name>` headers (verified as the jars
sign them: broker.vdxp, broker.directory.auth.check_sdk_request), and answers in the shapes its
readers take (`status`, `ErrorCode`, `ErrorDesc` and every field each reader requires,
never null), refusals included, so that the SDK's user sees why and never a null
result. Only signed parameters are used; left-overs from the SDK's earlier calls are
ignored by operations that do not take them.

Underneath, each operation is a native one: sendEdoc a submission through the door,
getReceivedEdocList a mailbox listing of every agency the system acts for, getEdoc
and downloadEdoc a fetch (recorded as delivered), updateStatus `done` an
acknowledgement (the sender gets its status 01). See sdk_documents and sdk_agencies.
"""

from __future__ import annotations

import structlog
from aiohttp import web

from adapters.http_api import sdk_agencies, sdk_documents
from adapters.http_api.access import ACCESS
from adapters.http_api.keys import RUNTIME
from adapters.http_api.limits import admitted
from adapters.http_api.sdk_answers import Operation, SdkAnswer, answer_response
from broker import vdxp
from broker.core.errors import (
    BackendUnavailable,
    DocbrokerError,
    NotFound,
    RateLimited,
    ServerBusy,
    StorageFull,
)

log = structlog.get_logger(__name__)

OPERATIONS: dict[str, Operation] = {
    **sdk_documents.OPERATIONS,
    **sdk_agencies.OPERATIONS,
}
METHODS = {"downloadEdoc": "GET"}  # the SDK posts every other operation


async def operation(request: web.Request) -> web.StreamResponse:
    """One SDK operation; every failure is answered in the form its reader takes."""
    name = request.match_info["operation"]
    runtime = request.app[RUNTIME]
    known = name if name in OPERATIONS else "unknown"
    try:
        handler = OPERATIONS.get(name)
        if handler is None:
            raise NotFound(f"no operation {name}; docbroker offers {', '.join(OPERATIONS)}")
        access = request.app[ACCESS]
        call = await access.sdk_caller(request)
        access.limit(call.principal)
        async with admitted(request, call.principal):  # its refusals in the SDK's form
            answer = await handler(request, runtime, call)
    except DocbrokerError as exc:
        runtime.metrics.sdk_request(known, secure=request.secure, outcome=exc.code)
        return _refusal(request, name, exc)
    runtime.metrics.sdk_request(known, secure=request.secure, outcome="ok")
    return await answer_response(answer)


def _refusal(request: web.Request, name: str, exc: DocbrokerError) -> web.StreamResponse:
    runtime = request.app[RUNTIME]
    code = exc.problems[0].code
    text = "; ".join(map(str, exc.problems))
    if isinstance(exc, StorageFull | ServerBusy):  # warned once an episode, not each
        log.debug("sdk operation failed", operation=name, code=code, error=text)
    elif exc.http_status >= 500:
        log.warning("sdk operation failed", operation=name, code=code, error=text)
    else:
        log.info("sdk operation refused", operation=name, code=code, error=text)
        if exc.http_status in (401, 403, 429):
            runtime.metrics.access_refused("sdk", code)
    if name == "downloadEdoc":
        # the SDK writes whatever body comes back into the .edxml file and calls a
        # non-empty file a success: an empty body is its only way to say FAIL
        response = web.Response(status=exc.http_status, body=b"")
        response.headers["X-Docbroker-Problem"] = code
    else:
        body = vdxp.answer_bytes(vdxp.answer_fail(name, code, text))
        response = web.Response(status=exc.http_status, body=body, content_type=vdxp.JSON)
    if isinstance(exc, RateLimited | BackendUnavailable) and exc.retry_after:
        response.headers["Retry-After"] = str(max(1, round(exc.retry_after + 0.5)))
    if isinstance(exc, ServerBusy):
        response.force_close()  # its body was not read: not worth waiting for
    return response


__all__ = ["METHODS", "OPERATIONS", "SdkAnswer", "operation"]
