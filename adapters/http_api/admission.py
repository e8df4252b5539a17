"""Fair shares of the HTTP server: requests and long polls under way per agency, and
request bytes in flight for the whole server. Plain counters, no I/O and no waiting.

One agency's long polls or uploads must not hold what every agency shares (the
connections, the memory bodies are read into). So each agency (the authenticated
caller: principal name) may have at most `agency_max_requests` requests under way, of
which at most `agency_max_long_polls` long polls; and all requests together may hold at
most `max_bytes_in_flight` bytes of bodies. What does not fit is refused at once
(`Refused`: the caller answers 429 or 503 with Retry-After), never queued: a queue
would hold a connection just the same.

Each admission is a `Slot` or a `Reservation` whose `release` gives back what it took,
once (a second release is a no-op), so that the shell may release on every exit path
without counting how it got there.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum


class Limit(StrEnum):
    """Which limit refused a request: the `reason` label of docbroker_http_limited_total."""

    AGENCY_REQUESTS = "agency-requests"
    AGENCY_LONG_POLLS = "agency-long-polls"
    BYTES_IN_FLIGHT = "bytes-in-flight"
    RATE = "rate"


@dataclass(frozen=True, slots=True)
class Refused:
    """Why a request does not fit now, in words for the caller (its own agency only)."""

    limit: Limit
    detail: str


@dataclass(slots=True)
class Slot:
    """A request (or long poll) of one agency under way."""

    _counts: dict[str, int]
    agency: str
    released: bool = False

    def release(self) -> None:
        if self.released:
            return
        self.released = True
        left = self._counts[self.agency] - 1
        if left:
            self._counts[self.agency] = left
        else:
            del self._counts[self.agency]  # no entry for an idle agency: bounded memory


@dataclass(slots=True)
class Reservation:
    """Bytes of one request's body counted against the server's budget. A body of
    unknown length (chunked) grows it as its bytes arrive (`grow`)."""

    _budget: ByteBudget
    size: int = 0
    released: bool = False

    def grow(self, more: int) -> Refused | None:
        """Count `more` bytes; None when they fit (else nothing is counted)."""
        refused = self._budget._take(more)
        if refused is None:
            self.size += more
        return refused

    def release(self) -> None:
        if not self.released:
            self.released = True
            self._budget.in_flight -= self.size


@dataclass
class ByteBudget:
    """Request bytes in flight for the whole server."""

    limit: int
    in_flight: int = 0
    refused: int = 0  # requests refused so far (the shell warns at the first, then rarely)

    def reserve(self, size: int) -> Reservation | Refused:
        reservation = Reservation(self)
        refused = reservation.grow(size)
        return refused or reservation

    def _take(self, size: int) -> Refused | None:
        if self.in_flight + size > self.limit:
            self.refused += 1
            return Refused(
                Limit.BYTES_IN_FLIGHT,
                f"the server holds {self.in_flight} bytes of request bodies and may hold "
                f"{self.limit} (http.max_bytes_in_flight); this request needs {size} more: "
                "retry later",
            )
        self.in_flight += size
        return None


@dataclass
class Admission:
    """The per-agency caps and the server's byte budget."""

    agency_max_requests: int
    agency_max_long_polls: int
    bytes: ByteBudget
    requests: dict[str, int] = field(default_factory=dict)
    long_polls: dict[str, int] = field(default_factory=dict)

    @classmethod
    def of(cls, max_requests: int, max_long_polls: int, max_bytes: int) -> Admission:
        return cls(max_requests, max_long_polls, ByteBudget(max_bytes))

    def request(self, agency: str) -> Slot | Refused:
        """A request of `agency` starts (any request, long polls included)."""
        return _enter(
            self.requests,
            agency,
            self.agency_max_requests,
            Limit.AGENCY_REQUESTS,
            "http.agency_max_requests",
            "requests",
        )

    def long_poll(self, agency: str) -> Slot | Refused:
        """A request of `agency` that will wait for mail starts waiting."""
        return _enter(
            self.long_polls,
            agency,
            self.agency_max_long_polls,
            Limit.AGENCY_LONG_POLLS,
            "http.agency_max_long_polls",
            "long polls",
        )


def _enter(
    counts: dict[str, int], agency: str, cap: int, limit: Limit, setting: str, what: str
) -> Slot | Refused:
    held = counts.get(agency, 0)
    if held >= cap:
        return Refused(
            limit,
            f"{agency} has {held} {what} under way, the most {setting} allows; "
            "retry once one of them is answered",
        )
    counts[agency] = held + 1
    return Slot(counts, agency)
