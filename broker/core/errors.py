"""One error root whose subclasses carry their policy.

Each error knows its stable problem code, the HTTP status and CLI exit status it
maps to, and whether retrying can help, so that handlers at the edges stay short
(`except DocbrokerError as exc: return problem_response(exc)`). Library errors
(aiokafka, sqlite3, OSError) are wrapped with `raise ... from exc` where they
leave the module that talks to the library.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

from broker.core.problems import Problem

EXIT_OK = 0
EXIT_REFUSED = 1  # the input was refused: invalid, not authorised
EXIT_USAGE = 2  # usage or environment error


class DocbrokerError(Exception):
    """Root of every error docbroker raises on purpose."""

    code: ClassVar[str] = "internal-error"
    http_status: ClassVar[int] = 500
    exit_code: ClassVar[int] = EXIT_USAGE
    retriable: ClassVar[bool] = False

    @property
    def problems(self) -> tuple[Problem, ...]:
        return (Problem(self.code, str(self)),)


class ProblemsError(DocbrokerError):
    """An error that carries one or more problems; the first one names it."""

    def __init__(self, problems: Sequence[Problem]) -> None:
        if not problems:
            raise ValueError(f"{type(self).__name__} needs at least one problem")
        self._problems = tuple(problems)
        super().__init__("; ".join(str(p) for p in self._problems))

    @property
    def problems(self) -> tuple[Problem, ...]:
        return self._problems

    @property
    def code(self) -> str:  # type: ignore[override]
        return self._problems[0].code

    @property
    def http_status(self) -> int:  # type: ignore[override]
        return self._problems[0].http_status


class InputRefused(ProblemsError):
    """The input breaks one or more rules; carries the problems found."""

    exit_code = EXIT_REFUSED


class AccessRefused(ProblemsError):
    """The caller is not authenticated (401) or not allowed to do this (403)."""

    exit_code = EXIT_REFUSED

    @classmethod
    def because(cls, code: str, message: str) -> AccessRefused:
        return cls([Problem(code, message)])


class RateLimited(DocbrokerError):
    """The caller exceeded its request rate; it may retry after `retry_after` seconds."""

    code = "rate-limited"
    http_status = 429
    exit_code = EXIT_REFUSED
    retriable = True

    def __init__(self, message: str, retry_after: float) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class TooManyAtOnce(RateLimited):
    """The caller has as many requests (or long polls) under way as it may
    (http.agency_max_requests, http.agency_max_long_polls); it may retry once one is
    answered. `code` names the cap."""

    def __init__(self, code: str, message: str, retry_after: float) -> None:
        super().__init__(message, retry_after)
        self._code = code

    @property
    def code(self) -> str:  # type: ignore[override]
        return self._code


class ConfigError(DocbrokerError):
    """The configuration file or environment holds a wrong key or value."""

    code = "config-invalid"


class SchemaTooNew(DocbrokerError):
    """The embedded log's file has a schema version newer than this docbroker knows:
    it was written by a later release, and is left unchanged (exit status 2)."""

    code = "schema-too-new"


class TargetNotEmpty(DocbrokerError):
    """A backup or a restore would write into a folder that holds files already:
    it writes only into an empty (or new) one, so that nothing is overwritten or mixed."""

    code = "target-not-empty"


class BadRequest(DocbrokerError):
    """A request parameter is malformed or out of range."""

    code = "bad-request"
    http_status = 400
    exit_code = EXIT_USAGE


class NotFound(DocbrokerError):
    """The named resource does not exist (or is not visible to the caller)."""

    code = "not-found"
    http_status = 404
    exit_code = EXIT_REFUSED


class Archived(DocbrokerError):
    """The resource was pruned from the log by the retention rules (README, Retention):
    it is in a signed archive, no longer served. An answer, not a failure."""

    code = "archived"
    http_status = 410
    exit_code = EXIT_REFUSED


class BackendUnavailable(DocbrokerError):
    """The durable log cannot be reached or refused an operation; retry later
    (`retry_after` seconds, when the broker can say)."""

    code = "backend-unavailable"
    http_status = 503
    retriable = True

    def __init__(self, message: str = "", retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class StorageFull(BackendUnavailable):
    """The durable log (or a read model) has no room to write: its disk is full, or its
    file may not grow. Nothing of the failed write is kept; retry once space is freed
    (the same problem code as any unavailable backend: clients retry alike)."""


class ServerBusy(BackendUnavailable):
    """The server holds as many request bytes as it may (http.max_bytes_in_flight): a
    resource of the whole server, not the caller's fault; retry after `retry_after`."""

    code = "too-many-bytes-in-flight"


class RecordTooLarge(DocbrokerError):
    """A record exceeds the topic's configured maximum size."""

    code = "too-large"
    http_status = 413
    exit_code = EXIT_REFUSED


class Fenced(DocbrokerError):
    """This consumer no longer owns the partition: another member took it over.

    Nothing of the failed transaction is visible; the new owner reprocesses the
    input from the last committed offset.
    """

    code = "fenced"
    retriable = True
