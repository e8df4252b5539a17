"""The document fold: a document's stored audit events in, its state per recipient out."""

from __future__ import annotations

import json
import random
from typing import Any

from broker.core.receipts import ReceiptKind
from broker.core.records import iso_ms as iso
from broker.views.document_fold import DocumentState, RecipientState, fold_document
from tests.documents_kit import (
    COMMUNE,
    DOC_ID,
    NOI_VU,
    PROVINCE,
    T0,
    UNKNOWN,
    UPSTREAM,
    VP,
    Trail,
    as_written_before_about,
    described_status,
)
from tests.edxml_samples import document, status
from tests.processing_kit import directory, with_suspended


def sent(*recipients: str) -> Trail:
    """The province's document to these recipients, accepted at T0."""
    trail = Trail()
    trail.submit(document(recipients=recipients), at_ms=T0, message_id="m-doc")
    return trail


def state_of(trail: Trail, **kwargs: Any) -> DocumentState:
    state = fold_document(trail.bodies(), **kwargs)
    assert state is not None
    return state


def recipient(state: DocumentState, requested: str) -> RecipientState:
    (found,) = [r for r in state.recipients if r.requested == requested]
    return found


def two_refused() -> Trail:
    """The province's document to VP (suspended), itself, and Nội vụ: two 02s."""
    trail = Trail()
    data = document(recipients=(VP, PROVINCE, NOI_VU))
    trail.submit(data, at_ms=T0, message_id="m-doc", d=with_suspended(VP))
    assert trail.types().count("status-emitted") == 2
    return trail


def resolve(code: str) -> str | None:
    agency = directory().find(code)
    return agency.code if agency else None


class TestRouting:
    def test_every_recipient_with_its_route_in_the_documents_order(self) -> None:
        """Mailbox, upstream and refused recipients side by side; one bad recipient
        leaves the others routed."""
        state = state_of(sent(VP, UNKNOWN, NOI_VU, UPSTREAM))
        assert (state.document_id, state.sender, state.kind) == (DOC_ID, PROVINCE, "document")
        assert state.message_ids == ("m-doc",) and state.accepted_at_ms == T0
        assert state.refused == ()
        got = [(r.requested, r.agency, r.route, r.routed_at_ms) for r in state.recipients]
        assert got == [
            (VP, "H35.S01", "mailbox", T0),
            (UNKNOWN, None, "refused", None),
            (NOI_VU, "H35.S02", "mailbox", T0),
            (UPSTREAM, "G22", "upstream", T0),
        ]

    def test_a_refused_recipient_keeps_the_code_and_reason(self) -> None:
        refused = recipient(state_of(sent(VP, UNKNOWN)), UNKNOWN)
        assert refused.refused_code == "unknown-recipient"
        assert refused.refused_reason == f"{UNKNOWN} is not in the agency directory"
        assert refused.delivered_at_ms is refused.acknowledged_at_ms is None

    def test_the_answer_to_a_status_is_not_a_recipient(self) -> None:
        """A status answering the document shares its id and is routed back to the
        sender: that routing does not add the sender as a recipient."""
        trail = sent(VP)
        trail.submit(status(sender=VP, code="03"), at_ms=T0 + 10, message_id="m-st")
        assert "routed" in trail.types()[-1:]
        assert [r.requested for r in state_of(trail).recipients] == [VP]


class TestProgress:
    def test_delivered_then_acknowledged(self) -> None:
        trail = sent(VP, NOI_VU)
        trail.receipt(ReceiptKind.FETCHED, at_ms=T0 + 100, recipient="H35.S01", message_id="m-doc")
        trail.receipt(
            ReceiptKind.ACKNOWLEDGED, at_ms=T0 + 200, recipient="H35.S01", message_id="m-doc"
        )
        state = state_of(trail)
        vp, noi_vu = state.recipients
        assert (vp.delivered_at_ms, vp.acknowledged_at_ms) == (T0 + 100, T0 + 200)
        assert (noi_vu.delivered_at_ms, noi_vu.acknowledged_at_ms) == (None, None)

    def test_the_first_fetch_counts(self) -> None:
        trail = sent(VP)
        for at in (T0 + 300, T0 + 100):
            trail.receipt(ReceiptKind.FETCHED, at_ms=at, recipient="H35.S01", message_id="m-doc")
        assert state_of(trail).recipients[0].delivered_at_ms == T0 + 100

    def test_receipts_of_the_statuses_sent_back_do_not_count(self) -> None:
        """The sender fetching a status about the document is not a delivery of it."""
        trail = sent(VP)
        trail.submit(status(sender=VP, code="03"), at_ms=T0 + 10, message_id="m-st")
        trail.receipt(
            ReceiptKind.ACKNOWLEDGED,
            at_ms=T0 + 20,
            recipient="H35",
            message_id="m-st",
            envelope_kind="status",
            sender=VP,
        )
        assert state_of(trail).recipients[0].acknowledged_at_ms is None


class TestStatuses:
    def test_a_business_status_from_the_recipient(self) -> None:
        trail = sent(VP, NOI_VU)
        trail.submit(status(sender=VP, code="03"), at_ms=T0 + 500, message_id="m-st")
        state = state_of(trail)
        latest = recipient(state, VP).latest_status
        assert latest is not None
        assert (latest.code, latest.at_ms, latest.by, latest.description) == (
            "03",
            T0 + 500,
            VP,
            None,
        )
        assert recipient(state, NOI_VU).latest_status is None

    def test_a_status_written_with_the_directory_code(self) -> None:
        trail = sent(VP, NOI_VU)
        trail.submit(status(sender="H35.S02", code="05"), at_ms=T0 + 5, message_id="m-st")
        latest = recipient(state_of(trail), NOI_VU).latest_status
        assert latest is not None and (latest.code, latest.by) == ("05", "H35.S02")

    def test_a_status_from_an_agency_that_is_not_a_recipient_is_left_out(self) -> None:
        trail = sent(VP)
        trail.submit(status(sender=COMMUNE, code="03"), at_ms=T0 + 5, message_id="m-st")
        state = state_of(trail)
        assert [r.requested for r in state.recipients] == [VP]
        assert state.recipients[0].latest_status is None

    def test_a_code_form_the_events_never_show_needs_the_directory(self) -> None:
        """Addressed by its directory code, answering in its QCVN 102 form before any
        acknowledgement: only `resolve` can tell it is the same agency."""
        trail = sent("H35.S01")
        trail.submit(status(sender=VP, code="03"), at_ms=T0 + 5, message_id="m-st")
        assert state_of(trail).recipients[0].latest_status is None
        latest = state_of(trail, resolve=resolve).recipients[0].latest_status
        assert latest is not None and latest.code == "03"

    def test_the_01_docbroker_makes_on_acknowledgement_speaks_for_the_recipient(self) -> None:
        """The 01 event's sender is the recipient's QCVN 102 code and its event recipient
        is the document's sender: the actor says whose status it is."""
        trail = sent(VP, NOI_VU)
        trail.receipt(
            ReceiptKind.ACKNOWLEDGED, at_ms=T0 + 200, recipient="H35.S01", message_id="m-doc"
        )
        emitted = trail.bodies()[-1]
        assert (emitted["type"], emitted["sender"], emitted["recipient"]) == (
            "status-emitted",
            VP,
            "H35",
        )
        state = state_of(trail)
        latest = recipient(state, VP).latest_status
        assert latest is not None
        assert (latest.code, latest.at_ms, latest.by) == ("01", T0 + 200, "H35.S01")
        assert recipient(state, NOI_VU).latest_status is None

    def test_the_01_teaches_the_recipients_other_code(self) -> None:
        """Once acknowledged, a status in the recipient's QCVN 102 form is attributed
        even without the directory."""
        trail = sent("H35.S01")
        trail.receipt(
            ReceiptKind.ACKNOWLEDGED, at_ms=T0 + 1, recipient="H35.S01", message_id="m-doc"
        )
        trail.submit(status(sender=VP, code="04"), at_ms=T0 + 2, message_id="m-st")
        latest = state_of(trail).recipients[0].latest_status
        assert latest is not None and (latest.code, latest.by) == ("04", VP)

    def test_a_02_to_the_sender_concerns_the_recipient_it_is_about(self) -> None:
        """The 02 event goes to the sender; `details.about` names the refused recipient
        (as the document wrote it), so each refused recipient gets its own."""
        state = state_of(two_refused())
        for requested, code in ((VP, "recipient-suspended"), (PROVINCE, "recipient-is-sender")):
            r = recipient(state, requested)
            assert r.route == "refused" and r.refused_code == code
            assert r.latest_status is not None
            assert (r.latest_status.code, r.latest_status.by) == ("02", "docbroker")
            assert r.latest_status.description == r.refused_reason
        assert recipient(state, NOI_VU).latest_status is None

    def test_about_is_what_counts_not_the_chain_order(self) -> None:
        """With the `about` of the two 02s swapped, so are the statuses."""
        bodies = two_refused().bodies()
        emitted = [b for b in bodies if b["type"] == "status-emitted"]
        first, second = (b["details"] for b in emitted)
        first["about"], second["about"] = second["about"], first["about"]
        state = fold_document(bodies)
        assert state is not None
        for requested, other in ((VP, PROVINCE), (PROVINCE, VP)):
            latest = recipient(state, requested).latest_status
            assert latest is not None
            assert latest.description == recipient(state, other).refused_reason

    def test_a_02_written_without_about_concerns_the_recipient_refused_just_before(
        self,
    ) -> None:
        """Older events: the 02 is the link after the RECIPIENT_REFUSED it reports."""
        trail = two_refused()
        older = as_written_before_about(trail.bodies())
        assert all("about" not in b["details"] for b in older)
        assert fold_document(older) == state_of(trail)

    def test_a_recipients_status_keeps_its_description(self) -> None:
        trail = sent(VP)
        trail.submit(described_status(VP, "03", "Đã tiếp nhận"), at_ms=T0 + 5, message_id="m-st")
        latest = state_of(trail).recipients[0].latest_status
        assert latest is not None and (latest.code, latest.description) == ("03", "Đã tiếp nhận")
        older = fold_document(as_written_before_about(trail.bodies()))
        assert older is not None
        assert older.recipients[0].latest_status.description is None  # type: ignore[union-attr]


class TestOrdering:
    def test_the_latest_status_has_the_greatest_time_whatever_the_input_order(self) -> None:
        """A status processed later but stamped earlier does not win; shuffling the
        events changes nothing."""
        trail = sent(VP)
        trail.submit(status(sender=VP, code="05"), at_ms=T0 + 900, message_id="m-05")
        trail.submit(status(sender=VP, code="03"), at_ms=T0 + 800, message_id="m-03")
        bodies = trail.bodies()
        expected = state_of(trail)
        assert expected.recipients[0].latest_status.code == "05"  # type: ignore[union-attr]
        for seed in range(5):
            random.Random(seed).shuffle(bodies)
            assert fold_document(bodies) == expected

    def test_a_tie_goes_to_the_later_event(self) -> None:
        """Two statuses in one pipeline batch share their time: chain order decides."""
        trail = sent(VP)
        trail.submit(
            status(sender=VP, code="03"), status(sender=VP, code="04"), at_ms=T0 + 5, message_id="s"
        )
        assert state_of(trail).recipients[0].latest_status.code == "04"  # type: ignore[union-attr]


class TestRefusedDocuments:
    def test_a_document_refused_entirely(self) -> None:
        trail = Trail()
        trail.submit(document(sender="123.45.67.X99"), at_ms=T0, message_id="m-bad")
        state = state_of(trail)
        assert (state.sender, state.kind, state.accepted_at_ms) == ("123.45.67.X99", None, None)
        assert state.message_ids == ("m-bad",) and state.recipients == ()
        (refusal,) = state.refused
        assert (refusal.message_id, refusal.stage, refusal.at_ms) == ("m-bad", "pipeline", T0)
        assert [p["code"] for p in refusal.problems] == ["unknown-sender"]

    def test_a_refused_duplicate_leaves_the_first_submission_as_it_was(self) -> None:
        """The 02 sent back for a duplicate is about the submission, not a recipient."""
        trail = sent(VP)
        trail.submit(
            document(recipients=(VP,)),
            at_ms=T0 + 50,
            message_id="m-dup",
            seen={("H35", DOC_ID): T0},
        )
        assert trail.types()[-2:] == ["refused", "status-emitted"]
        state = state_of(trail)
        assert state.message_ids == ("m-doc", "m-dup") and state.accepted_at_ms == T0
        assert [p["code"] for r in state.refused for p in r.problems] == ["duplicate-document"]
        assert state.recipients[0].latest_status is None

    def test_a_refused_status_from_a_recipient_is_not_a_refusal_of_the_document(self) -> None:
        trail = sent(VP)
        trail.submit(status(sender="000.00.77.H35", code="03"), at_ms=T0 + 5, message_id="m-st")
        assert trail.types()[-1] == "refused"
        state = state_of(trail)
        assert state.refused == () and state.message_ids == ("m-doc",)

    def test_no_events_no_state(self) -> None:
        assert fold_document([]) is None


class TestJson:
    def test_times_are_written_as_the_http_api_writes_them(self) -> None:
        trail = sent(VP, UNKNOWN)
        trail.receipt(ReceiptKind.FETCHED, at_ms=T0 + 1, recipient="H35.S01", message_id="m-doc")
        body = state_of(trail).to_json()
        assert json.loads(json.dumps(body)) == body  # plain JSON values only
        assert body["accepted_at"] == iso(T0) == "2027-01-15T08:00:00.000+00:00"
        vp, unknown = body["recipients"]
        assert vp["delivered_at"] == iso(T0 + 1)
        assert vp["acknowledged_at"] is None and vp["latest_status"] is None
        assert unknown["routed_at"] is None and unknown["agency"] is None
        assert unknown["latest_status"]["at"] == iso(T0)
        assert unknown["latest_status"]["by"] == "docbroker"
