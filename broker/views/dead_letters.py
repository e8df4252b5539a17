"""Dead letters: what the `rejected` topic holds, as values. Pure.

Every refusal lands there with its bytes, its problems and the caller the adapter
authenticated: at the door (stage `accept`), in the pipeline (`pipeline`), or at
the national axis after the retry budget (`upstream`). When one is replayed
(broker.pipeline.replays) the pipeline adds a marker record (header `replayed-as`,
no bytes) that `dead_letters` folds into it. `docbroker rejected list|show|replay`
reads them.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from typing import Any

from broker.core.logrecords import Record
from broker.core.records import H, iso_ms


@dataclass(frozen=True, slots=True)
class DeadLetter:
    message_id: str
    document_id: str
    sender: str
    stage: str  # accept | pipeline | upstream
    source: str  # the adapter that took it in (http, sdk, axis), when known
    caller: str  # the agency or system the adapter authenticated, when one was
    at_ms: int  # when it was dead-lettered
    problems: tuple[dict[str, Any], ...]
    size: int
    sha256: str
    partition: int
    offset: int
    replayed_as: str | None = None  # the message id it was replayed as, if it was
    replayed_by: str | None = None

    @property
    def key(self) -> str:
        """Which dead letter (a message the axis refuses again is a new one)."""
        return f"{self.message_id}@{self.at_ms}"

    @property
    def codes(self) -> list[str]:
        return [str(p.get("code", "")) for p in self.problems]

    def to_json(self) -> dict[str, Any]:
        return {
            "message_id": self.message_id,
            "document_id": self.document_id or None,
            "sender": self.sender or None,
            "stage": self.stage,
            "source": self.source or None,
            "caller": self.caller or None,
            "rejected_at": iso_ms(self.at_ms),
            "problems": list(self.problems),
            "size": self.size,
            "sha256": self.sha256 or None,
            "position": {"partition": self.partition, "offset": self.offset},
            "replayed_as": self.replayed_as,
            "replayed_by": self.replayed_by,
        }

    def line(self) -> str:
        """One line for a listing."""
        return (
            f"{iso_ms(self.at_ms)}  {self.stage:<8}  {self.message_id}  "
            f"{self.sender or '-'}  {self.document_id or '-'}  {', '.join(self.codes)}"
            + (f"  (replayed as {self.replayed_as})" if self.replayed_as else "")
        )


def dead_letter(record: Record) -> DeadLetter:
    """The dead letter a `rejected` record holds (malformed headers are shown as found)."""
    try:
        problems = json.loads(record.header_str(H.PROBLEMS) or "[]")
    except ValueError:
        problems = [{"code": "unreadable", "message": record.header_str(H.PROBLEMS)}]
    produced = record.header_str(H.PRODUCED_AT)
    return DeadLetter(
        message_id=record.header_str(H.MESSAGE_ID),
        document_id=record.header_str(H.DOCUMENT_ID),
        sender=record.header_str(H.SENDER),
        stage=record.header_str(H.STAGE) or "pipeline",
        source=record.header_str(H.SOURCE),
        caller=record.header_str(H.AUTHENTICATED),
        at_ms=int(produced) if produced.isdigit() else record.timestamp_ms,
        problems=tuple(p for p in problems if isinstance(p, dict)),
        size=len(record.value or b""),
        sha256=record.header_str(H.SHA256),
        partition=record.partition,
        offset=record.offset,
    )


def is_marker(record: Record) -> bool:
    """A marker the pipeline added when it replayed a dead letter (not one itself)."""
    return bool(record.header_str(H.REPLAYED_AS))


def dead_letters(records: Sequence[Record]) -> list[tuple[DeadLetter, Record]]:
    """The dead letters of `rejected` records, in log order, each with its record and
    marked as replayed where a marker says so."""
    replays = {
        r.header_str(H.REPLAY_KEY): (r.header_str(H.REPLAYED_AS), r.header_str(H.REPLAY_ACTOR))
        for r in records
        if is_marker(r)
    }
    out = []
    for record in records:
        if is_marker(record):
            continue
        letter = dead_letter(record)
        if letter.key in replays:
            by_as, by = replays[letter.key]
            letter = replace(letter, replayed_as=by_as, replayed_by=by or None)
        out.append((letter, record))
    return out


def select(
    letters: Iterable[DeadLetter],
    *,
    stage: str | None = None,
    sender: str | None = None,
    code: str | None = None,
    limit: int = 100,
) -> list[DeadLetter]:
    """The newest `limit` dead letters that match, newest first."""
    found = [
        d
        for d in letters
        if (stage is None or d.stage == stage)
        and (sender is None or d.sender == sender)
        and (code is None or code in d.codes)
    ]
    found.sort(key=lambda d: (d.at_ms, d.partition, d.offset), reverse=True)
    return found[:limit]
