"""Archive marks: written and read back, the latest per partition, never moving back."""

from __future__ import annotations

from broker.core.archived import ArchiveMark, latest_marks, mark_record, parse_mark
from broker.core.logrecords import NewRecord, Record, TopicPartition

TP = TopicPartition("docbroker.mailbox", 2)


def read_back(new: NewRecord, offset: int = 0) -> Record:
    return Record(new.topic, 0, offset, new.key, new.value, (), 0)


def test_a_mark_round_trips_under_its_partition_key() -> None:
    mark = ArchiveMark(TP, 120, "docbroker-2026-11.zip", "ab" * 32, 1_764_547_200_000)
    record = mark_record("docbroker.archived", mark)
    assert record.key == b"docbroker.mailbox:2"
    assert parse_mark(read_back(record)) == mark


def test_the_latest_mark_wins_and_never_moves_back() -> None:
    marks = [ArchiveMark(TP, t, f"f{t}", "00" * 32, t) for t in (10, 50, 30)]
    records = [read_back(mark_record("a", m), i) for i, m in enumerate(marks)]
    tombstone = Record("a", 0, 9, b"docbroker.mailbox:2", None, (), 0)
    assert latest_marks([*records, tombstone])[TP].through == 50
    assert latest_marks([]) == {}
