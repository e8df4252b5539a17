"""A search of the document view: the query as a value, its page, and its SQL.

`DocumentQuery` is pure and checked when made (a bad value is a `BadRequest`,
problem code `bad-request`), so the HTTP API, the CLI and the console build it
from their own inputs and the view (broker.views.document_search) runs it.
Agency codes in a query are any code form; the view adds the directory code.
Pages are newest first (accepted time, then sender, then DocumentId) and keyed
by an opaque cursor: the last item's key, so that paging never skips or repeats
an item while documents keep arriving.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

from broker.core.errors import BadRequest

STATUS_CODES = ("01", "02", "03", "04", "05", "06", "13", "15", "16")  # QCVN 102 StatusCode
STATES = ("routed", "delivered", "acknowledged", "refused")  # a recipient's state now
KINDS = ("document", "status")
MAX_LIMIT = 500
DEFAULT_LIMIT = 50
MAX_TEXT = 255  # codes, DocumentIds and agency codes are shorter

Key = tuple[int, str, str]  # accepted_at_ms, sender, document_id: the paging order
Resolve = Callable[[str], str | None]  # any agency code -> its directory code


def code_key(code: str) -> str:
    """A number/notation as compared: case-folded, without whitespace
    ("345 / sct-vp" finds "345/SCT-VP")."""
    return re.sub(r"\s+", "", code).casefold()


@dataclass(frozen=True, slots=True)
class DocumentQuery:
    """What to find; every field None (or default) matches everything.

    code: the number/notation (`Code`, e.g. "345/SCT-VP"), case- and
        whitespace-insensitive; a trailing "*" matches it as a prefix ("345/*").
    document_id: the edXML DocumentId, exactly.
    sender, recipient: an agency, by either of its codes.
    since_ms, until_ms: accepted at or after `since_ms` and before `until_ms`.
    status: a StatusCode ("03", "06", ...) some recipient reached, or the state
        some recipient is in now: routed (not fetched yet), delivered (fetched, not
        acknowledged), acknowledged, refused.
    kind: "document", or "status" (status packages an agency sent).
    visible_to: the codes of the calling agency: only what it sent or received
        (of what it received, only its own recipient state); None: an administrator.
    limit: items per page (1..500); cursor: `DocumentPage.next_cursor` of the page
        before.
    """

    code: str | None = None
    document_id: str | None = None
    sender: str | None = None
    recipient: str | None = None
    since_ms: int | None = None
    until_ms: int | None = None
    status: str | None = None
    kind: str | None = None
    visible_to: tuple[str, ...] | None = None
    limit: int = DEFAULT_LIMIT
    cursor: str | None = None
    after: Key | None = field(init=False, default=None, compare=False)

    def __post_init__(self) -> None:
        for name in ("code", "document_id", "sender", "recipient", "cursor"):
            value = getattr(self, name)
            if value is not None and not 0 < len(value.strip()) <= MAX_TEXT:
                raise BadRequest(f"{name} must be 1 to {MAX_TEXT} characters")
        if self.code is not None and not code_key(self.code).rstrip("*"):
            raise BadRequest("code must name a number/notation, e.g. 345/SCT-VP or 345/*")
        if self.status is not None and self.status not in (*STATUS_CODES, *STATES):
            raise BadRequest(
                f"status must be a StatusCode ({', '.join(STATUS_CODES)}) or a state "
                f"({', '.join(STATES)}), got {self.status!r}"
            )
        if self.kind is not None and self.kind not in KINDS:
            raise BadRequest(f"kind must be document or status, got {self.kind!r}")
        if not 1 <= self.limit <= MAX_LIMIT:
            raise BadRequest(f"limit must be between 1 and {MAX_LIMIT}, got {self.limit}")
        since, until = self.since_ms, self.until_ms
        if since is not None and until is not None and since >= until:
            raise BadRequest("from must be before to")
        if self.visible_to is not None and not self.visible_to:
            raise BadRequest("visible_to names no agency code")
        if self.cursor is not None:
            object.__setattr__(self, "after", decode_cursor(self.cursor))


@dataclass(frozen=True, slots=True)
class DocumentPage:
    """One page of a search: `items` as JSON-ready dicts (see `document_search`),
    newest first; `next_cursor` for the next page, None on the last."""

    items: tuple[dict[str, Any], ...]
    next_cursor: str | None

    def to_json(self) -> dict[str, Any]:
        return {"documents": list(self.items), "next_cursor": self.next_cursor}


def encode_cursor(key: Key) -> str:
    raw = json.dumps(list(key), ensure_ascii=False, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> Key:
    """The key a cursor carries; BadRequest for anything `encode_cursor` did not make."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        at_ms, sender, document_id = json.loads(raw)
    except (ValueError, TypeError, binascii.Error):
        raise BadRequest("cursor is not one a page of this search gave") from None
    if not (type(at_ms) is int and isinstance(sender, str) and isinstance(document_id, str)):
        raise BadRequest("cursor is not one a page of this search gave")
    return (at_ms, sender, document_id)


def parse_when(text: str, *, end: bool = False) -> int:
    """A date ("2026-11-24", that day in UTC: from its start, or with `end` up to its
    end) or an ISO-8601 time ("2026-11-24T08:00:00+07:00"; UTC without an offset),
    in ms since the epoch; BadRequest otherwise."""
    text = text.strip()
    try:
        if len(text) == 10:
            day = date.fromisoformat(text) + timedelta(days=1 if end else 0)
            at = datetime(day.year, day.month, day.day, tzinfo=UTC)
        else:
            at = datetime.fromisoformat(text)
            at = at if at.tzinfo is not None else at.replace(tzinfo=UTC)
        return int(at.timestamp() * 1000)
    except (ValueError, OverflowError):
        raise BadRequest(f"not a date (YYYY-MM-DD) or an ISO-8601 time: {text[:40]!r}") from None


def agency_codes(named: str, resolve: Resolve | None) -> tuple[str, ...]:
    """The code as given and its directory code (when the directory knows it)."""
    agency = resolve(named) if resolve is not None else None
    return tuple(dict.fromkeys((named, agency) if agency else (named,)))


# -- the SQL (tables: broker.views.document_search)


def _in(codes: tuple[str, ...]) -> str:
    return ", ".join("?" * len(codes))


def _sent_by(codes: tuple[str, ...]) -> tuple[str, list[Any]]:
    return f"(f.sender IN ({_in(codes)}) OR f.sender_agency IN ({_in(codes)}))", [*codes, *codes]


def _received_by(codes: tuple[str, ...]) -> tuple[str, list[Any]]:
    return (
        "EXISTS (SELECT 1 FROM found_recipients r WHERE r.sender = f.sender AND "  # noqa: S608
        f"r.document_id = f.document_id AND (r.agency IN ({_in(codes)}) "
        f"OR r.requested IN ({_in(codes)})))",
        [*codes, *codes],
    )


def where(query: DocumentQuery, resolve: Resolve | None) -> tuple[str, list[Any]]:
    """The WHERE clause (over `found f`) and its parameters."""
    clauses: list[tuple[str, list[Any]]] = []
    if query.code is not None:
        key = code_key(query.code)
        if key.endswith("*"):
            prefix = key.rstrip("*")
            upper = prefix[:-1] + chr(ord(prefix[-1]) + 1)
            clauses.append(("f.code_key >= ? AND f.code_key < ?", [prefix, upper]))
        else:
            clauses.append(("f.code_key = ?", [key]))
    if query.document_id is not None:
        clauses.append(("f.document_id = ?", [query.document_id.strip()]))
    if query.sender is not None:
        clauses.append(_sent_by(agency_codes(query.sender.strip(), resolve)))
    if query.recipient is not None:
        clauses.append(_received_by(agency_codes(query.recipient.strip(), resolve)))
    if query.visible_to is not None:
        sent, sent_args = _sent_by(query.visible_to)
        received, received_args = _received_by(query.visible_to)
        clauses.append((f"({sent} OR {received})", [*sent_args, *received_args]))
    if query.since_ms is not None:
        clauses.append(("f.accepted_at_ms >= ?", [query.since_ms]))
    if query.until_ms is not None:
        clauses.append(("f.accepted_at_ms < ?", [query.until_ms]))
    if query.status is not None:
        clauses.append(
            (
                "EXISTS (SELECT 1 FROM found_marks m WHERE m.sender = f.sender AND "
                "m.document_id = f.document_id AND m.mark = ?)",
                [query.status],
            )
        )
    if query.kind is not None:
        clauses.append(("f.kind = ?", [query.kind]))
    if query.after is not None:
        clauses.append(("(f.accepted_at_ms, f.sender, f.document_id) < (?, ?, ?)", [*query.after]))
    sql = " AND ".join(f"({c})" for c, _ in clauses) or "1"
    return sql, [a for _, args in clauses for a in args]
