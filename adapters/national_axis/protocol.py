"""The national axis's answers, retries and circuit breaker, as plain values. Pure.

What an answer means decides what the upstream sender does with an envelope:

- OK: delivered; "ExistDoc" (the axis already has it): delivered too, since a
  resend after a crash must not count as a failure;
- a refusal (a FAIL answer about the request: HTTP 200 or a 4xx other than the
  ones below): retried with backoff up to the retry budget, then dead-lettered;
- unavailable (no answer, a timeout, HTTP 5xx, 408, 429, or 401/403, which say the
  axis does not accept our credentials right now): not the envelope's fault. It
  waits, behind the circuit breaker, and never spends the envelope's budget, so
  an outage of the axis delays documents but loses none.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from dataclasses import dataclass
from enum import IntEnum, StrEnum
from typing import Any

ALREADY_THERE = frozenset({"ExistDoc", "EXIST_DOC", "DocExist"})
UNAVAILABLE_STATUSES = frozenset({401, 403, 408, 429})


class Failure(StrEnum):
    REFUSED = "refused"  # the axis answered about this request: the budget is spent
    UNAVAILABLE = "unavailable"  # the axis could not be used: wait, do not spend


class AxisError(Exception):
    """A request to the national axis failed; `code` is the axis's ErrorCode or a
    transport error name (timeout, connection)."""

    def __init__(self, failure: Failure, code: str, message: str, http_status: int = 0) -> None:
        super().__init__(f"{code}: {message}" if message else code)
        self.failure = failure
        self.code = code
        self.message = message
        self.http_status = http_status

    @property
    def unavailable(self) -> bool:
        return self.failure is Failure.UNAVAILABLE


@dataclass(frozen=True, slots=True)
class Answer:
    """A successful answer: its fields, and whether the axis already had the package."""

    fields: Mapping[str, Any]
    already_there: bool = False


def read_answer(http_status: int, body: Any) -> Answer:
    """The meaning of one answer of the axis; raises AxisError for a failure."""
    if http_status >= 500 or http_status in UNAVAILABLE_STATUSES:
        code, desc = _error(body, f"http-{http_status}")
        raise AxisError(Failure.UNAVAILABLE, code, desc, http_status)
    if not isinstance(body, Mapping):
        raise AxisError(Failure.UNAVAILABLE, "bad-answer", "not a JSON object", http_status)
    status = str(body.get("status", "")).upper()
    error_code = str(body.get("ErrorCode", "0") or "0")
    if http_status < 300 and status == "OK" and error_code == "0":
        return Answer(body)
    code, desc = _error(body, f"http-{http_status}")
    if code in ALREADY_THERE:
        return Answer(body, already_there=True)
    raise AxisError(Failure.REFUSED, code, desc, http_status)


def items(answer: Answer, operation: str) -> list[Mapping[str, Any]]:
    """The `data` list of a list answer. The SDK reads each item as a JSON object;
    anything else is an answer the axis should not have given (UNAVAILABLE, as for
    an answer that is not JSON)."""
    data = answer.fields.get("data")
    if data is None:
        return []
    if not isinstance(data, list) or not all(isinstance(i, Mapping) for i in data):
        raise AxisError(Failure.UNAVAILABLE, "bad-answer", f"{operation}: data is not a list")
    return list(data)


def _error(body: Any, fallback: str) -> tuple[str, str]:
    if isinstance(body, Mapping):
        code = str(body.get("ErrorCode") or "")
        if code and code != "0":
            return code, str(body.get("ErrorDesc") or "")
        return fallback, str(body.get("ErrorDesc") or "")
    return fallback, ""


def backoff_delay(attempt: int, base: float, cap: float, rng: random.Random) -> float:
    """Seconds before attempt `attempt + 1`: exponential (base·2^(attempt-1), at most
    `cap`) with jitter over its upper half, so that retries of many envelopes spread."""
    ceiling = min(cap, base * 2 ** max(0, attempt - 1))
    return ceiling / 2 + rng.random() * ceiling / 2


class BreakerState(IntEnum):
    """Exported as a gauge: 0 closed, 1 half-open, 2 open."""

    CLOSED = 0
    HALF_OPEN = 1
    OPEN = 2


class CircuitBreaker:
    """Stops requests to an axis that keeps failing, then lets one trial through.

    Time is passed in (monotonic seconds), so that the rules are tested without
    sleeping: `failures` consecutive unavailable answers open it; after `reset`
    seconds one caller may try (half-open); its success closes the breaker, its
    failure opens it again.
    """

    def __init__(self, failures: int, reset: float) -> None:
        self.threshold = failures
        self.reset = reset
        self.state = BreakerState.CLOSED
        self.consecutive = 0
        self.opened_at = 0.0
        self._trial = False

    def allow(self, now: float) -> bool:
        """Whether a request may go now (a True in half-open is the one trial)."""
        if self.state is BreakerState.CLOSED:
            return True
        if self.state is BreakerState.OPEN and now - self.opened_at >= self.reset:
            self.state = BreakerState.HALF_OPEN
            self._trial = False
        if self.state is BreakerState.HALF_OPEN and not self._trial:
            self._trial = True
            return True
        return False

    def retry_in(self, now: float) -> float:
        """Seconds until `allow` may say yes (a short wait while a trial is out)."""
        if self.state is BreakerState.OPEN:
            return max(0.05, self.opened_at + self.reset - now)
        return 0.0 if self.state is BreakerState.CLOSED else 0.2

    def succeeded(self) -> None:
        self.state = BreakerState.CLOSED
        self.consecutive = 0
        self._trial = False

    def failed(self, now: float) -> None:
        """An unavailable answer (refusals say nothing about the axis's health)."""
        self.consecutive += 1
        if self.state is BreakerState.HALF_OPEN or self.consecutive >= self.threshold:
            self.state = BreakerState.OPEN
            self.opened_at = now
            self._trial = False
