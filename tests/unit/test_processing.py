"""The pipeline's step as a pure function: a record in, output records out."""

from __future__ import annotations

import json

from broker.edxml.validator import EnvelopeValidator
from broker.intake import Submission, inbound_record
from broker.log.interface import NewRecord, Record
from broker.processing import InboundProcessor
from broker.records import H
from broker.topics import Topics
from tests.edxml_samples import document

TOPICS = Topics.with_prefix("p.")
VALIDATOR = EnvelopeValidator()


def processor() -> InboundProcessor:
    return InboundProcessor(TOPICS, VALIDATOR)


def as_consumed(rec: NewRecord, offset: int = 7) -> Record:
    return Record(rec.topic, 0, offset, rec.key, rec.value, rec.headers, 1000)


def submitted(data: bytes) -> Record:
    sub = Submission(data, "m-1", "t" * 32, 1000, "http")
    return as_consumed(inbound_record(sub, VALIDATOR.check(data), TOPICS))


def by_topic(records: tuple[NewRecord, ...], topic: str) -> list[NewRecord]:
    return [r for r in records if r.topic == topic]


class TestInboundProcessor:
    def test_each_recipient_gets_the_bytes_in_its_mailbox(self) -> None:
        data = document(recipients=("A.1", "B.2"))
        out = processor().process(submitted(data), at_ms=2000)
        assert out.outcome == "routed" and out.deliveries == 2
        mail = by_topic(out.records, TOPICS.mailbox)
        assert [m.key for m in mail] == [b"A.1", b"B.2"]
        assert all(m.value == data for m in mail)
        headers = dict(mail[0].headers)
        assert headers[H.MESSAGE_ID] == b"m-1" and headers[H.RECIPIENT] == b"A.1"
        assert headers[H.TRACE_ID] == b"t" * 32 and headers[H.RECEIVED_AT] == b"1000"

    def test_events_describe_receipt_and_each_routing(self) -> None:
        out = processor().process(submitted(document(recipients=("A.1", "B.2"))))
        events = [json.loads(e.value) for e in by_topic(out.records, TOPICS.events)]
        assert [e["type"] for e in events] == ["received", "routed", "routed"]
        assert {e["recipient"] for e in events[1:]} == {"A.1", "B.2"}
        assert all(e["document_id"] == "000.00.00.H35,2026/11/24,12/UBND-VP" for e in events)

    def test_a_bad_record_becomes_a_dead_letter_not_an_exception(self) -> None:
        rec = Record(TOPICS.inbound, 0, 3, b"A.1", b"<broken", (("message-id", b"m-2"),), 1)
        out = processor().process(rec)
        assert out.outcome == "rejected" and out.codes == ("not-well-formed",)
        (dead,) = by_topic(out.records, TOPICS.rejected)
        assert dead.value == b"<broken"
        problems = json.loads(dict(dead.headers)[H.PROBLEMS])
        assert problems[0]["code"] == "not-well-formed"
        (event,) = by_topic(out.records, TOPICS.events)
        assert json.loads(event.value)["type"] == "refused"

    def test_an_unexpected_failure_is_contained(self, monkeypatch) -> None:
        """A bug in a step dead-letters the record instead of wedging the partition."""

        def boom(data: bytes) -> None:
            raise RuntimeError("bug")

        record = submitted(document())
        broken = InboundProcessor(TOPICS, EnvelopeValidator())
        monkeypatch.setattr(broken.validator, "check", boom)
        out = broken.process(record)
        assert out.outcome == "failed" and out.codes == ("internal-error",)
