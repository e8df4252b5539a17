"""Archive marks: how far each log partition is held by a signed archive file.

`docbroker archive export` appends one mark per partition it archived, after the
archive file is written and verified, to the compacted `archived` topic (key =
"topic:partition"). Retention reads the latest mark of each partition: records
below `through` may leave the log (when the retention rules allow it); records at
or above it never do. A partition without a mark has nothing archived. Pure.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass

from broker.core.logrecords import NewRecord, Record, TopicPartition


@dataclass(frozen=True, slots=True)
class ArchiveMark:
    """Records of `tp` below offset `through` are in the archive file `file`, whose
    manifest has the SHA-256 `manifest_sha256`; written at `at_ms`."""

    tp: TopicPartition
    through: int  # first offset NOT in the archive
    file: str  # the archive file's name, e.g. docbroker-2026-11.zip
    manifest_sha256: str
    at_ms: int


def mark_key(tp: TopicPartition) -> bytes:
    return f"{tp.topic}:{tp.partition}".encode()


def mark_record(topic: str, mark: ArchiveMark) -> NewRecord:
    """The record of `mark` on the `archived` topic (`topic`)."""
    body = asdict(mark)
    body["tp"] = {"topic": mark.tp.topic, "partition": mark.tp.partition}
    return NewRecord(topic, json.dumps(body, sort_keys=True).encode(), key=mark_key(mark.tp))


def parse_mark(record: Record) -> ArchiveMark | None:
    """The mark a record of the `archived` topic holds; None for a tombstone."""
    if record.value is None:
        return None
    body = json.loads(record.value)
    tp = TopicPartition(body["tp"]["topic"], int(body["tp"]["partition"]))
    return ArchiveMark(
        tp, int(body["through"]), body["file"], body["manifest_sha256"], int(body["at_ms"])
    )


def latest_marks(records: Iterable[Record]) -> Mapping[TopicPartition, ArchiveMark]:
    """Each partition's latest mark, from the `archived` topic read in order. A mark
    never moves back: a lower `through` than one already seen is ignored."""
    marks: dict[TopicPartition, ArchiveMark] = {}
    for record in records:
        mark = parse_mark(record)
        if mark is None:
            continue
        seen = marks.get(mark.tp)
        if seen is None or mark.through >= seen.through:
            marks[mark.tp] = mark
    return marks
