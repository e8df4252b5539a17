"""Key material and the trust store: loading, chains, expiry, revocation, fail closed."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.serialization import (
    BestAvailableEncryption,
    NoEncryption,
    pkcs12,
)

from broker.clock import utc_now
from broker.core.errors import ConfigError
from broker.keys.devpki import cert_pem, empty_crl, issue, key_pem, make_ca, revoke
from broker.keys.files import write_private
from broker.keys.pem import load_key_material
from broker.trust.certs import fingerprint, subject_uid
from broker.trust.store import TrustStore
from tests import pki


class TestLoading:
    def test_pem_key_and_certificate(self, tmp_path: Path) -> None:
        m = pki.agency("A.1")
        write_private(tmp_path / "k.pem", key_pem(m.key))
        (tmp_path / "c.pem").write_bytes(cert_pem(m.certificate, pki.ca().certificate))
        loaded = load_key_material(tmp_path / "k.pem", tmp_path / "c.pem", None)
        assert fingerprint(loaded.certificate) == fingerprint(m.certificate)
        assert loaded.chain == (pki.ca().certificate,)
        assert loaded.algorithm == "rsa-sha256"

    def test_encrypted_key_needs_its_passphrase(self, tmp_path: Path) -> None:
        m = pki.agency("A.1")
        write_private(tmp_path / "k.pem", key_pem(m.key, b"s3cret"))
        (tmp_path / "c.pem").write_bytes(cert_pem(m.certificate))
        with pytest.raises(ConfigError, match="encrypted: give its passphrase"):
            load_key_material(tmp_path / "k.pem", tmp_path / "c.pem", None)
        with pytest.raises(ConfigError, match="cannot load the private key"):
            load_key_material(tmp_path / "k.pem", tmp_path / "c.pem", b"wrong")
        assert load_key_material(tmp_path / "k.pem", tmp_path / "c.pem", b"s3cret")

    def test_pkcs12(self, tmp_path: Path) -> None:
        m = pki.agency("A.2", "ec")
        p12 = pkcs12.serialize_key_and_certificates(
            b"a", m.key, m.certificate, [pki.ca().certificate], BestAvailableEncryption(b"pw")
        )
        write_private(tmp_path / "a.p12", p12)
        loaded = load_key_material(tmp_path / "a.p12", None, b"pw")
        assert loaded.algorithm == "ecdsa-sha256"
        assert subject_uid(loaded.certificate) == "A.2"
        plain = pkcs12.serialize_key_and_certificates(
            b"a", m.key, m.certificate, None, NoEncryption()
        )
        write_private(tmp_path / "b.p12", plain)
        assert load_key_material(tmp_path / "b.p12", None, None).chain == ()

    def test_certificate_of_another_key_is_refused(self, tmp_path: Path) -> None:
        write_private(tmp_path / "k.pem", key_pem(pki.agency("A.1").key))
        (tmp_path / "c.pem").write_bytes(cert_pem(pki.agency("B.1").certificate))
        with pytest.raises(ConfigError, match="does not belong to this private key"):
            load_key_material(tmp_path / "k.pem", tmp_path / "c.pem", None)

    def test_a_key_every_user_may_read_is_refused(self, tmp_path: Path) -> None:
        m = pki.agency("A.1")
        (tmp_path / "k.pem").write_bytes(key_pem(m.key))
        (tmp_path / "k.pem").chmod(0o644)
        (tmp_path / "c.pem").write_bytes(cert_pem(m.certificate))
        with pytest.raises(
            ConfigError, match=r"may be read or written by every user \(mode 0644\)"
        ):
            load_key_material(tmp_path / "k.pem", tmp_path / "c.pem", None)

    def test_missing_and_garbage_files(self, tmp_path: Path) -> None:
        with pytest.raises(ConfigError, match="cannot read the private key"):
            load_key_material(tmp_path / "nope.pem", None, None)
        write_private(tmp_path / "g.pem", b"garbage")
        with pytest.raises(ConfigError, match="cannot load the private key"):
            load_key_material(tmp_path / "g.pem", tmp_path / "g.pem", None)


def store(*crls, **kw) -> TrustStore:
    """The test CA with its (empty) CRL, and `crls`."""
    return TrustStore([pki.ca().certificate], crls=[pki.crl(), *crls], **kw)


class TestTrustStore:
    def test_chain_to_the_ca(self) -> None:
        result = store().verify(pki.agency("A.1").certificate, at=utc_now())
        assert result.ok and (result.revocation, result.revocation_detail) == ("good", "crl")

    def test_through_an_intermediate_presented_or_configured(self) -> None:
        inter = make_ca("intermediate", issuer=pki.ca())
        leaf = issue(inter, "commune", uid="C.1").certificate
        both = store(empty_crl(inter))
        assert both.verify(leaf, [inter.certificate], at=utc_now()).ok
        configured = TrustStore(
            [pki.ca().certificate],
            intermediates=[inter.certificate],
            crls=[pki.crl(), empty_crl(inter)],
        )
        assert configured.verify(leaf, at=utc_now()).ok
        assert not both.verify(leaf, at=utc_now()).ok
        # the root's CRL says nothing of what the intermediate issued
        unchecked = store().verify(leaf, [inter.certificate], at=utc_now())
        assert not unchecked.ok and "no CRL of CN=intermediate" in unchecked.reason

    def test_untrusted_ca(self) -> None:
        leaf = issue(pki.other_ca(), "x", uid="X").certificate
        result = store().verify(leaf, at=utc_now())
        assert not result.ok and "not trusted" in result.reason

    def test_expired_and_not_yet_valid(self) -> None:
        assert "expired on" in store().verify(pki.expired("E.1").certificate, at=utc_now()).reason
        future = issue(pki.ca(), "f", not_before=datetime.now(UTC) + timedelta(days=3))
        assert "not valid before" in store().verify(future.certificate, at=utc_now()).reason

    def test_revoked(self) -> None:
        leaf = issue(pki.ca(), "revoked", uid="R.1").certificate
        revoking = TrustStore([pki.ca().certificate], crls=[revoke(pki.ca(), [leaf])])
        result = revoking.verify(leaf, at=utc_now())
        assert not result.ok and "revoked" in result.reason and result.revocation == "revoked"
        assert revoking.verify(pki.agency("A.1").certificate, at=utc_now()).ok
        lenient = TrustStore(
            [pki.ca().certificate], crls=[revoke(pki.ca(), [leaf])], unchecked_revocation="accept"
        )
        assert not lenient.verify(leaf, at=utc_now(), enforce_revocation=False).ok

    def test_an_expired_crl_leaves_revocation_unchecked(self) -> None:
        """Refused under the default policy, accepted and said under "accept"; what it
        revoked stays revoked."""
        old = revoke(pki.ca(), [], days=1, last_update=datetime.now(UTC) - timedelta(days=5))
        leaf = pki.agency("A.1").certificate
        result = TrustStore([pki.ca().certificate], crls=[old]).verify(leaf, at=utc_now())
        assert not result.ok and result.revocation == "unchecked"
        assert result.reason.startswith("revocation could not be checked (the CRL of CN=docbroker")
        assert "is out of date" in result.reason and "trust.crl_files" in result.reason
        lenient = TrustStore([pki.ca().certificate], crls=[old], unchecked_revocation="accept")
        accepted = lenient.verify(leaf, at=utc_now())
        assert accepted.ok and accepted.revocation == "unchecked"
        assert "is out of date" in accepted.revocation_detail
        gone = issue(pki.ca(), "gone", uid="G.1").certificate
        stale = revoke(pki.ca(), [gone], days=1, last_update=datetime.now(UTC) - timedelta(days=5))
        lenient = TrustStore([pki.ca().certificate], crls=[stale], unchecked_revocation="accept")
        assert "was revoked" in lenient.verify(gone, at=utc_now()).reason

    def test_no_crl_refused_or_accepted_by_policy(self) -> None:
        leaf = pki.agency("A.1").certificate
        bare = TrustStore([pki.ca().certificate])
        refused = bare.verify(leaf, at=utc_now())
        assert not refused.ok and "no CRL of CN=docbroker test CA" in refused.reason
        recorded = bare.verify(leaf, at=utc_now(), enforce_revocation=False)
        assert recorded.ok and recorded.revocation == "unchecked"
        accepted = TrustStore([pki.ca().certificate], unchecked_revocation="accept")
        assert accepted.verify(leaf, at=utc_now()).ok

    def test_a_crl_not_signed_by_its_issuer_fails_closed(self) -> None:
        forged = revoke(make_ca("docbroker test CA"), [])  # same name, other key
        result = TrustStore([pki.ca().certificate], crls=[forged]).verify(
            pki.agency("A.1").certificate, at=utc_now(), enforce_revocation=False
        )
        assert not result.ok and "invalid signature" in result.reason
        # beside the CA's own CRL, a forged one changes nothing
        assert store(forged).verify(pki.agency("A.1").certificate, at=utc_now()).ok

    def test_no_ca_fails_closed(self) -> None:
        result = TrustStore([]).verify(pki.agency("A.1").certificate, at=utc_now())
        assert not result.ok and "no trusted CA" in result.reason

    def test_an_expired_ca_fails_closed(self) -> None:
        old_ca = make_ca("old", days=10, not_before=datetime.now(UTC) - timedelta(days=20))
        leaf = issue(old_ca, "leaf", not_before=datetime.now(UTC) - timedelta(days=19), days=5)
        assert (
            not TrustStore([old_ca.certificate], unchecked_revocation="accept")
            .verify(leaf.certificate, at=utc_now())
            .ok
        )
