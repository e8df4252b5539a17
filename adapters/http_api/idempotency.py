"""Idempotency-Key: a retried submission gets the first answer, not a second document.

A client that did not see the answer to a POST (a timeout, a dropped
connection) sends it again with the same `Idempotency-Key`; docbroker answers
with what it answered the first time (and `Idempotent-Replayed: true`), for
`auth.idempotency_hours`. Keys are per caller. The same key with another body
is refused (422 idempotency-key-reused). While the first request is in flight,
a retry waits for its answer. Answers of 5xx are not kept: the retry runs again.

The memory is per instance; across instances and restarts the submission is
still idempotent on (sender, DocumentId) through the dedup index.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from aiohttp import web

from broker.core.errors import BadRequest, InputRefused
from broker.core.problems import Problem

HEADER = "Idempotency-Key"
MAX_KEY_LENGTH = 255


@dataclass(frozen=True, slots=True)
class Answer:
    status: int
    body: bytes
    content_type: str
    headers: tuple[tuple[str, str], ...]
    request_sha256: str
    at: float

    def response(self) -> web.Response:
        resp = web.Response(status=self.status, body=self.body, headers=dict(self.headers))
        resp.content_type = self.content_type
        resp.headers["Idempotent-Replayed"] = "true"
        return resp


class IdempotencyCache:
    def __init__(self, ttl_seconds: float, capacity: int = 100_000) -> None:
        self.ttl = ttl_seconds
        self.capacity = capacity
        self._answers: OrderedDict[tuple[str, str], Answer] = OrderedDict()
        self._in_flight: dict[tuple[str, str], asyncio.Future[None]] = {}

    async def once(
        self,
        caller: str,
        key: str,
        request_sha256: str,
        produce: Callable[[], Awaitable[web.Response]],
    ) -> web.Response:
        if not key or len(key) > MAX_KEY_LENGTH:
            raise BadRequest(f"{HEADER} must have 1 to {MAX_KEY_LENGTH} characters")
        slot = (caller, key)
        while (waiting := self._in_flight.get(slot)) is not None:
            await asyncio.shield(waiting)
        self._expire()
        known = self._answers.get(slot)
        if known is not None:
            if known.request_sha256 != request_sha256:
                raise InputRefused(
                    [
                        Problem(
                            "idempotency-key-reused",
                            f"{HEADER} {key!r} was used for a different request body",
                        )
                    ]
                )
            return known.response()
        done = asyncio.get_running_loop().create_future()
        self._in_flight[slot] = done
        try:
            resp = await produce()
            if resp.status < 500 and isinstance(resp.body, bytes):
                self._keep(slot, resp, request_sha256)
            return resp
        finally:
            del self._in_flight[slot]
            done.set_result(None)

    def _keep(self, slot: tuple[str, str], resp: web.Response, request_sha256: str) -> None:
        headers = tuple(
            (k, v) for k, v in resp.headers.items() if k not in ("Content-Type", "Content-Length")
        )
        self._answers[slot] = Answer(
            resp.status,
            resp.body,  # type: ignore[arg-type]
            resp.content_type,
            headers,
            request_sha256,
            time.monotonic(),
        )
        while len(self._answers) > self.capacity:
            self._answers.popitem(last=False)

    def _expire(self) -> None:
        limit = time.monotonic() - self.ttl
        while self._answers:
            first = next(iter(self._answers.values()))
            if first.at >= limit:
                break
            self._answers.popitem(last=False)
