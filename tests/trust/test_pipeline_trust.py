"""The pipeline step with trust: policy decides, the signed part is acted on, the
forwarded envelope is stamped and signed."""

from __future__ import annotations

from dataclasses import replace

from broker.core.events import EventType
from tests import pki
from tests.edxml_samples import full_document
from tests.forwarded import assert_forwarded
from tests.processing_kit import TOPICS, consumed, ctx, directory, headers, on, processor
from tests.trust.signing import sign_as_sender

SENDER = "000.00.00.H35"


def accepted(out) -> dict:
    return next(e for e in out.events if e.type is EventType.ACCEPTED).details


class TestPipelineTrust:
    def test_required_policy_refuses_an_unsigned_envelope(self) -> None:
        out = processor("required").process(consumed(full_document()), ctx())
        assert out.outcome == "rejected" and out.codes == ("signature-missing",)
        assert out.signature == ("absent", "required")
        refused = next(e for e in out.events if e.type is EventType.REFUSED)
        assert refused.details["sender_signature"]["outcome"] == "absent"

    def test_the_directory_sets_the_senders_policy(self) -> None:
        province = directory().find(SENDER)
        strict = directory().with_agency(replace(province, signature_policy="required"))
        out = processor("optional").process(consumed(full_document()), ctx(d=strict))
        assert out.codes == ("signature-missing",)

    def test_a_valid_signature_is_recorded_and_the_envelope_forwarded_signed(self) -> None:
        data = sign_as_sender(full_document(), pki.agency(SENDER), profile="edxml")
        out = processor("required").process(consumed(data), ctx())
        assert out.outcome == "routed" and out.signature == ("valid", "required")
        assert accepted(out)["sender_signature"]["signer_fingerprint"]
        not_after = pki.agency(SENDER).certificate.not_valid_after_utc.isoformat()
        assert accepted(out)["sender_signature"]["signer_not_after"] == not_after
        for mail in on(out.records, TOPICS.mailbox):
            assert_forwarded(data, mail.value, sha256=headers(mail)["sha256"])

    def test_a_certificate_with_the_other_code_form_binds_too(self) -> None:
        data = sign_as_sender(full_document(), pki.agency("H35"))
        out = processor("required").process(consumed(data), ctx())
        assert out.signature == ("valid", "required")

    def test_a_pinned_certificate_excludes_others(self) -> None:
        from broker.trust.certs import fingerprint

        province = directory().find(SENDER)
        other = pki.agency("000.00.01.H35")
        pinned = directory().with_agency(replace(
            province, signature_policy="required",
            certificates=(fingerprint(other.certificate),)))  # fmt: skip
        own = sign_as_sender(full_document(), pki.agency(SENDER))
        assert processor().process(consumed(own), ctx(d=pinned)).codes == ("signer-mismatch",)
        theirs = sign_as_sender(full_document(), other)
        assert processor().process(consumed(theirs), ctx(d=pinned)).outcome == "routed"

    def test_the_signed_text_is_what_gets_routed(self) -> None:
        """A comment splits a signed recipient code: canonical XML (what was signed)
        and docbroker's reader both see the whole code."""
        signed = sign_as_sender(full_document(), pki.agency(SENDER))
        injected = signed.replace(b"000.00.02.H35", b"000.00.0<!--c-->2.H35", 1)
        assert injected != signed
        out = processor("required").process(consumed(injected), ctx())
        assert out.outcome == "routed" and out.signature == ("valid", "required")
        assert {m.key for m in on(out.records, TOPICS.mailbox)} == {b"H35.S01", b"H35.S02"}

    def test_optional_policy_forwards_an_invalid_signature_and_records_why(self) -> None:
        data = sign_as_sender(full_document(), pki.expired(SENDER))
        out = processor("optional").process(consumed(data), ctx())
        assert out.outcome == "routed" and out.signature == ("invalid", "optional")
        detail = accepted(out)["sender_signature"]
        assert detail["valid"] is False and "expired" in detail["reason"]
