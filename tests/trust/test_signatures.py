"""Sender signatures and the broker's: valid, tampered, wrong key, expired, untrusted,
revoked, SHA-1 without legacy, malformed certificates, and the signature-wrapping set."""

from __future__ import annotations

import base64
import re
from datetime import datetime

import pytest

from broker.clock import utc_now
from broker.core.topics import Topics
from broker.edxml.validator import EnvelopeValidator
from broker.keys.devpki import issue, revoke
from broker.trust.policy import PolicyBook, SenderPolicy
from broker.trust.sender import check_sender
from broker.trust.store import TrustStore
from broker.trust.xmldsig import BrokerSigner, Role, SignatureVerifier
from tests import pki
from tests.edxml_samples import full_document
from tests.trust.signing import sign_as_sender

STAMP = datetime(2026, 12, 1, 9, 0, 0)  # a hop's TraceHeader time

SENDER = "000.00.00.H35"
V = EnvelopeValidator(clock=utc_now)


@pytest.fixture(scope="module")
def verifier() -> SignatureVerifier:
    return SignatureVerifier(TrustStore([pki.ca().certificate], crls=[pki.crl()]))


def doc() -> bytes:
    return full_document(attachments={"cid:1": b"%PDF-1.7 the decision itself"})


def sender_result(verifier: SignatureVerifier, data: bytes, **kw):
    result, stray = verifier.verify_sender(data, at=kw.pop("at", utc_now()), **kw)
    assert result is not None
    return result, stray


class TestSenderSignature:
    @pytest.mark.parametrize("profile", ["xmldsig", "edxml"])
    def test_valid(self, verifier: SignatureVerifier, profile: str) -> None:
        data = sign_as_sender(doc(), pki.agency(SENDER), profile=profile)
        result, stray = sender_result(verifier, data)
        assert result.valid, result.reason
        assert (result.role, result.profile) == (Role.SENDER, profile)
        assert result.signer_uid == SENDER and result.algorithm == "rsa-sha256"
        assert stray == []
        assert result.signed_data and b"edXMLEnvelope" in result.signed_data

    def test_ecdsa(self, verifier: SignatureVerifier) -> None:
        data = sign_as_sender(doc(), pki.agency("E.C", "ec"), algorithm="ecdsa-sha256")
        assert sender_result(verifier, data)[0].valid

    @pytest.mark.parametrize(
        ("where", "old", "new"),
        [
            ("header", b"V/v tri\xe1\xbb\x83n khai", b"V/v tri\xe1\xbb\x83n kh\xc3\xa0i"),
            ("body", b"<edXML:AttachmentName>1.pdf", b"<edXML:AttachmentName>2.pdf"),
            (
                "attachment",
                base64.b64encode(b"%PDF-1.7 the decision itself"),
                base64.b64encode(b"%PDF-1.7 the decision itselF"),
            ),
            ("recipient", b"000.00.02.H35", b"000.00.09.H35"),
        ],
    )
    def test_one_changed_byte_breaks_it(
        self, verifier: SignatureVerifier, where: str, old: bytes, new: bytes
    ) -> None:
        data = sign_as_sender(doc(), pki.agency(SENDER))
        assert old in data, where
        result, _ = sender_result(verifier, data.replace(old, new, 1))
        assert not result.valid
        assert result.failure == "signature-invalid"
        assert "changed after signing" in result.reason

    def test_wrong_key(self, verifier: SignatureVerifier) -> None:
        """Signed with one agency's key, presenting another agency's certificate."""
        data = sign_as_sender(
            doc(), pki.agency(SENDER), certs=[pki.agency("000.00.01.H35").certificate]
        )
        result, _ = sender_result(verifier, data)
        assert not result.valid and result.failure == "signature-invalid"

    def test_expired_certificate(self, verifier: SignatureVerifier) -> None:
        result, _ = sender_result(verifier, sign_as_sender(doc(), pki.expired(SENDER)))
        assert not result.valid and result.failure == "signer-untrusted"
        assert "expired" in result.reason

    def test_untrusted_ca(self, verifier: SignatureVerifier) -> None:
        stranger = issue(pki.other_ca(), "stranger", uid=SENDER)
        result, _ = sender_result(verifier, sign_as_sender(doc(), stranger))
        assert not result.valid and result.failure == "signer-untrusted"

    def test_revoked_certificate(self) -> None:
        revoked = issue(pki.ca(), "revoked", uid=SENDER)
        store = TrustStore([pki.ca().certificate], crls=[revoke(pki.ca(), [revoked.certificate])])
        result, _ = sender_result(SignatureVerifier(store), sign_as_sender(doc(), revoked))
        assert not result.valid and "revoked" in result.reason

    def test_sha1_needs_a_legacy_policy(self, verifier: SignatureVerifier) -> None:
        data = sign_as_sender(doc(), pki.agency(SENDER), algorithm="rsa-sha1", digest="sha1")
        result, _ = sender_result(verifier, data)
        assert not result.valid and result.failure == "weak-algorithm"
        legacy, _ = sender_result(verifier, data, allow_sha1=True)
        assert legacy.valid, legacy.reason

    def test_malformed_certificate_is_a_finding(self, verifier: SignatureVerifier) -> None:
        data = sign_as_sender(doc(), pki.agency(SENDER))
        broken = re.sub(
            rb"<X509Certificate>[^<]+</X509Certificate>",
            b"<X509Certificate>MIIFqTCCBJG</X509Certificate>",
            data,
        )
        result, _ = sender_result(verifier, broken)
        assert not result.valid and "malformed" in result.reason

    def test_no_certificate(self, verifier: SignatureVerifier) -> None:
        data = sign_as_sender(doc(), pki.agency(SENDER))
        stripped = re.sub(rb"<KeyInfo>.*</KeyInfo>", b"", data, flags=re.S)
        result, _ = sender_result(verifier, stripped)
        assert not result.valid and "no X509Certificate" in result.reason


class TestWrapping:
    """Classic signature-wrapping variants: refused, or only the signed part acted on."""

    def signed(self) -> bytes:
        return sign_as_sender(doc(), pki.agency(SENDER))

    def test_signed_element_moved_under_an_extension(self, verifier: SignatureVerifier) -> None:
        """The signed MessageHeader hidden in a vendor element, a forged one in its place."""
        data = self.signed()
        start = data.index(b"<edXML:MessageHeader>")
        end = data.index(b"</edXML:MessageHeader>") + len(b"</edXML:MessageHeader>")
        original = data[start:end]
        forged = original.replace(b"000.00.01.H35", b"666.66.66.X66")
        moved = (data[:start] + forged + data[end:]).replace(
            b"</edXML:edXMLBody>",
            b'</edXML:edXMLBody><v:Hidden xmlns:v="urn:v">' + original + b"</v:Hidden>",
        )
        result, _ = sender_result(verifier, moved)
        assert not result.valid

    def test_signed_element_duplicated(self, verifier: SignatureVerifier) -> None:
        data = self.signed()
        dup = data.replace(
            b"</edXML:From>",
            b"</edXML:From><edXML:From><edXML:OrganId>666.66.66.X66</edXML:OrganId></edXML:From>",
            1,
        )
        assert "duplicate-field" in [p.code for p in V.validate(dup).problems]
        assert not sender_result(verifier, dup)[0].valid

    def test_extra_unsigned_message_header(self, verifier: SignatureVerifier) -> None:
        data = self.signed()
        extra = data.replace(
            b"<edXML:MessageHeader>",
            b"<edXML:MessageHeader><edXML:From>"
            b"<edXML:OrganId>666.66.66.X66</edXML:OrganId></edXML:From>"
            b"</edXML:MessageHeader><edXML:MessageHeader>",
            1,
        )
        assert "duplicate-field" in [p.code for p in V.validate(extra).problems]
        assert not sender_result(verifier, extra)[0].valid

    def test_comment_injected_into_signed_text(self, verifier: SignatureVerifier) -> None:
        """`000.00.01.H35X` signed; a comment makes naive readers see `000.00.01.H35`.
        Canonical XML drops comments, so the signature still verifies: the broker must
        act on the signed text."""
        signed = sign_as_sender(
            doc().replace(b"000.00.01.H35", b"000.00.01.H35X"), pki.agency(SENDER)
        )
        injected = signed.replace(b"000.00.01.H35X", b"000.00.01.H35<!--c-->X", 1)
        result, _ = sender_result(verifier, injected)
        assert result.valid
        acted_on = V.check(result.signed_data)
        assert "000.00.01.H35X" in acted_on.recipient_ids
        assert "000.00.01.H35X" in V.check(injected).recipient_ids  # comments are skipped

    def test_second_signature_in_the_header(self, verifier: SignatureVerifier) -> None:
        data = self.signed()
        sig = data[data.index(b'<Signature xmlns="') : data.index(b"</Signature>") + 12]
        twice = data.replace(sig, sig + sig, 1)
        result, extra = verifier.verify_sender(twice, at=utc_now())
        assert result is not None and not result.valid and extra
        assert "more than one signature" in result.reason

    def test_signature_in_an_unexpected_place_is_never_trusted(
        self, verifier: SignatureVerifier
    ) -> None:
        data = self.signed()
        sig = data[data.index(b'<Signature xmlns="') : data.index(b"</Signature>") + 12]
        elsewhere = data.replace(sig, b"", 1).replace(b"</edXML:From>", b"</edXML:From>" + sig, 1)
        result, stray = verifier.verify_sender(elsewhere, at=utc_now())
        assert result is None
        assert [s.role for s in stray] == [Role.UNEXPECTED]
        book = PolicyBook(SenderPolicy("required"))
        check = check_sender(
            elsewhere, V.validate(elsewhere).envelope, verifier, book, at=utc_now()
        )
        assert {p.code for p in check.problems} == {"signature-invalid", "signature-missing"}

    def test_reference_to_a_part_is_refused(self, verifier: SignatureVerifier) -> None:
        """Only whole-document references (URI="") are accepted."""
        data = self.signed().replace(b'<Reference URI="">', b'<Reference URI="#x">', 1)
        result, _ = sender_result(verifier, data)
        assert not result.valid and 'URI=""' in result.reason


class TestPolicy:
    def check(self, data: bytes, policy: SenderPolicy, verifier: SignatureVerifier, **book):
        return check_sender(data, V.check(data), verifier, PolicyBook(policy, **book), at=utc_now())

    def test_required_refuses_what_does_not_verify(self, verifier: SignatureVerifier) -> None:
        required = SenderPolicy("required")
        assert [p.code for p in self.check(doc(), required, verifier).problems] == [
            "signature-missing"
        ]
        tampered = sign_as_sender(doc(), pki.agency(SENDER)).replace(b"1.pdf", b"2.pdf", 1)
        assert [p.code for p in self.check(tampered, required, verifier).problems] == [
            "signature-invalid"
        ]
        ok = self.check(sign_as_sender(doc(), pki.agency(SENDER)), required, verifier)
        assert ok.outcome == "valid" and ok.problems == () and ok.signed_data

    def test_required_signer_must_be_the_sender(self, verifier: SignatureVerifier) -> None:
        someone = sign_as_sender(doc(), pki.agency("000.00.01.H35"))
        check = self.check(someone, SenderPolicy("required"), verifier)
        assert check.outcome == "not-bound"
        assert [p.code for p in check.problems] == ["signer-mismatch"]

    def test_pinned_fingerprint_binds_whatever_the_subject(
        self, verifier: SignatureVerifier
    ) -> None:
        from broker.trust.certs import fingerprint

        other = pki.agency("000.00.01.H35")
        pinned = SenderPolicy("required", certificates=frozenset({fingerprint(other.certificate)}))
        assert self.check(sign_as_sender(doc(), other), pinned, verifier).outcome == "valid"
        own = self.check(sign_as_sender(doc(), pki.agency(SENDER)), pinned, verifier)
        assert own.outcome == "not-bound", "a pin excludes every other certificate"

    def test_optional_records_and_does_not_refuse(self, verifier: SignatureVerifier) -> None:
        optional = SenderPolicy("optional")
        absent = self.check(doc(), optional, verifier)
        assert (absent.outcome, absent.problems) == ("absent", ())
        bad = sign_as_sender(doc(), pki.expired(SENDER))
        invalid = self.check(bad, optional, verifier)
        assert invalid.outcome == "invalid" and invalid.problems == ()
        assert invalid.audit()["reason"].startswith("certificate expired")

    def test_ignored_does_not_verify(self, verifier: SignatureVerifier) -> None:
        data = sign_as_sender(doc(), pki.expired(SENDER))
        check = self.check(data, SenderPolicy("ignored"), verifier)
        assert (check.outcome, check.result, check.problems) == ("ignored", None, ())


class TestBrokerSignature:
    def test_covers_the_whole_package_with_the_new_trace_header(
        self, verifier: SignatureVerifier
    ) -> None:
        signer = BrokerSigner(pki.broker())
        out = signer.stamp_and_sign(doc(), pki.BROKER_ID, STAMP)
        assert out.rstrip().endswith(b"</ds:Signature></edXML>")
        (result,) = verifier.verify_all(out, at=utc_now())
        assert result.valid and result.role is Role.BROKER
        assert V.check(out).trace[-1].organ_id == pki.BROKER_ID
        hop = out.rindex(b"<edXML:TraceHeader>")
        changed_hop = out[:hop] + out[hop:].replace(pki.BROKER_ID.encode(), b"000.00.00.H99", 1)
        payload = base64.b64encode(b"%PDF-1.7 the decision itself")[:8]
        for changed in (changed_hop, out.replace(payload, b"AAAAAAAA", 1)):
            assert changed != out
            assert not verifier.verify_all(changed, at=utc_now())[0].valid

    def test_edxml_readers_see_the_same_package(self) -> None:
        out = BrokerSigner(pki.broker()).stamp_and_sign(doc(), pki.BROKER_ID, STAMP)
        verdict = V.validate(out)
        assert verdict.ok, verdict.problems
        assert [s.namespace for s in verdict.envelope.signatures] == ["xmldsig"]

    def test_a_previous_hops_signature_is_replaced(self, verifier: SignatureVerifier) -> None:
        first = BrokerSigner(pki.agency("000.00.00.H53")).stamp_and_sign(
            doc(), "000.00.00.H53", STAMP
        )
        second = BrokerSigner(pki.broker()).stamp_and_sign(first, pki.BROKER_ID, STAMP)
        results = verifier.verify_all(second, at=utc_now())
        assert [(r.role, r.valid, r.signer_uid) for r in results] == [
            (Role.BROKER, True, pki.BROKER_ID)
        ]
        assert [h.organ_id for h in V.check(second).trace][-2:] == ["000.00.00.H53", pki.BROKER_ID]

    def test_sender_signature_stays_for_the_record(self, verifier: SignatureVerifier) -> None:
        signed = sign_as_sender(doc(), pki.agency(SENDER), profile="edxml")
        out = BrokerSigner(pki.broker()).stamp_and_sign(signed, pki.BROKER_ID, STAMP)
        roles = {r.role: r for r in verifier.verify_all(out, at=utc_now())}
        assert roles[Role.BROKER].valid
        assert not roles[Role.SENDER].valid  # the TraceHeader was added after it
        assert Topics  # the original bytes stay in `inbound` for checking
