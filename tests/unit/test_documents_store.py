"""The document view's SQLite store: applying event records, and its queries."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

from broker.core.logrecords import NewRecord, Record, TopicPartition
from broker.views.document_fold import fold_document
from broker.views.documents import SCHEMA_VERSION, DocumentsStore
from tests.documents_kit import DOC_ID, NOI_VU, PROVINCE, T0, VP, Trail
from tests.edxml_samples import document, status
from tests.processing_kit import TOPICS


def read_back(records: Sequence[NewRecord], first_offset: int = 0) -> list[Record]:
    """The event records as a tailer returns them (one partition, in order)."""
    events = [r for r in records if r.topic == TOPICS.events]
    return [
        Record(r.topic, 0, first_offset + i, r.key, r.value, r.headers, T0)
        for i, r in enumerate(events)
    ]


@pytest.fixture
def store(tmp_path: Path) -> Iterator[DocumentsStore]:
    s = DocumentsStore(tmp_path / "documents.sqlite", TOPICS.events)
    yield s
    s.close()


def trail_of_one_document() -> Trail:
    trail = Trail()
    trail.submit(document(recipients=(VP, NOI_VU)), at_ms=T0, message_id="m-doc")
    trail.submit(status(sender=VP, code="03"), at_ms=T0 + 5, message_id="m-st")
    return trail


class TestApply:
    def test_events_come_back_in_order_and_fold_as_the_trail(self, store: DocumentsStore) -> None:
        trail = trail_of_one_document()
        assert store.apply(read_back(trail.records)) == len(trail.bodies())
        assert store.events(DOC_ID) == sorted(
            trail.bodies(), key=lambda e: (e["at_ms"], e["chain"], e["seq"])
        )
        assert store.state(DOC_ID) == fold_document(trail.bodies())
        assert store.positions() == {TopicPartition(TOPICS.events, 0): len(trail.bodies())}

    def test_reapplying_after_a_restart_adds_nothing(
        self, store: DocumentsStore, tmp_path: Path
    ) -> None:
        """A restart may re-read records applied just before a crash: (chain, seq) is
        unique, so no event and no sent document is counted twice."""
        records = read_back(trail_of_one_document().records)
        store.apply(records)
        again = DocumentsStore(tmp_path / "documents.sqlite", TOPICS.events)
        try:
            assert again.apply(records) == 0
            assert len(again.events(DOC_ID)) == len(records)
            assert len(again.sent_by([PROVINCE])) == 1
        finally:
            again.close()

    def test_a_record_that_is_not_an_event_is_skipped(self, store: DocumentsStore) -> None:
        good = read_back(trail_of_one_document().records, first_offset=1)
        bad = Record(TOPICS.events, 0, 0, b"x", b"not json", (), T0)
        half = Record(TOPICS.events, 0, len(good) + 1, b"x", b'{"type": "accepted"}', (), T0)
        assert store.apply([bad, *good, half]) == len(good)
        assert store.positions()[TopicPartition(TOPICS.events, 0)] == len(good) + 2

    def test_an_unknown_document_has_no_state(self, store: DocumentsStore) -> None:
        assert store.state("nothing") is None and store.events("nothing") == []

    def test_another_schema_version_is_rebuilt(self, store: DocumentsStore, tmp_path: Path) -> None:
        store.apply(read_back(trail_of_one_document().records))
        store.close()
        conn = sqlite3.connect(tmp_path / "documents.sqlite")
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
        conn.close()
        reopened = DocumentsStore(tmp_path / "documents.sqlite", TOPICS.events)
        try:
            assert reopened.positions() == {} and reopened.events(DOC_ID) == []
        finally:
            reopened.close()

    def test_an_unreadable_file_is_made_anew(self, tmp_path: Path) -> None:
        """A file that is not SQLite (or a malformed one) is a cache lost, not a crash:
        it is removed and the view starts empty, to be rebuilt from the log."""
        path = tmp_path / "documents.sqlite"
        path.write_bytes(b"not a database, " * 512)
        reopened = DocumentsStore(path, TOPICS.events)
        try:
            assert reopened.positions() == {} and reopened.events(DOC_ID) == []
        finally:
            reopened.close()


class TestSentBy:
    def fill(self, store: DocumentsStore, times: Sequence[int], sender: str = PROVINCE) -> None:
        """Documents from `sender` accepted at these times (a pipeline partition each)."""
        trail = Trail()
        for i, at in enumerate(times):
            data = document(sender=sender, recipients=(VP, NOI_VU), document_id=f"D,{at},{i}")
            trail.submit(data, at_ms=at, message_id=f"m-{sender}-{i}", chain=f"inbound:{sender}")
        store.apply(read_back(trail.records))

    def test_the_senders_documents_newest_first(self, store: DocumentsStore) -> None:
        """Any of the agency's codes; another agency's documents are not listed."""
        self.fill(store, [T0 + 1, T0 + 2])
        self.fill(store, [T0 + 3], sender=VP)
        listed = store.sent_by(["H35", PROVINCE])
        assert [(d["accepted_at"], d["sender"], d["recipients"]) for d in listed] == [
            ("2027-01-15T08:00:00.002+00:00", PROVINCE, 2),
            ("2027-01-15T08:00:00.001+00:00", PROVINCE, 2),
        ]
        assert set(listed[0]) == {
            "document_id",
            "sender",
            "message_id",
            "accepted_at",
            "recipients",
        }
        assert [d["sender"] for d in store.sent_by([VP])] == [VP]
        assert store.sent_by([]) == []

    def test_a_limit_and_a_lower_bound(self, store: DocumentsStore) -> None:
        self.fill(store, [T0 + 1, T0 + 2, T0 + 3, T0 + 4])
        assert [d["message_id"] for d in store.sent_by([PROVINCE], limit=2)] == [
            f"m-{PROVINCE}-3",
            f"m-{PROVINCE}-2",
        ]
        newer = store.sent_by([PROVINCE], after_ms=T0 + 2)
        assert [d["message_id"] for d in newer] == [f"m-{PROVINCE}-3", f"m-{PROVINCE}-2"]

    def test_the_query_uses_the_index(self, store: DocumentsStore) -> None:
        """Listing an agency's documents reads its rows only, not the whole table."""
        plan = store._conn.execute(
            "EXPLAIN QUERY PLAN SELECT * FROM sent WHERE sender IN (?, ?) "
            "AND accepted_at_ms > ? ORDER BY accepted_at_ms DESC LIMIT 5",
            ("a", "b", 0),
        ).fetchall()
        assert any(row[-1].startswith("SEARCH sent USING INDEX sent_by_time") for row in plan)

    def test_statuses_and_refused_submissions_are_not_sent_documents(
        self, store: DocumentsStore
    ) -> None:
        trail = trail_of_one_document()
        trail.submit(document(sender="123.45.67.X99"), at_ms=T0 + 9, message_id="m-bad")
        store.apply(read_back(trail.records))
        codes = [PROVINCE, VP, "123.45.67.X99"]
        assert [d["message_id"] for d in store.sent_by(codes)] == ["m-doc"]
