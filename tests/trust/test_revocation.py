"""Revocation: the policy for what cannot be checked (required signatures refused,
optional ones recorded honestly), and CRL files read again when they change."""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta
from functools import cache
from pathlib import Path

import pytest
import structlog
from cryptography import x509

from broker.clock import utc_now
from broker.core.errors import ConfigError
from broker.edxml.validator import EnvelopeValidator
from broker.keys.crlfiles import CrlFiles
from broker.keys.devpki import crl_pem, empty_crl, issue, make_ca, revoke
from broker.trust.certs import KeyMaterial
from broker.trust.policy import PolicyBook, SenderPolicy
from broker.trust.revocation import Revocation, chain_status, crl_status
from broker.trust.sender import SenderCheck, check_sender
from broker.trust.store import TrustStore
from broker.trust.xmldsig import SignatureVerifier
from tests import pki
from tests.edxml_samples import full_document
from tests.processing_kit import consumed, ctx
from tests.trust.signing import sign_as_sender

SENDER = "000.00.00.H35"
V = EnvelopeValidator(clock=utc_now)


@cache
def revocable() -> KeyMaterial:
    return issue(pki.ca(), "revocable", uid=SENDER)


@cache
def signed() -> bytes:
    return sign_as_sender(full_document(), revocable())


def check(store: TrustStore, mode: str = "required", data: bytes | None = None) -> SenderCheck:
    data = data or signed()
    book = PolicyBook(SenderPolicy(mode))  # type: ignore[arg-type]
    return check_sender(data, V.check(data), SignatureVerifier(store), book, at=utc_now())


class TestCrlStatus:
    def test_verdicts(self) -> None:
        now, leaf, ca = utc_now(), revocable().certificate, pki.ca().certificate
        assert crl_status(leaf, ca, [pki.crl()], now) == Revocation("good", "", "crl")
        assert crl_status(leaf, ca, [], now).state == "unchecked"
        assert crl_status(leaf, ca, [revoke(pki.ca(), [leaf])], now).state == "revoked"
        later = now + timedelta(days=4000)  # past the CRL's nextUpdate
        assert "is out of date" in crl_status(leaf, ca, [pki.crl()], later).reason

    def test_a_chain_is_as_weak_as_its_weakest_link(self) -> None:
        good, unchecked = Revocation("good", "", "crl"), Revocation("unchecked", "no CRL of X")
        revoked = Revocation("revoked", "revoked on ...", "crl")
        assert chain_status([good, Revocation("good", "", "ocsp")]).source == "crl+ocsp"
        assert chain_status([good, unchecked]) == Revocation("unchecked", "no CRL of X")
        assert chain_status([unchecked, revoked]) is revoked
        assert chain_status([]).state == "good"  # a root itself: nothing to revoke


class TestPolicy:
    """trust.unchecked_revocation against the sender's policy."""

    def test_a_required_signature_without_a_crl_is_refused_saying_why_and_what_to_do(
        self,
    ) -> None:
        out = check(TrustStore([pki.ca().certificate]))
        assert out.outcome == "invalid"
        (problem,) = out.problems
        assert problem.code == "signer-untrusted"
        assert "revocation could not be checked (no CRL of CN=docbroker test CA" in problem.message
        assert "trust.crl_files" in problem.message and "trust.ocsp" in problem.message
        assert 'trust.unchecked_revocation = "accept"' in problem.message
        audit = out.audit()
        assert audit["revocation"] == "unchecked" and audit["valid"] is False

    def test_an_optional_signature_is_verified_and_recorded_unchecked(self) -> None:
        out = check(TrustStore([pki.ca().certificate]), "optional")
        assert (out.outcome, out.problems) == ("valid", ()) and out.signed_data
        audit = out.audit()
        assert audit["valid"] is True and audit["revocation"] == "unchecked"
        assert audit["revocation_detail"].startswith("no CRL of CN=docbroker test CA")

    def test_accept_takes_a_required_signature_and_says_it_was_not_checked(self) -> None:
        out = check(TrustStore([pki.ca().certificate], unchecked_revocation="accept"))
        assert (out.outcome, out.problems) == ("valid", ())
        assert out.audit()["revocation"] == "unchecked"

    def test_checked_by_a_crl_is_recorded_too(self) -> None:
        audit = check(TrustStore([pki.ca().certificate], crls=[pki.crl()])).audit()
        assert (audit["revocation"], audit["revocation_detail"]) == ("good", "crl")

    def test_revoked_is_refused_whatever_the_policy(self) -> None:
        crl = revoke(pki.ca(), [revocable().certificate])
        lenient = TrustStore([pki.ca().certificate], crls=[crl], unchecked_revocation="accept")
        for mode in ("required", "optional"):
            out = check(lenient, mode)
            assert out.outcome == "invalid" and "was revoked" in out.audit()["reason"]
            assert out.audit()["revocation"] == "revoked"

    def test_in_the_pipeline_the_refusal_is_a_status_02_with_the_detail(self) -> None:
        from broker.pipeline.processing import InboundProcessor
        from broker.trust.context import TrustContext
        from tests.processing_kit import TOPICS, VALIDATOR

        trust = TrustContext(
            pki.broker(), TrustStore([pki.ca().certificate]), PolicyBook(), pki.BROKER_ID, 1.0
        )
        pipeline = InboundProcessor(
            TOPICS, VALIDATOR, trust, default_policy=SenderPolicy("required")
        )
        out = pipeline.process(consumed(signed()), ctx())
        assert out.outcome == "rejected" and out.codes == ("signer-untrusted",)
        assert out.signature == ("invalid", "required")


def write(path: Path, crl: x509.CertificateRevocationList | bytes) -> None:
    """Replace `path` at once (a new inode), as an operator's `install` or `mv` does."""
    tmp = path.with_suffix(".tmp")
    tmp.write_bytes(crl if isinstance(crl, bytes) else crl_pem(crl))
    os.replace(tmp, path)


class Clock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


@pytest.fixture
def crl_file(tmp_path: Path) -> Path:
    path = tmp_path / "ca.crl.pem"
    write(path, pki.crl())
    return path


def files(path: Path, clock: Clock, interval: float = 5.0) -> CrlFiles:
    return CrlFiles([path], [pki.ca().certificate], interval=interval, clock=clock, now=utc_now)


class TestCrlFiles:
    def test_a_changed_file_revokes_at_the_next_verification_after_the_interval(
        self, crl_file: Path
    ) -> None:
        clock = Clock()
        crls = files(crl_file, clock)
        store = TrustStore([pki.ca().certificate], crls=crls)
        leaf = revocable().certificate
        assert store.verify(leaf, at=utc_now()).ok
        write(crl_file, revoke(pki.ca(), [leaf]))
        clock.t += 4.9
        assert store.verify(leaf, at=utc_now()).ok, "looked at once per interval at most"
        clock.t += 0.2
        result = store.verify(leaf, at=utc_now())
        assert not result.ok and "was revoked" in result.reason
        assert crls.generation == 1
        write(crl_file, pki.crl())
        assert crls.refresh() and store.verify(leaf, at=utc_now()).ok

    def test_an_unusable_file_keeps_the_last_good_crl_and_says_so_once(
        self, crl_file: Path
    ) -> None:
        clock = Clock()
        crls = files(crl_file, clock, interval=0.5)
        leaf = revocable().certificate
        write(crl_file, revoke(pki.ca(), [leaf]))
        assert crls.refresh()
        store = TrustStore([pki.ca().certificate], crls=crls)
        forged = revoke(make_ca("docbroker test CA"), [])  # the CA's name, another key
        with structlog.testing.capture_logs() as logs:
            for content in (b"garbage", b"garbage", crl_pem(forged)):
                write(crl_file, content)
                clock.t += 1
                assert not store.verify(leaf, at=utc_now()).ok, "the revoking CRL stays"
            crl_file.unlink()
            for _ in range(3):
                clock.t += 1
                assert not store.verify(leaf, at=utc_now()).ok
        warnings = [e for e in logs if e["log_level"] == "warning"]
        assert [w["problem"].split(":")[0] for w in warnings] == [
            "not a CRL",  # once for the same problem in two versions
            "it is not signed by the key of CN=docbroker test CA,O=docbroker,C=VN",
            "cannot read it",
        ]
        (problem,) = crls.problems(utc_now())
        assert problem.startswith(f"{crl_file}: cannot read it: No such file") and "kept" in problem
        write(crl_file, pki.crl())
        clock.t += 1
        assert store.verify(leaf, at=utc_now()).ok and crls.problems(utc_now()) == []

    def test_out_of_date_is_reported(self, crl_file: Path) -> None:
        old = revoke(pki.ca(), [], days=1, last_update=datetime.now(UTC) - timedelta(days=3))
        write(crl_file, old)
        crls = files(crl_file, Clock())
        (problem,) = crls.problems(utc_now())
        assert "is out of date since" in problem and "unchecked" in problem
        with structlog.testing.capture_logs() as logs:
            crls.say_stale(utc_now())
            crls.say_stale(utc_now())
        assert [e["event"] for e in logs] == [
            "CRL out of date: the revocation of its certificates is unchecked"
        ]

    def test_at_start_an_unusable_file_is_an_error(self, tmp_path: Path) -> None:
        path = tmp_path / "x.crl"
        with pytest.raises(ConfigError, match="cannot read CRL"):
            files(path, Clock())
        path.write_bytes(b"garbage")
        with pytest.raises(ConfigError, match="not a CRL"):
            files(path, Clock())
        path.write_bytes(crl_pem(revoke(make_ca("docbroker test CA"), [])))
        with pytest.raises(ConfigError, match="not signed by the key of"):
            files(path, Clock())
        # a CRL of an issuer not configured (an intermediate) is kept for its chains
        path.write_bytes(crl_pem(empty_crl(make_ca("intermediate", issuer=pki.ca()))))
        assert len(files(path, Clock()).current()) == 1


class TestDefaults:
    def test_the_development_ca_comes_with_its_crl_and_start_needs_it(self, tmp_path: Path) -> None:
        from broker.config import load_settings
        from broker.keys.trust import load_trust

        keys = pki.install_keys(tmp_path)
        settings = load_settings(None, {"DOCBROKER_DATA_DIR": str(tmp_path)})
        trust = load_trust(settings)
        assert trust.store.unchecked_revocation == "refuse" and trust.store.ocsp is None
        assert len(trust.store.crls) == 1
        assert trust.store.verify(pki.agency(SENDER).certificate, at=utc_now()).revocation == "good"
        (keys / "ca.crl.pem").unlink()
        with pytest.raises(ConfigError, match="docbroker keys init"):
            load_trust(settings)
        # a configured CA needs no CRL to start: its certificates are then unchecked
        env = {
            "DOCBROKER_DATA_DIR": str(tmp_path),
            "DOCBROKER_TRUST_CA_FILES": str(keys / "ca.cert.pem"),
        }
        configured = load_trust(load_settings(None, env)).store
        assert configured.crls == ()
        assert not configured.verify(pki.agency(SENDER).certificate, at=utc_now()).ok
