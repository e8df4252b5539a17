"""The pipeline step for the national axis: what goes up (one record per package with
every external recipient), what comes down (taken once per axis docId, for this
province's agencies only), and the axis's receipts (sent, or failed with a 02)."""

from __future__ import annotations

import json
from pathlib import Path

from broker.core.events import EventType
from broker.core.logrecords import Record
from broker.core.receipts import Receipt, ReceiptKind
from broker.edxml.model import Kind, StatusCode
from broker.pipeline.intake import SOURCE_AXIS, Submission, inbound_record
from broker.views.documents import DocumentsStore
from broker.views.mailbox import MailboxStore
from tests.documents_kit import DOC_ID, T0, Trail
from tests.edxml_samples import document, status
from tests.processing_kit import (
    NOW,
    TOPICS,
    VALIDATOR,
    as_record,
    ctx,
    headers,
    on,
    problems_of,
    processor,
)  # fmt: skip

PROVINCE, VP = "000.00.00.H35", "000.00.01.H35"
OTHER, OTHER_2 = "000.00.00.G22", "000.00.00.H36"  # external agencies of the directory
ELSEWHERE = "000.00.07.H41"  # an agency of another province this directory does not know


def types(outcome) -> list[str]:
    return [str(e.type) for e in outcome.events]


def from_axis(data: bytes, axis_doc_id: str = "axis-1", message_id: str = "m-axis") -> Record:
    sub = Submission(data, message_id, "t" * 32, NOW - 5, SOURCE_AXIS, axis_doc_id=axis_doc_id)
    return as_record(inbound_record(sub, VALIDATOR.check(data), TOPICS))


def consumed(data: bytes) -> Record:
    sub = Submission(data, "m-1", "t" * 32, NOW - 5, "http", PROVINCE)
    return as_record(inbound_record(sub, VALIDATOR.check(data), TOPICS))


class TestUp:
    def test_every_external_recipient_travels_in_one_record_keyed_by_sender(self) -> None:
        out = processor().process(consumed(document(recipients=(VP, OTHER, OTHER_2))), ctx())
        (up,) = on(out.records, TOPICS.upstream)
        h = headers(up)
        assert up.key == PROVINCE.encode()
        assert json.loads(h["upstream-to"]) == ["G22", "H36"]
        assert json.loads(h["upstream-requested"]) == [OTHER, OTHER_2]
        routed = [(e.recipient, e.details["to"]) for e in out.events if e.type is EventType.ROUTED]
        assert routed == [("H35.S01", "mailbox"), ("G22", "upstream"), ("H36", "upstream")]

    def test_a_status_for_an_external_agency_goes_up(self) -> None:
        data = status(sender=VP, answers=OTHER, document_id=f"{OTHER},2026/11/20,1/BC")
        sub = Submission(data, "m-s", "t" * 32, NOW - 5, "http", VP)
        out = processor().process(
            as_record(inbound_record(sub, VALIDATOR.check(data), TOPICS)), ctx()
        )
        (up,) = on(out.records, TOPICS.upstream)
        assert json.loads(headers(up)["upstream-to"]) == ["G22"] and up.key == VP.encode()


class TestDown:
    def test_only_this_provinces_recipients_receive(self) -> None:
        data = document(
            sender=OTHER,
            recipients=(VP, OTHER_2, ELSEWHERE),
            document_id=f"{OTHER},2026/11/20,7/BC",
        )
        out = processor().process(from_axis(data), ctx())
        assert out.outcome == "routed" and out.deliveries == 1
        assert [m.key for m in on(out.records, TOPICS.mailbox)] == [b"H35.S01"]
        assert on(out.records, TOPICS.upstream) == []  # never sent back up
        assert types(out) == ["accepted", "routed"]
        assert set(out.dedup) == {("G22", f"{OTHER},2026/11/20,7/BC"), ("@axis", "axis-1")}

    def test_an_axis_docid_is_taken_once(self) -> None:
        data = document(sender=OTHER, recipients=(VP,), document_id=f"{OTHER},2026/11/20,8/BC")
        seen = {("@axis", "axis-1"): NOW - 1000}
        out = processor().process(from_axis(data), ctx(seen))
        assert out.outcome == "duplicate" and out.records == () and out.events == ()

    def test_a_package_from_the_axis_naming_a_local_sender_is_refused_quietly(self) -> None:
        data = document(sender=PROVINCE, recipients=(VP,))
        out = processor().process(from_axis(data), ctx())
        assert out.outcome == "rejected" and out.codes == ("sender-mismatch",)
        assert on(out.records, TOPICS.mailbox) == [] and on(out.records, TOPICS.upstream) == []
        assert ("@axis", "axis-1") in out.dedup

    def test_none_of_ours_is_refused_and_the_sender_hears_through_the_axis(self) -> None:
        data = document(
            sender=OTHER, recipients=(ELSEWHERE,), document_id=f"{OTHER},2026/11/20,9/BC"
        )
        out = processor().process(from_axis(data), ctx())
        (dead,) = on(out.records, TOPICS.rejected)
        assert problems_of(dead) == ["unknown-recipient"]
        (up,) = on(out.records, TOPICS.upstream)
        env = VALIDATOR.check(up.value)
        assert env.kind is Kind.STATUS and env.status_code is StatusCode.REFUSED
        assert json.loads(headers(up)["upstream-to"]) == ["G22"]


class TestAxisReceipts:
    def receipt(self, kind: ReceiptKind, envelope_kind: str = "document") -> Record:
        r = Receipt(
            kind,
            NOW,
            "m-1",
            f"{PROVINCE},2026/11/20,12/UBND-VP",
            PROVINCE,
            "G22",
            "t" * 32,
            envelope_kind,
            "12/UBND-VP",
            "2026/11/20",
            "ab" * 32,
            axis_doc_id="axis-9",
            error_code="AgencyNotFound",
            reason="no such agency",
        )
        return as_record(r.to_record(TOPICS.receipts))

    def test_sent_upstream_is_an_event(self) -> None:
        out = processor().process(self.receipt(ReceiptKind.SENT_UPSTREAM), ctx())
        (event,) = out.events
        assert event.type is EventType.SENT_UPSTREAM and event.recipient == "G22"
        assert event.details == {"axis_doc_id": "axis-9", "kind": "document"}
        assert out.records == ()

    def test_taken_by_the_recipients_province_is_delivered(self) -> None:
        out = processor().process(self.receipt(ReceiptKind.UPSTREAM_TAKEN), ctx())
        (event,) = out.events
        assert event.type is EventType.DELIVERED and event.recipient == "G22"

    def test_a_failure_refuses_the_recipient_and_the_sender_gets_02(self) -> None:
        out = processor().process(self.receipt(ReceiptKind.UPSTREAM_FAILED), ctx())
        assert types(out) == ["recipient-refused", "status-emitted"]
        refused = out.events[0]
        assert refused.details["code"] == "upstream-failed"
        assert refused.details["axis_error"] == "AgencyNotFound"
        (mail,) = on(out.records, TOPICS.mailbox)
        env = VALIDATOR.check(mail.value)
        assert mail.key == b"H35" and env.status_code is StatusCode.REFUSED
        assert "no such agency" in (env.status_description or "")

    def test_a_failed_status_is_only_recorded(self) -> None:
        out = processor().process(self.receipt(ReceiptKind.UPSTREAM_FAILED, "status"), ctx())
        assert types(out) == ["recipient-refused"] and out.records == ()


def test_the_documents_store_knows_what_the_axis_took_until_its_recipient_took_it(
    tmp_path: Path,
) -> None:
    trail = Trail()
    trail.submit(document(recipients=(VP, OTHER)), at_ms=T0, message_id="m-up")
    trail.receipt(
        ReceiptKind.SENT_UPSTREAM, at_ms=T0 + 5, recipient="G22", message_id="m-up",
        axis_doc_id="ax-1",
    )  # fmt: skip
    store = DocumentsStore(tmp_path / "documents.sqlite", TOPICS.events)
    try:
        store.apply([as_record(r, i) for i, r in enumerate(trail.records)])
        (copy,) = store.upstream_undelivered("ax-1")
        assert (copy["recipient"], copy["message_id"], copy["kind"]) == ("G22", "m-up", "document")
        done = len(trail.records)
        trail.receipt(ReceiptKind.UPSTREAM_TAKEN, at_ms=T0 + 9, recipient="G22", message_id="m-up")
        store.apply([as_record(r, done + i) for i, r in enumerate(trail.records[done:])])
        assert store.upstream_undelivered("ax-1") == []
        state = store.state(DOC_ID)
        assert state is not None
        g22 = next(r for r in state.recipients if r.agency == "G22")
        assert (g22.route, g22.sent_upstream_at_ms, g22.delivered_at_ms) == (
            "upstream",
            T0 + 5,
            T0 + 9,
        )
    finally:
        store.close()


def test_the_mailbox_view_ignores_the_axis_receipts(tmp_path: Path) -> None:
    store = MailboxStore(tmp_path / "mailbox.sqlite", TOPICS.mailbox, TOPICS.receipts)
    try:
        for offset, kind in enumerate(
            (ReceiptKind.SENT_UPSTREAM, ReceiptKind.UPSTREAM_FAILED, ReceiptKind.UPSTREAM_TAKEN)
        ):
            r = Receipt(kind, NOW, f"m-{offset}", "D,1", PROVINCE, "G22")
            store.apply([as_record(r.to_record(TOPICS.receipts), offset)])
        early = store._conn.execute("SELECT COUNT(*) FROM early_receipts").fetchone()[0]
        assert early == 0, "receipts for recipients outside the province are not kept"
    finally:
        store.close()
