"""The aiohttp application: routes, middleware, and the runtime's lifecycle.

`build_app(runtime)` registers the runtime's start/stop steps as cleanup
contexts (log -> mailbox view -> pipeline), so aiohttp starts them before it
serves and stops them in reverse after the last request has finished.
"""

from __future__ import annotations

import math
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable

import structlog
from aiohttp import web
from structlog.contextvars import bound_contextvars

from adapters.http_api import console, documents, envelopes, mailbox, ops, sdk
from adapters.http_api.access import ACCESS, BEARER_CHALLENGE, Access, guard, watch_plain_http
from adapters.http_api.idempotency import IdempotencyCache
from adapters.http_api.keys import IDEMPOTENCY, RUNTIME
from adapters.http_api.limits import ADMISSION, admission_for, fair_share
from adapters.http_api.problems import problem_response, simple_problem
from broker.core.errors import (
    BackendUnavailable,
    DocbrokerError,
    RateLimited,
    ServerBusy,
    StorageFull,
)
from broker.runtime import Runtime

log = structlog.get_logger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

# Refusals that leave the request body unread: the connection cannot be reused.
UNREAD_BODY = frozenset({"request-timeout", "too-large", ServerBusy.code})

_HTTP_CODES = {
    401: "unauthenticated",
    403: "forbidden",
    404: "not-found",
    405: "method-not-allowed",
    413: "too-large",
    415: "unsupported-media-type",
}


def _route_name(request: web.Request) -> str:
    resource = request.match_info.route.resource
    return resource.canonical if resource is not None else "unmatched"


@web.middleware
async def observe(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Bind a request id to every log line, turn errors into problem+json, count."""
    runtime = request.app[RUNTIME]
    request_id = request.headers.get("X-Request-Id") or uuid.uuid4().hex
    started = time.monotonic()
    route = _route_name(request)
    with bound_contextvars(request_id=request_id):
        try:
            response = await handler(request)
        except web.HTTPException as exc:
            if exc.status < 400:
                raise
            code = _HTTP_CODES.get(exc.status, "bad-request")
            response = simple_problem(
                code,
                exc.reason or exc.text or "",
                status=exc.status,
                instance=request.path,
                headers={k: v for k, v in exc.headers.items() if k == "Allow"},
            )
        except DocbrokerError as exc:
            if isinstance(exc, StorageFull | ServerBusy):  # warned once an episode, not each
                log.debug("request failed", code=exc.code, error=str(exc))
            elif exc.http_status >= 500:
                log.warning("request failed", code=exc.code, error=str(exc))
            elif exc.http_status in (401, 403, 429):
                runtime.metrics.access_refused("native", exc.code)
                log.info("access refused", code=exc.code, error=str(exc), path=request.path)
            response = problem_response(
                exc.problems,
                status=exc.http_status,
                instance=request.path,
                headers=error_headers(exc),
            )
            if exc.code in UNREAD_BODY:
                response.force_close()  # the rest of the body is not worth waiting for
        except Exception:
            log.exception("unexpected error", path=request.path)
            response = simple_problem(
                "internal-error", "unexpected error; see the broker log", instance=request.path
            )
        response.headers["X-Request-Id"] = request_id
        runtime.metrics.request_done(
            route, request.method, response.status, time.monotonic() - started
        )
        return response


UNAVAILABLE_RETRY_AFTER = 5.0  # seconds, when the log cannot say how long it will be out


def error_headers(exc: DocbrokerError) -> dict[str, str]:
    """What a client needs beside the problem: the auth scheme on 401, when to retry on
    429 and on every 503 (the log's own estimate, or UNAVAILABLE_RETRY_AFTER when it has
    none: a Kafka refusal, a broker out of reach)."""
    if exc.http_status == 401:
        return {"WWW-Authenticate": BEARER_CHALLENGE}
    if isinstance(exc, RateLimited):
        return {"Retry-After": str(max(1, math.ceil(exc.retry_after)))}
    if isinstance(exc, BackendUnavailable):
        wait = exc.retry_after or UNAVAILABLE_RETRY_AFTER
        return {"Retry-After": str(max(1, math.ceil(wait)))}
    return {}


def build_app(runtime: Runtime) -> web.Application:
    settings = runtime.settings
    app = web.Application(
        middlewares=[observe, guard, fair_share],
        # The body limit is the envelope limit (and the CRLF the SDK adds to sendEdoc's
        # body): aiohttp refuses larger bodies itself.
        client_max_size=int(settings.limits.max_envelope_bytes) + 2,
    )
    app[RUNTIME] = runtime
    app[ACCESS] = Access.from_runtime(runtime)
    app[ADMISSION] = admission_for(settings)
    app[IDEMPOTENCY] = IdempotencyCache(settings.auth.idempotency_hours * 3600)
    for step in runtime.lifecycle():
        app.cleanup_ctx.append(_as_cleanup_ctx(step))
    app.cleanup_ctx.append(watch_plain_http)
    app.on_shutdown.append(_release_long_polls)
    app.router.add_post("/v1/envelopes", envelopes.submit)
    app.router.add_get("/v1/mailboxes/{agency}/envelopes", mailbox.list_envelopes)
    app.router.add_get("/v1/mailboxes/{agency}/envelopes/{message_id}", mailbox.fetch_envelope)
    app.router.add_post("/v1/mailboxes/{agency}/envelopes/{message_id}/ack", mailbox.acknowledge)
    app.router.add_get("/v1/agencies", documents.list_agencies)
    app.router.add_get("/v1/documents", documents.find_documents)
    app.router.add_get("/v1/documents/{document_id}/trace", documents.document_trace)
    app.router.add_get("/v1/documents/{document_id}", documents.document_state)
    app.router.add_get("/vdxp/{operation}", sdk.operation)
    app.router.add_post("/vdxp/{operation}", sdk.operation)
    app.router.add_get("/healthz", ops.healthz)
    app.router.add_get("/readyz", ops.readyz)
    app.router.add_get("/metrics", ops.metrics)
    app.router.add_get("/openapi.yaml", ops.openapi)
    console.mount(app)
    return app


def _as_cleanup_ctx(step: Callable[[], object]) -> Callable[[web.Application], AsyncIterator[None]]:
    async def ctx(app: web.Application) -> AsyncIterator[None]:
        async with step():  # type: ignore[attr-defined]
            yield

    ctx.__name__ = getattr(step, "__name__", "step")
    return ctx


async def _release_long_polls(app: web.Application) -> None:
    app[RUNTIME].view.wake_all()
