"""ChainVerdicts: a client certificate's chain is checked in a worker thread, once per
certificate for a while (every request of a keep-alive connection presents the same
one), never standing past the chain's expiry (issue 16: the check ran on the loop for
each request), nor past a change of the CRLs."""

from __future__ import annotations

import asyncio
import threading
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from adapters.http_api.client_certs import ChainVerdicts
from broker.keys.devpki import Authority, empty_crl, issue, make_ca, revoke
from broker.trust.store import ChainResult, TrustStore

pytestmark = pytest.mark.usefixtures("no_blocking_loop")


class CountingStore(TrustStore):
    """A trust store that notes the thread of each verification."""

    def __init__(self, roots: list[x509.Certificate], crls: Crls) -> None:
        super().__init__(roots, crls=crls)
        self.threads: list[int] = []

    def verify(self, leaf, presented=(), *, at):  # type: ignore[no-untyped-def,override]
        self.threads.append(threading.get_ident())
        return super().verify(leaf, presented, at=at)


class Crls:
    """CRLs that a test replaces (as broker.keys.crlfiles does when a file changes)."""

    def __init__(self, *crls: x509.CertificateRevocationList) -> None:
        self.crls, self.generation = crls, 0

    def current(self) -> tuple[x509.CertificateRevocationList, ...]:
        return self.crls

    def replace(self, *crls: x509.CertificateRevocationList) -> None:
        self.crls, self.generation = crls, self.generation + 1


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0
        self.wall = datetime.now(UTC)

    def __call__(self) -> float:
        return self.t

    def now(self) -> datetime:
        return self.wall + timedelta(seconds=self.t - 1000.0)


@dataclass(frozen=True)
class Certificates:
    authority: Authority
    ca: x509.Certificate
    agency: x509.Certificate
    stranger: x509.Certificate  # from a CA not trusted
    short: x509.Certificate  # valid 10 more seconds


@pytest.fixture(scope="module")
def ca() -> Certificates:
    """The CA and its certificates, made before any test's loop runs (RSA keys)."""
    authority = make_ca("verdicts CA")
    return Certificates(
        authority,
        authority.certificate,
        issue(authority, "agency", uid="000.00.00.H35").certificate,
        issue(make_ca("untrusted CA"), "stranger", uid="x").certificate,
        issue(
            authority,
            "short",
            uid="000.00.00.H35",
            days=1,
            not_before=datetime.now(UTC) - timedelta(days=1) + timedelta(seconds=10),
        ).certificate,
    )


def der_of(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(Encoding.DER)


class TestChainVerdicts:
    async def test_checked_off_the_loop_once_for_many_requests(self, ca: Certificates) -> None:
        """Ten requests with one certificate, five of them at once: one verification,
        in a worker thread; all accepted."""
        store, clock = CountingStore([ca.ca], Crls(empty_crl(ca.authority))), Clock()
        verdicts = ChainVerdicts(store, clock.now, clock=clock)
        cert = ca.agency
        first = await asyncio.gather(*(verdicts.check(der_of(cert), cert) for _ in range(5)))
        then = [await verdicts.check(der_of(cert), cert) for _ in range(5)]
        assert all(r.ok for r in [*first, *then])
        assert len(store.threads) == 1
        assert store.threads[0] != threading.get_ident()

    async def test_a_verdict_stands_for_a_while_only(self, ca: Certificates) -> None:
        """After `seconds` the certificate is checked again (a refusal too)."""
        store, clock = CountingStore([ca.ca], Crls(empty_crl(ca.authority))), Clock()
        verdicts = ChainVerdicts(store, clock.now, seconds=30, clock=clock)
        cert = ca.stranger
        assert not (await verdicts.check(der_of(cert), cert)).ok
        clock.t += 29
        assert not (await verdicts.check(der_of(cert), cert)).ok
        assert len(store.threads) == 1
        clock.t += 2
        assert not (await verdicts.check(der_of(cert), cert)).ok
        assert len(store.threads) == 2

    async def test_an_accepted_chain_is_not_remembered_past_its_expiry(
        self, ca: Certificates
    ) -> None:
        """A certificate valid 10 more seconds is checked again after those 10 s, not
        after `seconds`: then refused."""
        store, clock = CountingStore([ca.ca], Crls(empty_crl(ca.authority))), Clock()
        verdicts = ChainVerdicts(store, clock.now, seconds=30, clock=clock)
        cert = ca.short
        assert (await verdicts.check(der_of(cert), cert)).ok
        clock.t += 12
        result: ChainResult = await verdicts.check(der_of(cert), cert)
        assert not result.ok and len(store.threads) == 2

    async def test_a_crl_read_again_ends_the_verdicts(self, ca: Certificates) -> None:
        """The CRL now revokes the certificate: the next request is checked again, and
        refused, without waiting for `seconds`."""
        crls = Crls(empty_crl(ca.authority))
        store, clock = CountingStore([ca.ca], crls), Clock()
        verdicts = ChainVerdicts(store, clock.now, seconds=30, clock=clock)
        cert = ca.agency
        assert (await verdicts.check(der_of(cert), cert)).ok
        assert (await verdicts.check(der_of(cert), cert)).ok and len(store.threads) == 1
        crls.replace(revoke(ca.authority, [cert]))
        result = await verdicts.check(der_of(cert), cert)
        assert not result.ok and "was revoked" in result.reason and len(store.threads) == 2

    async def test_without_a_crl_refused_unless_the_policy_accepts(self, ca: Certificates) -> None:
        clock = Clock()
        strict = ChainVerdicts(TrustStore([ca.ca]), clock.now, clock=clock)
        refused = await strict.check(der_of(ca.agency), ca.agency)
        assert not refused.ok and refused.reason.startswith("revocation could not be checked")
        lenient = TrustStore([ca.ca], unchecked_revocation="accept")
        accepted = await ChainVerdicts(lenient, clock.now, clock=clock).check(
            der_of(ca.agency), ca.agency
        )
        assert accepted.ok and accepted.revocation == "unchecked"
