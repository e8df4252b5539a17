"""The fair limits at the HTTP edge: the thin shell around adapters.http_api.admission.

A /v1 request takes a slot of its agency (after authentication, before its body is
read); a mailbox listing that waits also takes a long-poll slot (`long_polling`);
every request's body is counted against the server's byte budget: by its
Content-Length before anything is read, or, when its length is unknown (chunked, or
compressed), chunk by chunk as it arrives (it is then read here and handed to the
handler as the request's body). The SDK surface (/vdxp) answers its refusals in its
own form, so it takes the same slots in its operation (`admitted`), not here.

What was taken is given back when the request ends, however it ends: an answer, an
exception, a client gone or a cancelled handler (`finally`).
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import NoReturn, TypeVar

import structlog
from aiohttp import web

from adapters.http_api.access import PRINCIPAL
from adapters.http_api.admission import Admission, Limit, Refused, Reservation, Slot
from adapters.http_api.envelopes import read_body
from adapters.http_api.keys import RUNTIME
from broker.config import Settings
from broker.core.errors import ServerBusy, TooManyAtOnce
from broker.directory.auth import Principal

log = structlog.get_logger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
T = TypeVar("T", Slot, Reservation)

ADMISSION = web.AppKey("admission", Admission)
SDK_PREFIX = "/vdxp/"
RETRY_AFTER = 1.0  # seconds: a slot or bytes come free as soon as a request is answered
CODES = {
    Limit.AGENCY_REQUESTS: "too-many-concurrent-requests",
    Limit.AGENCY_LONG_POLLS: "too-many-long-polls",
}


def admission_for(settings: Settings) -> Admission:
    http = settings.http
    return Admission.of(
        http.agency_max_requests, http.agency_max_long_polls, int(http.max_bytes_in_flight)
    )


@web.middleware
async def fair_share(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every request but the SDK surface's: its agency's slot (for /v1, whose caller
    the guard put on the request) and its body's bytes."""
    if request.path.startswith(SDK_PREFIX):
        return await handler(request)
    async with admitted(request, request.get(PRINCIPAL)):
        return await handler(request)


@contextlib.asynccontextmanager
async def admitted(request: web.Request, principal: Principal | None) -> AsyncIterator[None]:
    """A request under way for `principal` (None: an open or console request, counted
    for its bytes only), with its body's bytes reserved; released on exit."""
    admission = request.app[ADMISSION]
    slot = None if principal is None else _granted(request, admission.request(principal.name))
    try:
        reservation = await _body_reserved(request, admission)
        try:
            yield
        finally:
            reservation.release()
    finally:
        if slot is not None:
            slot.release()


@contextlib.contextmanager
def long_polling(request: web.Request, wait: float) -> Iterator[None]:
    """A mailbox listing that waits up to `wait` seconds holds a long-poll slot of its
    caller meanwhile (one that does not wait holds none)."""
    if wait <= 0:
        yield
        return
    slot = _granted(request, request.app[ADMISSION].long_poll(request[PRINCIPAL].name))
    try:
        yield
    finally:
        slot.release()


async def _body_reserved(request: web.Request, admission: Admission) -> Reservation:
    budget = admission.bytes
    if not request.body_exists:
        return _granted(request, budget.reserve(0))
    most = request.client_max_size
    length = request.content_length
    if length is not None and not request.headers.get("Content-Encoding"):
        # a longer body is refused (413) by whoever reads it, at `most` bytes
        return _granted(request, budget.reserve(min(length, most)))
    reservation = _granted(request, budget.reserve(0))
    slack = most - int(request.app[RUNTIME].settings.limits.max_envelope_bytes)
    try:
        await read_body(request, lambda: _read_counted(request, reservation, most), slack=slack)
    except BaseException:
        reservation.release()
        raise
    return reservation


async def _read_counted(request: web.Request, reservation: Reservation, most: int) -> bytes:
    """A body of unknown length, counted as it arrives; it becomes the request's body
    (request.read(), .post() and .json() answer it)."""
    body = bytearray()
    async for chunk in request.content.iter_any():
        if len(body) + len(chunk) > most:
            raise web.HTTPRequestEntityTooLarge(max_size=most, actual_size=len(body) + len(chunk))
        refused = reservation.grow(len(chunk))
        if refused is not None:
            _refuse(request, refused)
        body += chunk
    request._read_bytes = bytes(body)  # what BaseRequest.read() caches the body in
    return request._read_bytes


def _granted(request: web.Request, outcome: T | Refused) -> T:
    if isinstance(outcome, Refused):
        _refuse(request, outcome)
    return outcome


def _refuse(request: web.Request, refused: Refused) -> NoReturn:
    request.app[RUNTIME].metrics.http_limited(refused.limit)
    if refused.limit is Limit.BYTES_IN_FLIGHT:
        budget = request.app[ADMISSION].bytes
        if budget.refused == 1 or budget.refused % 1000 == 0:
            log.warning(
                "request bytes in flight at the limit", limit=budget.limit, refused=budget.refused
            )
        raise ServerBusy(refused.detail, RETRY_AFTER)
    raise TooManyAtOnce(CODES[refused.limit], refused.detail, RETRY_AFTER)


__all__ = ["ADMISSION", "admission_for", "admitted", "fair_share", "long_polling"]
