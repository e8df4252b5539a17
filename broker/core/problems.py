"""Problems and warnings: what is wrong with an input, as values with stable codes.

A package's defects come in two tiers. A **problem** refuses it: it cannot be
routed or trusted. A **warning** (`Irregularity`) accepts it while recording the
irregularity: real senders, and the national axis itself, emit irregular
packages, and refusing those refuses real mail. A strict sender's warnings
become problems with the same code and location (`Irregularity.as_problem`).

A refusal is not an exception in the core: checks return `Problem` values, and
the edges turn them into HTTP problem+json answers, CLI exit status 1 and
records in the `rejected` topic. The codes are a contract with agency systems:
add new ones, never rename or reuse one.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Self


@dataclass(frozen=True, slots=True)
class ProblemType:
    """One stable problem code with its title and the HTTP status it maps to."""

    code: str
    title: str
    http_status: int


@dataclass(frozen=True, slots=True)
class WarningType:
    """One stable warning code: what is irregular, and why the package is still taken."""

    code: str
    title: str
    accepted_because: str


# Each is a deviation seen in real traffic (or its exact sibling) that neither routing
# nor trust reads; what routing and trust read stays a problem wherever it is broken.
WARNING_TYPES: Mapping[str, WarningType] = {
    t.code: t
    for t in (
        WarningType(
            "trace-organ-id-missing",
            "A TraceHeader has no usable OrganId: missing, empty or the text null",
            "a TraceHeader records a past hop for people; routing reads From, To and "
            "ResponseFor, and docbroker appends its own hop (the national axis sends such "
            "hops)",
        ),
        WarningType(
            "trace-timestamp-invalid",
            "A TraceHeader has no usable Timestamp: missing, empty, malformed or impossible",
            "as for its OrganId: nothing is routed, ordered or trusted by a past hop's time",
        ),
        WarningType(
            "unknown-element",
            "An edXML element the schema does not know, or not where it is, was ignored",
            "vendors add their own elements; one outside From, To, ResponseFor and "
            "Bussiness that holds no field routing or trust reads (OrganId, DocumentId, "
            "StatusCode, BussinessDocType, Signature, ...) cannot change where the package "
            "goes or who sent it; it is forwarded unchanged",
        ),
        WarningType(
            "element-order",
            "The package's blocks are not in the standard's order (e.g. Bussiness before "
            "the TraceHeaders)",
            "docbroker, like the readers it forwards to, finds elements by name, not by "
            "position (the national axis sends Bussiness first)",
        ),
    )
}


def _catalogue(*types: ProblemType) -> Mapping[str, ProblemType]:
    return {t.code: t for t in types}


PROBLEM_TYPES: Mapping[str, ProblemType] = _catalogue(
    # The bytes are not an XML document we may read.
    ProblemType("empty-input", "The request carries no document", 400),
    ProblemType("not-well-formed", "The document is not well-formed XML", 400),
    ProblemType("dtd-forbidden", "A DOCTYPE or entity declaration is present", 400),
    ProblemType("too-large", "The input exceeds a configured size limit", 413),
    ProblemType("too-deep", "Elements are nested deeper than the limit", 400),
    ProblemType("too-many-elements", "More elements than the limit", 400),
    # The XML is not an edXML package the broker can accept.
    ProblemType("wrong-namespace", "The root is not an edXML package", 422),
    ProblemType("schema-invalid", "An element is not expected where it is", 422),
    ProblemType("invalid-value", "A value does not have the form the standard requires", 422),
    ProblemType("invalid-date", "A date or timestamp is malformed or impossible", 422),
    ProblemType("future-date", "The promulgation date is in the future", 422),
    ProblemType("missing-field", "A required element is absent or empty", 422),
    ProblemType("duplicate-field", "An element that must appear once appears more often", 422),
    ProblemType("duplicate-recipient", "A recipient is named more than once", 422),
    ProblemType("unknown-status-code", "The status code is not one the standard knows", 422),
    ProblemType("missing-target", "An update or replacement does not name its target", 422),
    ProblemType("attachment-missing", "The manifest names an attachment that is absent", 422),
    ProblemType("attachment-unreferenced", "An attachment is not named in the manifest", 422),
    ProblemType("attachment-encoding", "An attachment is not valid base64", 422),
    ProblemType("too-many-recipients", "More recipients than the limit", 422),
    ProblemType("too-many-attachments", "More attachments than the limit", 422),
    # The directory and routing.
    ProblemType("unknown-sender", "The sender is not in the agency directory", 422),
    ProblemType("sender-suspended", "The sender is suspended in the agency directory", 403),
    ProblemType("sender-mismatch", "From/OrganId is not the authenticated agency", 403),
    ProblemType("duplicate-document", "The sender already sent this DocumentId", 409),
    ProblemType("unknown-recipient", "The recipient is not in the agency directory", 422),
    ProblemType("recipient-suspended", "The recipient is suspended", 422),
    ProblemType("upstream-failed", "The national axis refused the envelope", 502),
    ProblemType("recipient-is-sender", "A document cannot be sent to its own sender", 422),
    # Signatures (per the sender's policy).
    ProblemType("signature-missing", "The sender's policy requires a signature", 422),
    ProblemType("signature-invalid", "A signature is malformed, misplaced or does not verify", 422),
    ProblemType("signer-untrusted", "The signing certificate is not trusted now", 422),
    ProblemType("signer-mismatch", "The signing certificate does not belong to the sender", 403),
    ProblemType("weak-algorithm", "SHA-1 is refused unless the sender's policy allows it", 422),
    # Transport and API level.
    ProblemType("unauthenticated", "No valid credential was presented", 401),
    ProblemType("replayed-request", "The signed request is stale or was already received", 401),
    ProblemType("forbidden", "The credential does not allow this", 403),
    ProblemType(
        "insecure-transport",
        "This credential is accepted only over HTTPS or from its networks",
        403,
    ),
    ProblemType("not-fetched", "The document must be fetched before it is confirmed", 409),
    ProblemType("rate-limited", "Too many requests; retry after the given delay", 429),
    ProblemType(
        "too-many-concurrent-requests",
        "The agency has as many requests under way as http.agency_max_requests allows; "
        "retry after the given delay",
        429,
    ),
    ProblemType(
        "too-many-long-polls",
        "The agency has as many long polls waiting as http.agency_max_long_polls allows; "
        "retry after the given delay",
        429,
    ),
    ProblemType("idempotency-key-reused", "The Idempotency-Key was used for another request", 422),
    ProblemType("request-timeout", "The request was not received in time", 408),
    ProblemType("unsupported-media-type", "The request body has a content type not accepted", 415),
    ProblemType("bad-request", "The request is malformed", 400),
    ProblemType("method-not-allowed", "The method is not allowed on this resource", 405),
    ProblemType("not-found", "No such resource", 404),
    ProblemType(
        "archived",
        "The record was removed from the log by the retention rules; a signed archive holds it",
        410,
    ),
    ProblemType("backend-unavailable", "The durable log cannot be reached; retry later", 503),
    ProblemType(
        "too-many-bytes-in-flight",
        "The server holds as many request bytes as http.max_bytes_in_flight allows; retry later",
        503,
    ),
    ProblemType("fenced", "Another member of the consumer group took the partition over", 503),
    ProblemType("config-invalid", "The configuration holds a wrong key or value", 500),
    ProblemType(
        "schema-too-new", "A data file was written by a newer docbroker: upgrade docbroker", 500
    ),
    # Operations (CLI only): backups and restores.
    ProblemType("backup-damaged", "A backup's file is changed or missing, or no manifest", 422),
    ProblemType(
        "archive-damaged",
        "An archive file is altered, missing, out of order or not signed by the broker",
        422,
    ),
    ProblemType(
        "archive-incomplete",
        "The archive folder does not hold what the log's archive marks say was archived",
        409,
    ),
    ProblemType(
        "target-not-empty", "A backup or restore is written into an empty folder only", 409
    ),
    ProblemType("internal-error", "An unexpected error inside the broker", 500),
    # A strict sender's warnings refuse its packages, each under its own code.
    *(ProblemType(w.code, w.title, 422) for w in WARNING_TYPES.values()),
)


def problem_type(code: str) -> ProblemType:
    """The registered type of `code`; unknown codes are a programming error."""
    try:
        return PROBLEM_TYPES[code]
    except KeyError:
        raise ValueError(f"unregistered problem code: {code!r}") from None


@dataclass(frozen=True, slots=True)
class Location:
    """Where in the input a problem sits: line/column and/or an element path."""

    line: int | None = None
    column: int | None = None
    path: str | None = None

    def __str__(self) -> str:
        parts = []
        if self.line is not None:
            parts.append(f"line {self.line}" + (f", column {self.column}" if self.column else ""))
        if self.path:
            parts.append(self.path)
        return ", ".join(parts)

    def to_dict(self) -> dict[str, Any]:
        return {
            k: v
            for k, v in (("line", self.line), ("column", self.column), ("path", self.path))
            if v is not None
        }


@dataclass(frozen=True, slots=True)
class _Finding:
    """A stable code, a message for a person, and where in the input."""

    code: str
    message: str
    location: Location | None = None

    def __str__(self) -> str:
        where = f" ({self.location})" if self.location and str(self.location) else ""
        return f"{self.code}: {self.message}{where}"

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.location is not None:
            out["location"] = self.location.to_dict()
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Self:
        loc = data.get("location")
        return cls(
            code=str(data["code"]),
            message=str(data["message"]),
            location=Location(**loc) if loc else None,
        )


@dataclass(frozen=True, slots=True)
class Problem(_Finding):
    """One thing wrong with an input: it refuses the input."""

    def __post_init__(self) -> None:
        problem_type(self.code)  # refuse unregistered codes at construction

    @property
    def http_status(self) -> int:
        return problem_type(self.code).http_status


@dataclass(frozen=True, slots=True)
class Irregularity(_Finding):
    """A warning: something irregular in a package that is accepted all the same.

    Always located (warnings come from the parsed package), so that the sender can
    find and fix it."""

    def __post_init__(self) -> None:
        if self.code not in WARNING_TYPES:
            raise ValueError(f"unregistered warning code: {self.code!r}")
        if self.location is None:
            raise ValueError(f"warning {self.code} without a location")

    def as_problem(self) -> Problem:
        """The refusal a strict sender gets instead: same code, message and location."""
        return Problem(self.code, self.message, self.location)


def http_status_for(problems: Iterable[Problem]) -> int:
    """The status of the first problem: the one a client should act on first."""
    for p in problems:
        return p.http_status
    return 400
