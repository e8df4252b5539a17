"""The search of the document view: a DocumentQuery over a store fed with the events
the pipeline writes (tests.documents_kit), and the query value itself."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from broker.core.errors import BadRequest
from broker.core.logrecords import TopicPartition
from broker.core.receipts import ReceiptKind
from broker.views.document_query import DocumentQuery, decode_cursor, parse_when
from broker.views.documents import DocumentsStore
from tests.documents_kit import NOI_VU, PROVINCE, T0, UNKNOWN, UPSTREAM, VP, Trail
from tests.edxml_samples import status
from tests.processing_kit import TOPICS, directory
from tests.search_kit import numbered
from tests.unit.test_documents_store import read_back

DIRECTORY = directory()
COMMUNE = "000.20.41.H35"  # H35.105.03386


def resolve(code: str) -> str | None:
    agency = DIRECTORY.find(code)
    return agency.code if agency else None


def doc_id(sender: str, code: str) -> str:
    return f"{sender},2026/11/24,{code}"


def province_trail() -> Trail:
    """Three documents of the province, one of the department VP, statuses, receipts."""
    trail = Trail()
    trail.submit(numbered("345", "SCT-VP", recipients=(VP, NOI_VU)), at_ms=T0, message_id="m1")
    trail.submit(
        numbered("346", "SCT-VP", recipients=(VP, UNKNOWN), subject="Báo cáo tháng"),
        at_ms=T0 + 1000,
        message_id="m2",
    )
    trail.submit(
        numbered("12", "UBND-VP", recipients=(UPSTREAM,)), at_ms=T0 + 2000, message_id="m3"
    )
    trail.submit(
        numbered("7", "QĐ-SNV", sender=VP, recipients=(COMMUNE,)),
        at_ms=T0 + 3000,
        message_id="m4",
        chain="inbound:1",
    )
    first = doc_id(PROVINCE, "345/SCT-VP")
    for kind, at_ms in ((ReceiptKind.FETCHED, T0 + 10), (ReceiptKind.ACKNOWLEDGED, T0 + 20)):
        trail.receipt(kind, at_ms=at_ms, recipient=VP, message_id="m1", document_id=first)
    trail.submit(status(sender=VP, document_id=first, code="03"), at_ms=T0 + 30, message_id="s1")
    trail.submit(status(sender=VP, document_id=first, code="06"), at_ms=T0 + 40, message_id="s2")
    return trail


@pytest.fixture
def store(tmp_path: Path) -> Iterator[DocumentsStore]:
    s = DocumentsStore(tmp_path / "documents.sqlite", TOPICS.events)
    s.apply(read_back(province_trail().records), resolve)
    yield s
    s.close()


def found(store: DocumentsStore, **query: object) -> list[tuple[str, str]]:
    """(sender, DocumentId) of every item found, newest first."""
    page = store.find(DocumentQuery(**query), resolve)  # type: ignore[arg-type]
    return [(i["sender"], i["document_id"]) for i in page.items]


def codes(store: DocumentsStore, **query: object) -> list[str]:
    page = store.find(DocumentQuery(**query), resolve)  # type: ignore[arg-type]
    return [i["code"] for i in page.items]


class TestFilters:
    def test_number_notation_exactly_whatever_the_case_and_spaces(
        self, store: DocumentsStore
    ) -> None:
        assert codes(store, code="345/SCT-VP") == ["345/SCT-VP"]
        assert codes(store, code=" 345 / sct-vp ") == ["345/SCT-VP"]
        assert codes(store, code="345/SCT") == []
        assert codes(store, code="7/qđ-snv") == ["7/QĐ-SNV"]

    def test_number_notation_by_prefix(self, store: DocumentsStore) -> None:
        assert codes(store, code="34*") == ["346/SCT-VP", "345/SCT-VP"]
        assert codes(store, code="1*") == ["12/UBND-VP"]

    def test_document_id(self, store: DocumentsStore) -> None:
        first = doc_id(PROVINCE, "345/SCT-VP")
        assert found(store, document_id=first, kind="document") == [(PROVINCE, first)]
        assert found(store, document_id=first) == [(VP, first), (PROVINCE, first)]

    def test_sender_by_either_code(self, store: DocumentsStore) -> None:
        by_vp = [(VP, doc_id(VP, "7/QĐ-SNV")), (VP, doc_id(PROVINCE, "345/SCT-VP"))]
        assert found(store, sender=VP) == by_vp
        assert found(store, sender="H35.S01") == by_vp
        assert len(found(store, sender="H35", kind="document")) == 3

    def test_recipient_by_either_code(self, store: DocumentsStore) -> None:
        to_vp = ["346/SCT-VP", "345/SCT-VP"]
        assert codes(store, recipient="H35.S01", kind="document") == to_vp
        assert codes(store, recipient=VP, kind="document") == to_vp
        assert codes(store, recipient=UNKNOWN) == ["346/SCT-VP"]  # refused: as requested
        assert codes(store, recipient="G22") == ["12/UBND-VP"]

    def test_accepted_time_range(self, store: DocumentsStore) -> None:
        assert codes(store, since_ms=T0 + 1000, until_ms=T0 + 3000) == [
            "12/UBND-VP",
            "346/SCT-VP",
        ]
        assert codes(store, until_ms=T0 + 1) == ["345/SCT-VP"]

    def test_a_status_any_recipient_reached_even_if_it_went_further(
        self, store: DocumentsStore
    ) -> None:
        """VP answered 03 then 06: the document reached both; 02 is docbroker's
        refusal of the unknown recipient."""
        assert codes(store, status="06", kind="document") == ["345/SCT-VP"]
        assert codes(store, status="03", kind="document") == ["345/SCT-VP"]
        assert codes(store, status="01", kind="document") == ["345/SCT-VP"]
        assert codes(store, status="02", kind="document") == ["346/SCT-VP"]
        assert codes(store, status="05") == []

    def test_the_state_a_recipient_is_in_now(self, store: DocumentsStore) -> None:
        assert codes(store, status="acknowledged", kind="document") == ["345/SCT-VP"]
        assert codes(store, status="refused") == ["346/SCT-VP"]
        assert codes(store, status="routed", kind="document") == [
            "7/QĐ-SNV",
            "12/UBND-VP",
            "346/SCT-VP",
            "345/SCT-VP",  # NOI_VU has not fetched it
        ]
        assert codes(store, status="delivered") == []

    def test_kind(self, store: DocumentsStore) -> None:
        (item,) = store.find(DocumentQuery(kind="status"), resolve).items
        assert item["sender"] == VP and item["document_id"] == doc_id(PROVINCE, "345/SCT-VP")
        assert [r["latest_status"]["code"] for r in item["recipients"]] == ["06"]
        assert len(found(store, kind="document")) == 4

    def test_filters_combine(self, store: DocumentsStore) -> None:
        assert codes(store, code="34*", recipient=UNKNOWN) == ["346/SCT-VP"]
        assert codes(store, code="34*", status="06", sender="H35") == ["345/SCT-VP"]


class TestItems:
    def test_an_item_says_what_and_where(self, store: DocumentsStore) -> None:
        (item,) = store.find(DocumentQuery(code="345/SCT-VP"), resolve).items
        assert item["subject"] == "V/v kết nối, liên thông phần mềm quản lý văn bản"
        assert item["kind"] == "document" and item["accepted_at"].startswith("2027-01-15T08")
        assert [(r["agency"], r["requested"], r["state"]) for r in item["recipients"]] == [
            ("H35.S01", VP, "acknowledged"),
            ("H35.S02", NOI_VU, "routed"),
        ]
        assert item["recipients"][0]["latest_status"]["code"] == "06"

    def test_the_state_is_kept_current_as_events_arrive(self, tmp_path: Path) -> None:
        trail = Trail()
        store = DocumentsStore(tmp_path / "d.sqlite", TOPICS.events)
        try:
            trail.submit(numbered("1", "A", recipients=(VP,)), at_ms=T0, message_id="m1")
            store.apply(read_back(trail.records), resolve)
            assert codes(store, status="routed") == ["1/A"]
            before = len(trail.bodies())
            trail.receipt(
                ReceiptKind.FETCHED,
                at_ms=T0 + 5,
                recipient=VP,
                message_id="m1",
                document_id=doc_id(PROVINCE, "1/A"),
            )
            store.apply(read_back(trail.records[before:], first_offset=before), resolve)
            assert codes(store, status="routed") == []
            assert codes(store, status="delivered") == ["1/A"]
        finally:
            store.close()


class TestVisibility:
    def test_an_agency_sees_what_it_sent_and_what_it_received(self, store: DocumentsStore) -> None:
        vp = ("H35.S01", VP)
        assert codes(store, visible_to=vp, kind="document") == [
            "7/QĐ-SNV",  # sent
            "346/SCT-VP",  # received
            "345/SCT-VP",  # received
        ]
        assert codes(store, visible_to=("H35.S02", NOI_VU), kind="document") == ["345/SCT-VP"]
        assert codes(store, visible_to=("H35.105", "000.00.41.H35")) == []

    def test_a_recipient_sees_its_own_state_only(self, store: DocumentsStore) -> None:
        query = DocumentQuery(code="345/SCT-VP", visible_to=("H35.S02", NOI_VU))
        (item,) = store.find(query, resolve).items
        assert [r["agency"] for r in item["recipients"]] == ["H35.S02"]
        sender = DocumentQuery(code="345/SCT-VP", visible_to=("H35", PROVINCE))
        (item,) = store.find(sender, resolve).items
        assert [r["agency"] for r in item["recipients"]] == ["H35.S01", "H35.S02"]

    def test_a_filter_cannot_widen_what_an_agency_sees(self, store: DocumentsStore) -> None:
        noi_vu = ("H35.S02", NOI_VU)
        assert codes(store, visible_to=noi_vu, code="346/SCT-VP") == []
        assert codes(store, visible_to=noi_vu, sender=VP) == []


class TestPaging:
    def test_every_item_once_newest_first(self, store: DocumentsStore) -> None:
        everything = found(store)
        assert len(everything) == 5
        seen: list[tuple[str, str]] = []
        cursor = None
        for _ in range(10):
            page = store.find(DocumentQuery(limit=2, cursor=cursor), resolve)
            seen += [(i["sender"], i["document_id"]) for i in page.items]
            cursor = page.next_cursor
            if cursor is None:
                break
        assert seen == everything

    def test_documents_arriving_between_pages_are_not_repeated(self, tmp_path: Path) -> None:
        trail = Trail()
        store = DocumentsStore(tmp_path / "d.sqlite", TOPICS.events)
        try:
            for n in range(4):
                trail.submit(numbered(str(n), "X"), at_ms=T0 + n, message_id=f"m{n}")
            store.apply(read_back(trail.records), resolve)
            first = store.find(DocumentQuery(limit=2), resolve)
            before = len(trail.bodies())
            trail.submit(numbered("9", "X"), at_ms=T0 + 9, message_id="m9")
            store.apply(read_back(trail.records[before:], first_offset=before), resolve)
            second = store.find(DocumentQuery(limit=2, cursor=first.next_cursor), resolve)
            got = [i["code"] for i in (*first.items, *second.items)]
            assert got == ["3/X", "2/X", "1/X", "0/X"] and second.next_cursor is None
        finally:
            store.close()


class TestSharedFile:
    def test_two_processes_applying_the_same_records_agree(self, tmp_path: Path) -> None:
        """The daemon and a CLI may apply the same records to one file, in any order:
        the index is the same and a stored position never goes back."""
        records = read_back(province_trail().records)
        path = tmp_path / "documents.sqlite"
        daemon, cli = (DocumentsStore(path, TOPICS.events) for _ in range(2))
        try:
            cli.apply(records, resolve)
            want = cli.find(DocumentQuery(), resolve)
            assert daemon.apply(records[:3], resolve) == 0
            assert daemon.positions() == {TopicPartition(TOPICS.events, 0): len(records)}
            assert daemon.apply(records, resolve) == 0
            assert daemon.find(DocumentQuery(), resolve) == want
        finally:
            daemon.close()
            cli.close()


class TestQuery:
    @pytest.mark.parametrize(
        ("fields", "match"),
        [
            ({"limit": 0}, "limit"),
            ({"limit": 501}, "limit"),
            ({"status": "07"}, "status"),
            ({"status": "read"}, "status"),
            ({"kind": "letter"}, "kind"),
            ({"code": "  "}, "code"),
            ({"code": "*"}, "code"),
            ({"sender": "x" * 256}, "sender"),
            ({"since_ms": 5, "until_ms": 5}, "before"),
            ({"cursor": "not-a-cursor"}, "cursor"),
            ({"cursor": "WzEsMl0"}, "cursor"),  # [1,2]: not three fields
            ({"visible_to": ()}, "visible_to"),
        ],
    )
    def test_a_bad_value_is_refused_when_made(self, fields: dict, match: str) -> None:
        with pytest.raises(BadRequest, match=match):
            DocumentQuery(**fields)

    def test_the_cursor_carries_the_last_key(self, store: DocumentsStore) -> None:
        page = store.find(DocumentQuery(limit=1), resolve)
        last = page.items[0]
        assert page.next_cursor is not None
        assert decode_cursor(page.next_cursor) == (T0 + 3000, last["sender"], last["document_id"])

    def test_dates_and_times(self) -> None:
        day = 1_795_478_400_000  # 2026-11-24T00:00Z
        assert parse_when("2026-11-24") == day
        assert parse_when("2026-11-24", end=True) == day + 86_400_000
        assert parse_when("2026-11-24T07:00:00+07:00") == day
        assert parse_when("2026-11-24T00:00:00") == day
        with pytest.raises(BadRequest, match="not a date"):
            parse_when("24/11/2026")
