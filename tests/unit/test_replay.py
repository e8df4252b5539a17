"""Replaying dead letters: the pipeline's step for a replay request, and the pure
decisions of broker.service.replay (what a dry run says). No servers."""

from __future__ import annotations

import json

from broker.core.events import EventType
from broker.core.logrecords import NewRecord, Record
from broker.core.problems import Problem
from broker.core.records import FirstSeen, H
from broker.directory.model import Agency
from broker.pipeline.intake import Submission, door_refusal_record
from broker.pipeline.replays import REPLAY_DEDUP_SENDER, letter_key
from broker.service.replay import (
    ALREADY,
    STILL_REFUSED,
    WOULD,
    ReplayResult,
    check_request,
    request_for,
    upstream_result,
)
from broker.views.dead_letters import dead_letters
from tests.edxml_samples import document
from tests.processing_kit import (
    NOW,
    TOPICS,
    as_record,
    consumed,
    ctx,
    directory,
    headers,
    on,
    processor,
)  # fmt: skip

PROVINCE, VP = "000.00.00.H35", "000.00.01.H35"
NEW_AGENCY = "000.00.77.H35"


def with_new_agency():
    return directory().with_agency(Agency("H35.S77", "Sở Mới", code102=NEW_AGENCY))


def dead_letter_of(data: bytes, **kw) -> Record:
    """The dead letter the pipeline makes of a submission, as `rejected` holds it."""
    out = processor().process(consumed(data, **kw), ctx())
    (dead,) = on(out.records, TOPICS.rejected)
    return as_record(dead, offset=7)


def request(letter: Record, replay_id: str = "r-1", actor: str = "cli:ops") -> NewRecord:
    return request_for(processor(), letter, replay_id=replay_id, actor=actor, at_ms=NOW)


class TestTheReplayStep:
    def test_a_refused_submission_becomes_a_fresh_one_with_its_event_and_marker(self) -> None:
        letter = dead_letter_of(
            document(recipients=(NEW_AGENCY,)), authenticated=PROVINCE, message_id="m-9"
        )
        out = processor().process(as_record(request(letter)), ctx())
        assert out.outcome == "replayed"
        (fresh,) = on(out.records, TOPICS.inbound)
        h = headers(fresh)
        assert h["message-id"] == "r-1" and h["replayed-from"] == "m-9"
        assert h["authenticated"] == PROVINCE and h["sender"] == PROVINCE
        assert "replay-of" not in h and "stage" not in h  # a submission, not a request
        assert fresh.value == letter.value and fresh.key == PROVINCE.encode()
        (marker,) = on(out.records, TOPICS.rejected)
        assert headers(marker)["replayed-as"] == "r-1" and marker.value == b""
        (event,) = out.events
        assert event.type is EventType.REPLAYED and event.actor == "cli:ops"
        assert event.message_id == "m-9" and event.details["replayed_as"] == "r-1"
        assert out.dedup == ((REPLAY_DEDUP_SENDER, letter_key("m-9", NOW)),)

    def test_a_dead_letter_replayed_already_is_not_replayed_again(self) -> None:
        letter = dead_letter_of(document(recipients=(NEW_AGENCY,)), message_id="m-9")
        key = (REPLAY_DEDUP_SENDER, letter_key("m-9", NOW))
        out = processor().process(as_record(request(letter, "r-2")), ctx({key: NOW}))
        assert out.outcome == "duplicate" and out.records == () and out.events == ()

    def test_two_requests_in_one_batch_replay_once(self) -> None:
        letter = dead_letter_of(document(recipients=(NEW_AGENCY,)), message_id="m-9")
        records = [as_record(request(letter, f"r-{i}"), offset=i) for i in (1, 2)]
        first, second = processor().process_batch(records, ctx())
        assert (first.outcome, second.outcome) == ("replayed", "duplicate")

    def test_an_upstream_dead_letter_goes_back_to_upstream_as_it_was(self) -> None:
        routed = processor().process(
            consumed(document(recipients=("000.00.00.G22",)), message_id="m-up"), ctx()
        )
        (up,) = on(routed.records, TOPICS.upstream)
        # what the axis sender dead-letters: the upstream record's headers, its stage
        kept = tuple((k, v) for k, v in up.headers if k != H.PRODUCED_AT)
        dead = NewRecord(
            TOPICS.rejected,
            up.value,
            key=up.key,
            headers=(
                *kept,
                (H.PRODUCED_AT, str(NOW).encode()),
                (H.STAGE, b"upstream"),
                (H.PROBLEMS, b"[]"),
            ),
        )
        out = processor().process(as_record(request(as_record(dead))), ctx())
        (again,) = on(out.records, TOPICS.upstream)
        h = headers(again)
        assert h["message-id"] == "m-up"  # its receipts join the original submission
        assert h["upstream-requested"] == '["000.00.00.G22"]' and h["upstream-to"] == '["G22"]'
        assert again.value == up.value and again.key == up.key
        assert out.events[0].details["to"] == "upstream"

    def test_an_older_upstream_dead_letter_is_routed_again_for_its_axis_recipients(
        self,
    ) -> None:
        """Dead letters written before they kept the upstream record's headers name no
        recipient: the replay reads them from the package against the directory."""
        routed = processor().process(
            consumed(document(recipients=(VP, "000.00.00.G22")), message_id="m-old"), ctx()
        )
        (up,) = on(routed.records, TOPICS.upstream)
        h = headers(up)
        old_form = {k: h[k] for k in ("message-id", "document-id", "sender", "trace-id")}
        old_form |= {"produced-at": str(NOW), "stage": "upstream", "problems": "[]"}
        dead = as_record(
            NewRecord(
                TOPICS.rejected,
                up.value,
                key=up.key,
                headers=tuple((k, v.encode()) for k, v in old_form.items()),
            )
        )
        req = request_for(
            processor(), dead, replay_id="r-1", actor="cli:ops", at_ms=NOW, directory=directory()
        )
        assert upstream_result("m-old", as_record(req), True).routes == (
            ("000.00.00.G22", "upstream"),
        )
        out = processor().process(as_record(req), ctx())
        (again,) = on(out.records, TOPICS.upstream)
        assert headers(again)["upstream-to"] == '["G22"]' and headers(again)["kind"] == "document"
        without = request_for(processor(), dead, replay_id="r-2", actor="x", at_ms=NOW)
        assert upstream_result("m-old", as_record(without), True).outcome == STILL_REFUSED


class TestDoorRefusals:
    def test_recorded_with_the_caller_and_not_counted_again(self) -> None:
        """The door counts its refusal in the metrics; the pipeline, recording it, does
        not count it a second time (it gives no codes to count)."""
        sub = Submission(b"<broken", "m-d", "t" * 32, NOW, "http", authenticated=PROVINCE)
        rec = door_refusal_record(sub, [Problem("not-well-formed", "bad")], TOPICS)
        out = processor().process(as_record(rec), ctx())
        assert out.outcome == "rejected" and out.codes == ()
        (dead,) = on(out.records, TOPICS.rejected)
        assert headers(dead)["authenticated"] == PROVINCE
        assert out.events[0].details["caller"] == PROVINCE
        ((letter, _),) = dead_letters([as_record(dead)])
        assert letter.caller == PROVINCE and letter.to_json()["caller"] == PROVINCE


class TestDryRun:
    def test_still_refused_until_the_agency_is_added_then_routed_to_it(self) -> None:
        letter = dead_letter_of(document(recipients=(NEW_AGENCY,)), message_id="m-9")
        before = check_request(processor(), request(letter), directory(), NOW)
        assert before.outcome == STILL_REFUSED and not before.ok
        assert [p["code"] for p in before.problems] == ["unknown-recipient"]
        after = check_request(processor(), request(letter), with_new_agency(), NOW)
        assert after.outcome == WOULD and after.ok
        assert after.routes == (("H35.S77", "mailbox"),)
        assert "would pass now, routed to H35.S77 (mailbox)" in after.line()

    def test_the_same_package_taken_in_since_would_be_a_duplicate(self) -> None:
        data = document(recipients=(NEW_AGENCY,))
        letter = dead_letter_of(data, message_id="m-9")
        first = FirstSeen(NOW, "m-later", headers(request(letter))["sha256"])
        doc_id = "000.00.00.H35,2026/11/24,12/UBND-VP"
        result = check_request(
            processor(),
            request(letter),
            with_new_agency(),
            NOW,
            lambda s, d: first if (s, d) == ("H35", doc_id) else None,
        )
        assert result.outcome == STILL_REFUSED
        assert result.problems[0]["code"] == "already-received"


class TestResults:
    def test_json_and_line(self) -> None:
        r = ReplayResult("m-1", ALREADY, "pipeline", "r-1")
        assert r.line() == "m-1: already replayed (as r-1)"
        assert json.loads(json.dumps(r.to_json()))["replayed_as"] == "r-1" and r.ok
