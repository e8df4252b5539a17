"""OCSP against a real responder (openssl ocsp): good, revoked, unknown, a responder
that does not answer, under both policies; answers cached; what is believed (pure
checks of answers made here); and no call on the event loop."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509 import ocsp

from adapters.http_api.client_certs import ChainVerdicts
from broker.clock import utc_now
from broker.keys.devpki import Authority, issue, make_ca
from broker.keys.ocsp_client import OcspClient, http_post
from broker.trust.certs import KeyMaterial
from broker.trust.ocsp import check_response, responder_url
from broker.trust.policy import PolicyBook, SenderPolicy
from broker.trust.sender import check_sender
from broker.trust.store import TrustStore
from broker.trust.xmldsig import SignatureVerifier
from tests.edxml_samples import full_document
from tests.trust.ocsp_responder import free_port, openssl_responder, silent_responder
from tests.trust.signing import sign_as_sender
from tests.trust.test_revocation import V

SENDER = "000.00.00.H35"


@dataclass(frozen=True)
class Pki:
    ca: Authority
    good: KeyMaterial
    revoked: KeyMaterial
    unknown: KeyMaterial  # not in the responder's index
    silent: KeyMaterial  # names a responder that never answers
    url: str


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pki]:
    ca = make_ca("OCSP test CA")
    port = free_port()
    url = f"http://127.0.0.1:{port}/"
    good, revoked, unknown = (issue(ca, n, uid=SENDER, ocsp_url=url) for n in "GRU")
    with silent_responder() as nowhere:
        silent = issue(ca, "S", uid=SENDER, ocsp_url=nowhere)
        folder = tmp_path_factory.mktemp("ocsp")
        with openssl_responder(
            folder, ca, [good.certificate], [revoked.certificate], port=port
        ) as responder:
            assert responder.url == url
            yield Pki(ca, good, revoked, unknown, silent, url)


class Counting(OcspClient):
    """The real client (HTTP to the responder), counting its requests."""

    def __init__(self, timeout: float = 3.0, max_age: float = 600.0) -> None:
        self.posts = 0

        def post(url: str, body: bytes, timeout: float) -> bytes:
            self.posts += 1
            return http_post(url, body, timeout)

        super().__init__(timeout, max_age, post=post)


def store(pki: Pki, client: OcspClient, unchecked: str = "refuse") -> TrustStore:
    return TrustStore([pki.ca.certificate], ocsp=client, unchecked_revocation=unchecked)  # type: ignore[arg-type]


class TestAgainstOpensslResponder:
    def test_the_url_is_the_certificates(self, pki: Pki) -> None:
        assert responder_url(pki.good.certificate) == pki.url
        assert responder_url(pki.ca.certificate) is None

    def test_good_and_cached(self, pki: Pki) -> None:
        client = Counting()
        result = store(pki, client).verify(pki.good.certificate, at=utc_now())
        assert result.ok and (result.revocation, result.revocation_detail) == ("good", "ocsp")
        assert store(pki, client).verify(pki.good.certificate, at=utc_now()).ok
        assert client.posts == 1, "kept until the answer's nextUpdate"
        later = utc_now() + timedelta(minutes=6)  # past it (openssl -nmin 5)
        store(pki, client).verify(pki.good.certificate, at=later)
        assert client.posts == 2

    def test_revoked_whatever_the_policy(self, pki: Pki) -> None:
        for unchecked in ("refuse", "accept"):
            result = store(pki, Counting(), unchecked).verify(pki.revoked.certificate, at=utc_now())
            assert not result.ok and result.revocation == "revoked"
            assert "was revoked on" in result.reason and "(OCSP)" in result.reason

    def test_unknown_is_unchecked(self, pki: Pki) -> None:
        refused = store(pki, Counting()).verify(pki.unknown.certificate, at=utc_now())
        assert not refused.ok and "the responder does not know the certificate" in refused.reason
        assert "no CRL of CN=OCSP test CA" in refused.reason
        accepted = store(pki, Counting(), "accept").verify(pki.unknown.certificate, at=utc_now())
        assert accepted.ok and accepted.revocation == "unchecked"

    def test_a_responder_that_does_not_answer(self, pki: Pki) -> None:
        client = Counting(timeout=0.5)
        started = time.monotonic()
        refused = store(pki, client).verify(pki.silent.certificate, at=utc_now())
        assert 0.4 < time.monotonic() - started < 5
        assert not refused.ok and "did not answer (timed out)" in refused.reason
        started = time.monotonic()
        accepted = store(pki, client, "accept").verify(pki.silent.certificate, at=utc_now())
        assert time.monotonic() - started < 0.3, "a failure is remembered a while"
        assert accepted.ok and "did not answer" in accepted.revocation_detail
        assert client.posts == 1

    def test_a_required_signature_checked_by_ocsp(self, pki: Pki) -> None:
        verifier = SignatureVerifier(store(pki, Counting()))
        book = PolicyBook(SenderPolicy("required"))
        for material, outcome in ((pki.good, "valid"), (pki.revoked, "invalid")):
            data = sign_as_sender(full_document(), material)
            check = check_sender(data, V.check(data), verifier, book, at=utc_now())
            assert check.outcome == outcome
            assert check.audit()["revocation"] == ("good" if outcome == "valid" else "revoked")

    def test_the_issuer_itself_may_answer(self, pki: Pki, tmp_path: Path) -> None:
        port = free_port()
        leaf = issue(pki.ca, "by the CA", ocsp_url=f"http://127.0.0.1:{port}/")
        with openssl_responder(tmp_path, pki.ca, [leaf.certificate], [], signer=pki.ca, port=port):
            assert store(pki, Counting()).verify(leaf.certificate, at=utc_now()).ok

    async def test_client_certificates_are_checked_off_the_event_loop(
        self, pki: Pki, no_blocking_loop: None
    ) -> None:
        """A responder that does not answer for 0.5 s blocks a worker thread, not the loop."""
        verdicts = ChainVerdicts(store(pki, Counting(timeout=0.5)), utc_now)
        der = pki.silent.certificate.public_bytes(Encoding.DER)
        checking = asyncio.ensure_future(verdicts.check(der, pki.silent.certificate))
        ticks = 0
        while not checking.done():
            await asyncio.sleep(0.05)
            ticks += 1
        assert not checking.result().ok and ticks >= 5


def answer(
    ca: Authority,
    cert: x509.Certificate,
    *,
    signer: KeyMaterial | Authority | None = None,
    status: ocsp.OCSPCertStatus = ocsp.OCSPCertStatus.GOOD,
    this_update: datetime | None = None,
    next_update: datetime | None = None,
    nonce: bytes | None = None,
) -> bytes:
    """An OCSP answer made here (for what a real responder would not send)."""
    signer = signer or ca
    this_update = this_update or datetime.now(UTC) - timedelta(minutes=1)
    builder = ocsp.OCSPResponseBuilder().add_response(
        cert=cert,
        issuer=ca.certificate,
        algorithm=hashes.SHA1(),
        cert_status=status,
        this_update=this_update,
        next_update=next_update,
        revocation_time=None,
        revocation_reason=None,
    )
    builder = builder.responder_id(ocsp.OCSPResponderEncoding.HASH, signer.certificate)
    if signer is not ca:
        builder = builder.certificates([signer.certificate])
    if nonce:
        builder = builder.add_extension(x509.OCSPNonce(nonce), critical=False)
    return builder.sign(signer.key, hashes.SHA256()).public_bytes(Encoding.DER)


class TestWhatIsBelieved:
    def verdict(self, pki: Pki, der: bytes, *, nonce: bytes | None = None, **kw):
        return check_response(
            der,
            pki.good.certificate,
            pki.ca.certificate,
            kw.pop("at", utc_now()),
            nonce=nonce,
            max_age=timedelta(hours=1),
        ).revocation

    def test_signed_by_the_issuer_or_its_delegate(self, pki: Pki) -> None:
        delegate = issue(pki.ca, "responder", ocsp_signing=True)
        for signer in (pki.ca, delegate):
            assert self.verdict(pki, answer(pki.ca, pki.good.certificate, signer=signer)).state == (
                "good"
            )

    def test_refused_signers(self, pki: Pki) -> None:
        cert = pki.good.certificate
        not_for_ocsp = issue(pki.ca, "a client certificate")
        stranger = issue(make_ca("another CA"), "responder", ocsp_signing=True)
        cases = {
            "is not for OCSP signing": not_for_ocsp,
            "is not issued by the certificate's issuer": stranger,
        }
        for why, signer in cases.items():
            verdict = self.verdict(pki, answer(pki.ca, cert, signer=signer))
            assert verdict.state == "unchecked" and why in verdict.reason

    def test_nonce_times_and_the_certificate(self, pki: Pki) -> None:
        cert, now = pki.good.certificate, datetime.now(UTC)
        echoed = answer(pki.ca, cert, nonce=b"n" * 16)
        assert self.verdict(pki, echoed, nonce=b"n" * 16).state == "good"
        assert "nonce" in self.verdict(pki, echoed, nonce=b"x" * 16).reason
        assert self.verdict(pki, answer(pki.ca, cert), nonce=b"x" * 16).state == "good"
        stale = answer(
            pki.ca, cert, this_update=now - timedelta(days=2), next_update=now - timedelta(days=1)
        )
        assert "out of date" in self.verdict(pki, stale).reason
        future = answer(pki.ca, cert, this_update=now + timedelta(hours=1))
        assert "in the future" in self.verdict(pki, future).reason
        other = answer(pki.ca, pki.revoked.certificate)
        assert "not about this certificate" in self.verdict(pki, other).reason
        assert "unreadable" in self.verdict(pki, b"\x30\x03garbage").reason
