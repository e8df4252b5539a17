"""The pipeline step with trust: policy decides, the signed part is acted on, the
forwarded envelope is stamped and signed."""

from __future__ import annotations

import json

from broker.edxml.validator import EnvelopeValidator
from broker.intake import Submission, inbound_record
from broker.log.interface import NewRecord, Record
from broker.processing import InboundProcessor
from broker.topics import Topics
from broker.trust.context import TrustContext
from broker.trust.policy import PolicyBook, SenderPolicy
from broker.trust.store import TrustStore
from tests import pki
from tests.edxml_samples import full_document
from tests.forwarded import assert_forwarded
from tests.trust.signing import sign_as_sender

TOPICS = Topics.with_prefix("p.")
V = EnvelopeValidator()
SENDER = "000.00.00.H35"


def processor(policy: str = "optional") -> InboundProcessor:
    trust = TrustContext(
        pki.broker(),
        TrustStore([pki.ca().certificate]),
        PolicyBook(SenderPolicy(policy)),
        pki.BROKER_ID,
        30 * 86400.0,
    )
    return InboundProcessor(TOPICS, V, trust)


def consumed(data: bytes) -> Record:
    rec = inbound_record(Submission(data, "m-1", "t" * 32, 1000, "http"), V.check(data), TOPICS)
    return Record(rec.topic, 0, 1, rec.key, rec.value, rec.headers, 1000)


def topic(records: tuple[NewRecord, ...], name: str) -> list[NewRecord]:
    return [r for r in records if r.topic == name]


def events(records: tuple[NewRecord, ...]) -> list[dict]:
    return [json.loads(r.value) for r in topic(records, TOPICS.events)]


class TestPipelineTrust:
    def test_required_policy_refuses_an_unsigned_envelope(self) -> None:
        out = processor("required").process(consumed(full_document()))
        assert out.outcome == "rejected" and out.codes == ("signature-missing",)
        assert out.signature == ("absent", "required")
        (event,) = events(out.records)
        assert event["details"]["sender_signature"]["outcome"] == "absent"

    def test_a_valid_signature_is_recorded_and_the_envelope_forwarded_signed(self) -> None:
        data = sign_as_sender(full_document(), pki.agency(SENDER), profile="edxml")
        out = processor("required").process(consumed(data))
        assert out.outcome == "routed" and out.signature == ("valid", "required")
        received = events(out.records)[0]
        assert received["details"]["sender_signature"]["signer_fingerprint"]
        assert received["sha256"]  # of the sender's bytes, kept in inbound
        for mail in topic(out.records, TOPICS.mailbox):
            assert_forwarded(data, mail.value, sha256=dict(mail.headers)["sha256"].decode())

    def test_the_signed_text_is_what_gets_routed(self) -> None:
        signed = sign_as_sender(
            full_document().replace(b"000.00.01.H35", b"000.00.01.H35X"), pki.agency(SENDER)
        )
        injected = signed.replace(b"000.00.01.H35X", b"000.00.01.H35<!--c-->X", 1)
        out = processor("required").process(consumed(injected))
        assert out.outcome == "routed"
        assert {m.key for m in topic(out.records, TOPICS.mailbox)} == {
            b"000.00.01.H35X",
            b"000.00.02.H35",
        }

    def test_optional_policy_forwards_an_invalid_signature_and_records_why(self) -> None:
        data = sign_as_sender(full_document(), pki.expired(SENDER))
        out = processor("optional").process(consumed(data))
        assert out.outcome == "routed" and out.signature == ("invalid", "optional")
        detail = events(out.records)[0]["details"]["sender_signature"]
        assert detail["valid"] is False and "expired" in detail["reason"]
