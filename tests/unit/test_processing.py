"""The pipeline step: a record and a snapshot (directory, dedup index) in, outputs out."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from broker.core.events import EventType
from broker.core.logrecords import Record
from broker.core.problems import Problem
from broker.core.receipts import Receipt, ReceiptKind
from broker.core.records import FirstSeen, new_message_id
from broker.directory.model import Agency
from broker.edxml.model import Kind, StatusCode
from broker.pipeline.batch import MESSAGE_ID_MAX, status_message_id
from broker.pipeline.intake import Submission, door_refusal_record, inbound_record
from broker.pipeline.processing import InboundProcessor
from broker.views.mailbox import MailboxStore
from tests.edxml_samples import document, full_document, hop, status
from tests.forwarded import assert_forwarded
from tests.processing_kit import (
    NOW,
    TOPICS,
    VALIDATOR,
    as_record,
    consumed,
    ctx,
    directory,
    headers,
    on,
    problems_of,
    processor,
    with_strict,
    with_suspended,
)  # fmt: skip

PROVINCE, VP, NOI_VU = "000.00.00.H35", "000.00.01.H35", "000.00.02.H35"
COMMUNE = "000.20.41.H35"  # Phường Quyết Thắng, under Thành phố Lai Châu (2024 structure)
UNKNOWN = "999.99.99.X99"


def types(outcome) -> list[str]:
    return [str(e.type) for e in outcome.events]


class TestRouting:
    def test_local_recipients_get_the_stamped_signed_envelope(self) -> None:
        data = document(recipients=(VP, COMMUNE))
        out = processor().process(consumed(data), ctx())
        assert out.outcome == "routed" and out.deliveries == 2
        mail = on(out.records, TOPICS.mailbox)
        assert [m.key for m in mail] == [b"H35.S01", b"H35.105.03386"]  # directory codes
        for m in mail:
            assert_forwarded(data, m.value, sha256=headers(m)["sha256"])
            assert headers(m)["requested-as"] in (VP, COMMUNE)
        assert types(out) == ["accepted", "routed", "routed"]

    def test_either_code_form_finds_the_agency(self) -> None:
        out = processor().process(consumed(document(recipients=("H35.S02",))), ctx())
        assert [m.key for m in on(out.records, TOPICS.mailbox)] == [b"H35.S02"]

    def test_an_agency_outside_the_province_goes_upstream(self) -> None:
        out = processor().process(consumed(document(recipients=(VP, "000.00.00.G22"))), ctx())
        (up,) = on(out.records, TOPICS.upstream)
        assert up.key == PROVINCE.encode() and headers(up)["upstream-to"] == '["G22"]'
        routed = [e.details["to"] for e in out.events if e.type is EventType.ROUTED]
        assert routed == ["mailbox", "upstream"]

    def test_a_bad_recipient_does_not_stop_the_others_and_the_sender_hears(self) -> None:
        data = document(recipients=(VP, "999.99.99.X99", NOI_VU))
        out = processor().process(consumed(data), ctx())
        mail = on(out.records, TOPICS.mailbox)
        assert [m.key for m in mail] == [b"H35.S01", b"H35", b"H35.S02"]
        status = mail[1]
        assert headers(status)["kind"] == "status"
        env = VALIDATOR.check(status.value)
        assert env.status_code is StatusCode.REFUSED
        assert env.response_for[0].document_id == VALIDATOR.check(data).document_id
        assert "999.99.99.X99 is not in the agency directory" in env.status_description
        assert types(out) == ["accepted", "routed", "recipient-refused", "status-emitted", "routed"]

    def test_suspended_recipient_and_the_sender_itself_are_refused(self) -> None:
        out = processor().process(
            consumed(document(recipients=(VP, PROVINCE, NOI_VU))), ctx(d=with_suspended(VP))
        )
        refused = {e.details["code"] for e in out.events if e.type is EventType.RECIPIENT_REFUSED}
        assert refused == {"recipient-suspended", "recipient-is-sender"}
        keys = [m.key for m in on(out.records, TOPICS.mailbox)]
        assert keys == [b"H35", b"H35", b"H35.S02"]  # two 02s, and the document

    def test_no_recipient_that_can_be_served_refuses_the_submission(self) -> None:
        """Every recipient unknown (or suspended, or the sender): not taken in but a dead
        letter, replayable once the directory knows the agency, and one 02; its
        (sender, DocumentId) stays free, so the sender may also send it again."""
        data = document(recipients=(UNKNOWN, PROVINCE))
        out = processor().process(consumed(data), ctx())
        assert out.outcome == "rejected" and out.dedup == ()
        (dead,) = on(out.records, TOPICS.rejected)
        assert problems_of(dead) == ["unknown-recipient", "recipient-is-sender"]
        (status_02,) = on(out.records, TOPICS.mailbox)
        assert VALIDATOR.check(status_02.value).status_code is StatusCode.REFUSED
        assert types(out) == ["refused", "status-emitted"]

    def test_each_refused_recipient_gets_its_own_02(self, tmp_path: Path) -> None:
        """The sender's mailbox is unique on (recipient, message id): one id for every
        02 of a submission kept only the first. Each is kept now, and its event says
        which recipient it is about."""
        message_id = new_message_id(NOW)
        data = document(recipients=(VP, UNKNOWN, PROVINCE, NOI_VU))
        out = processor().process(consumed(data, message_id=message_id), ctx(d=with_suspended(VP)))
        statuses = [m for m in on(out.records, TOPICS.mailbox) if headers(m)["kind"] == "status"]
        ids = [headers(m)["message-id"] for m in statuses]
        assert len(ids) == len(set(ids)) == 3
        assert all(i.startswith(f"{message_id}.02.") and len(i) <= MESSAGE_ID_MAX for i in ids)
        emitted = [e for e in out.events if e.type is EventType.STATUS_EMITTED]
        assert [e.message_id for e in emitted] == ids
        assert [e.details["about"] for e in emitted] == [VP, UNKNOWN, PROVINCE]
        assert [e.recipient for e in emitted] == ["H35"] * 3

        store = MailboxStore(tmp_path / "mailbox.sqlite", TOPICS.mailbox, TOPICS.receipts)
        try:
            store.apply([as_record(m, offset) for offset, m in enumerate(statuses)])
            kept = store.list("H35", after=0, limit=10, include_acked=True)
        finally:
            store.close()
        assert [d.message_id for d in kept] == ids

    def test_a_status_goes_to_the_agency_it_answers(self) -> None:
        out = processor().process(consumed(status(sender=VP, answers=PROVINCE)), ctx())
        (mail,) = on(out.records, TOPICS.mailbox)
        assert mail.key == b"H35" and headers(mail)["kind"] == "status"

    def test_an_accepted_status_carries_its_description(self) -> None:
        data = status(sender=VP, answers=PROVINCE).replace(
            b"</edXML:StatusCode>",
            "</edXML:StatusCode><edXML:Description>Đã tiếp nhận</edXML:Description>".encode(),
        )
        assert VALIDATOR.check(data).status_description == "Đã tiếp nhận"
        out = processor().process(consumed(data), ctx())
        accepted = out.events[0]
        assert accepted.type is EventType.ACCEPTED
        assert accepted.details["status_description"] == "Đã tiếp nhận"
        doc = processor().process(consumed(document()), ctx())
        assert doc.events[0].details["status_description"] is None


class TestStatusMessageIds:
    def test_readable_when_it_fits(self) -> None:
        m = new_message_id(NOW)
        assert status_message_id(m, StatusCode.RECEIVED, "H35") == f"{m}.01.H35"
        assert status_message_id(m, StatusCode.REFUSED, "H35", VP) == f"{m}.02.H35.{VP}"

    def test_a_code_outside_the_alphabet_or_too_long_is_hashed(self) -> None:
        m = new_message_id(NOW)
        odd = [f"{m}-x", "bad code/1", "a" * 40, "a" * 41, "-lead"]
        ids = [status_message_id(m, StatusCode.REFUSED, "H35.105.03386", c) for c in odd]
        assert len(set(ids)) == len(odd)
        for i in ids:
            assert i.startswith(f"{m}.02.") and len(i) <= MESSAGE_ID_MAX
            assert re.fullmatch(r"[0-9A-Za-z][0-9A-Za-z._-]*", i)


class TestRefusals:
    def test_unknown_and_suspended_senders(self) -> None:
        out = processor().process(consumed(document(sender="123.45.67.X99")), ctx())
        assert out.codes == ("unknown-sender",)
        assert on(out.records, TOPICS.mailbox) == []
        out = processor().process(consumed(document()), ctx(d=with_suspended(PROVINCE)))
        assert out.codes == ("sender-suspended",)

    def test_the_sender_must_be_the_authenticated_agency(self) -> None:
        ok = processor().process(consumed(document(), authenticated="H35"), ctx())
        assert ok.outcome == "routed"
        out = processor().process(consumed(document(), authenticated="H35.S01"), ctx())
        assert out.codes == ("sender-mismatch",)
        assert on(out.records, TOPICS.mailbox) == [], "no status to the agency impersonated"

    def test_duplicate_document_is_refused_with_a_status(self) -> None:
        data = document()
        doc_id = VALIDATOR.check(data).document_id
        seen = {("H35", doc_id): NOW - 1000}
        out = processor().process(consumed(data), ctx(seen))
        assert out.codes == ("duplicate-document",)
        (dead,) = on(out.records, TOPICS.rejected)
        assert problems_of(dead) == ["duplicate-document"]
        (status,) = on(out.records, TOPICS.mailbox)
        assert "already sent" in VALIDATOR.check(status.value).status_description
        emitted = out.events[-1]
        assert emitted.type is EventType.STATUS_EMITTED and emitted.message_id == "m-1.02.H35"
        assert "about" not in emitted.details  # about the whole submission

    def test_duplicates_inside_one_batch_and_after_the_window(self) -> None:
        """The same bytes twice in one batch (two instances took a resend in): the second
        is recorded as a duplicate, nothing else; no 02 about a delivered document."""
        data = document()
        batch = [consumed(data, offset=1, message_id="a"), consumed(data, offset=2, message_id="b")]
        first, second = processor().process_batch(batch, ctx())
        assert first.outcome == "routed" and first.dedup
        assert second.outcome == "duplicate" and second.records == () and second.codes == ()
        (event,) = second.events
        assert event.type is EventType.DUPLICATE and event.details == {"first_message_id": "a"}
        doc_id = VALIDATOR.check(data).document_id
        old = {("H35", doc_id): NOW - 31 * 86400 * 1000}
        assert processor().process(consumed(data), ctx(old)).outcome == "routed"

    def test_other_bytes_under_a_used_document_id_are_refused(self) -> None:
        data = document()
        other = document(subject="Another document, the same DocumentId")
        batch = [
            consumed(data, offset=1, message_id="a"),
            consumed(other, offset=2, message_id="b"),
        ]
        first, second = processor().process_batch(batch, ctx())
        assert first.outcome == "routed"
        assert second.codes == ("duplicate-document",)
        (status,) = on(second.records, TOPICS.mailbox)
        assert "other content" in VALIDATOR.check(status.value).status_description

    def test_its_own_claim_is_not_a_duplicate(self) -> None:
        """The door claims (sender, DocumentId) with the submission: processing that very
        submission (again, after a crash) is not a resend of itself."""
        data = document()
        doc_id = VALIDATOR.check(data).document_id
        claim = {("H35", doc_id): FirstSeen(NOW - 5, "m-1", "anything")}
        assert processor().process(consumed(data), ctx(claim)).outcome == "routed"

    def test_updates_are_not_duplicates_of_their_document(self) -> None:
        update = document().replace(
            b"</edXML:MessageHeader>",
            b"</edXML:MessageHeader>"
            b"<edXML:TraceHeaderList><edXML:Bussiness><edXML:DocumentId>"
            b"X,1</edXML:DocumentId><edXML:BussinessDocType>2"
            b"</edXML:BussinessDocType></edXML:Bussiness>"
            b"</edXML:TraceHeaderList>",
        )
        doc_id = VALIDATOR.check(update).document_id
        out = processor().process(consumed(update), ctx({("H35", doc_id): NOW - 1}))
        assert out.outcome == "routed" and out.dedup == ()

    def test_a_door_refusal_is_recorded_not_rechecked(self) -> None:
        sub = Submission(b"<broken", "m-9", "t" * 32, NOW, "http")
        rec = door_refusal_record(sub, [Problem("not-well-formed", "no")], TOPICS)
        out = processor().process(as_record(rec), ctx())
        (dead,) = on(out.records, TOPICS.rejected)
        assert headers(dead)["stage"] == "accept" and dead.value == b"<broken"
        assert types(out) == ["refused"]

    def test_a_broken_record_becomes_a_dead_letter(self) -> None:
        rec = Record(TOPICS.inbound, 0, 3, b"X", b"<broken", (("message-id", b"m-2"),), 1)
        out = processor().process(rec, ctx())
        assert out.outcome == "rejected" and out.codes == ("not-well-formed",)
        assert types(out) == ["refused"]

    def test_an_unexpected_failure_is_contained(self, monkeypatch) -> None:
        record = consumed(document())
        broken = processor()
        monkeypatch.setattr(broken.validator, "validate", lambda data: 1 / 0)
        out = broken.process(record, ctx())
        assert out.outcome == "failed" and out.codes == ("internal-error",)


class TestWarnings:
    """An irregular package from a tolerant sender is delivered, its warnings in the
    audit trail; a strict sender's is refused with the warnings as problems."""

    IRREGULAR = full_document(trace=hop("null"), extra_header="<edXML:Vendor>x</edXML:Vendor>")
    CODES = ("unknown-element", "trace-organ-id-missing")  # in document order

    def test_accepted_with_its_warnings_in_the_accepted_event(self) -> None:
        out = processor().process(consumed(self.IRREGULAR), ctx())
        assert out.outcome == "routed" and out.deliveries == 2
        accepted = out.events[0]
        assert accepted.type is EventType.ACCEPTED
        warnings = accepted.details["warnings"]
        assert [w["code"] for w in warnings] == list(self.CODES)
        assert warnings[0]["location"]["path"].endswith("/MessageHeader/Vendor")
        assert warnings[1]["location"]["line"] > warnings[0]["location"]["line"]
        assert out.warnings == self.CODES  # for the metric: each code once
        assert processor().process(consumed(document()), ctx()).events[0].details["warnings"] == []

    def test_each_code_counts_once_per_envelope(self) -> None:
        twice = full_document(trace=hop("null") + hop(""))
        out = processor().process(consumed(twice), ctx())
        assert len(out.events[0].details["warnings"]) == 2
        assert out.warnings == ("trace-organ-id-missing",)

    @pytest.mark.parametrize(
        ("default", "agency", "refused"),
        [
            (False, True, True),
            (True, None, True),
            (True, False, False),
            (False, None, False),
        ],
        ids=["agency-strict", "default-strict", "agency-tolerant", "default-tolerant"],
    )
    def test_the_senders_policy_decides(
        self, default: bool, agency: bool | None, refused: bool
    ) -> None:
        out = processor(strict=default).process(
            consumed(self.IRREGULAR), ctx(d=with_strict(PROVINCE, agency))
        )
        if not refused:
            assert out.outcome == "routed"
            return
        assert out.outcome == "rejected" and out.codes == self.CODES
        (dead,) = on(out.records, TOPICS.rejected)
        assert problems_of(dead) == list(self.CODES)
        (status_02,) = on(out.records, TOPICS.mailbox)  # the sender hears why
        assert "unknown-element" in VALIDATOR.check(status_02.value).status_description
        refusal = out.events[0]
        assert refusal.type is EventType.REFUSED
        located = refusal.details["problems"][0]["location"]
        assert located["path"].endswith("/MessageHeader/Vendor") and located["line"]

    def test_a_strict_senders_regular_package_goes_through(self) -> None:
        out = processor(strict=True).process(consumed(document()), ctx())
        assert out.outcome == "routed"

    def test_real_traffic_from_the_national_axis(self) -> None:
        """What the axis brings down: an odd sender id, a UUID DocumentId, no signature,
        Bussiness first and hops naming nobody. Delivered to this province's agencies."""
        business = (
            "<edXML:Bussiness><edXML:BussinessDocType>0</edXML:BussinessDocType></edXML:Bussiness>"
        )
        data = (
            full_document(trace=business + hop("null") + hop(None))
            .replace(
                b"<edXML:OrganId>000.00.00.H35</edXML:OrganId>",
                b"<edXML:OrganId>vxp.saas.03</edXML:OrganId>",
                1,
            )
            .replace(
                b"000.00.00.H35,2026/11/20,12/UBND-VP", b"6f1c2e9a-3b7d-4f0e-9a51-0c8e2d7b4a13"
            )
        )
        saas = Agency("VXP03", "Hệ thống SaaS", code102="vxp.saas.03", local=False)
        env = VALIDATOR.check(data)
        assert (env.sender_id, env.signatures) == ("vxp.saas.03", ())
        sub = Submission(data, "m-axis", "t" * 32, NOW - 5, "axis", axis_doc_id="ax-1")
        record = as_record(inbound_record(sub, env, TOPICS))
        out = processor().process(record, ctx(d=directory().with_agency(saas)))
        assert out.outcome == "routed", out.codes
        assert [m.key for m in on(out.records, TOPICS.mailbox)] == [b"H35.S01", b"H35.S02"]
        accepted = out.events[0]
        assert accepted.details["sender_signature"]["outcome"] == "absent"
        assert sorted(w["code"] for w in accepted.details["warnings"]) == [
            "element-order",
            "trace-organ-id-missing",
            "trace-organ-id-missing",
        ]


class TestReceipts:
    def receipt(self, kind: ReceiptKind, envelope_kind: str = "document") -> Record:
        r = Receipt(
            kind,
            NOW,
            "m-1",
            "D,1",
            PROVINCE,
            "H35.S01",
            "t" * 32,
            envelope_kind,
            "12/UBND-VP",
            "2026/11/20",
            "ab" * 32,
        )
        return as_record(r.to_record(TOPICS.receipts))

    def test_a_fetch_is_delivered(self) -> None:
        out = processor().process(self.receipt(ReceiptKind.FETCHED), ctx())
        assert types(out) == ["delivered"] and out.records == ()

    def test_acknowledging_a_document_sends_status_01_to_its_sender(self) -> None:
        out = processor().process(self.receipt(ReceiptKind.ACKNOWLEDGED), ctx())
        assert types(out) == ["acknowledged", "status-emitted"]
        emitted = out.events[1]
        assert emitted.message_id == "m-1.01.H35" and emitted.actor == "H35.S01"
        assert "about" not in emitted.details  # the actor is the recipient
        (mail,) = on(out.records, TOPICS.mailbox)
        assert mail.key == b"H35"
        env = VALIDATOR.check(mail.value)
        assert env.kind is Kind.STATUS and env.status_code is StatusCode.RECEIVED
        assert env.sender_id == VP  # from the recipient, in the 102 form
        rf = env.response_for[0]
        assert (rf.organ_id, rf.document_id, rf.code) == (PROVINCE, "D,1", "12/UBND-VP")

    def test_acknowledging_a_status_sends_nothing(self) -> None:
        out = processor().process(self.receipt(ReceiptKind.ACKNOWLEDGED, "status"), ctx())
        assert types(out) == ["acknowledged"] and out.records == ()


def test_processor_is_built_from_values() -> None:
    assert isinstance(processor(), InboundProcessor)
