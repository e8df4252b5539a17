"""The trust store: CA certificates and CRLs, and chain validation.

Chains are built and checked by cryptography's X.509 verification (path
building, validity periods, CA constraints) at a given time; revocation is
checked here against the configured CRLs, each verified against its issuer.
It fails closed: no CA, an expired CA or CRL, an unreadable certificate all
make the chain untrusted, with the reason.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from cryptography import x509
from cryptography.x509 import verification

from broker.trust.certs import subject_text


@dataclass(frozen=True, slots=True)
class ChainResult:
    """Whether a certificate chains to a trusted CA at a time, and why not."""

    ok: bool
    reason: str = ""
    chain: tuple[x509.Certificate, ...] = ()


def _digital_signature(_policy: object, _cert: x509.Certificate, usage: x509.KeyUsage) -> None:
    if not usage.digital_signature:
        raise ValueError("the certificate's KeyUsage does not allow digitalSignature")


class TrustStore:
    """CA certificates (roots), optional intermediates, and CRLs."""

    def __init__(
        self,
        roots: Sequence[x509.Certificate],
        *,
        intermediates: Sequence[x509.Certificate] = (),
        crls: Sequence[x509.CertificateRevocationList] = (),
    ) -> None:
        self.roots = tuple(roots)
        self.intermediates = tuple(intermediates)
        self.crls = tuple(crls)
        self._store = verification.Store(list(self.roots)) if self.roots else None
        self._ee_policy = verification.ExtensionPolicy.permit_all().require_present(
            x509.KeyUsage, verification.Criticality.AGNOSTIC, _digital_signature
        )

    @classmethod
    def of(
        cls,
        certificates: Sequence[x509.Certificate],
        crls: Sequence[x509.CertificateRevocationList] = (),
    ) -> TrustStore:
        """Roots are the self-signed certificates; the others are intermediates."""
        roots = [c for c in certificates if c.issuer == c.subject]
        intermediates = [c for c in certificates if c.issuer != c.subject]
        return cls(roots, intermediates=intermediates, crls=crls)

    def verify(
        self,
        leaf: x509.Certificate,
        presented: Sequence[x509.Certificate] = (),
        *,
        at: datetime,
    ) -> ChainResult:
        """Check `leaf` (with the intermediates it came with) at time `at`."""
        if self._store is None:
            return ChainResult(False, "no trusted CA is configured (trust.ca_files)")
        when = at
        verifier = (
            verification.PolicyBuilder()
            .store(self._store)
            .time(when)
            .extension_policies(
                ee_policy=self._ee_policy,
                ca_policy=verification.ExtensionPolicy.webpki_defaults_ca(),
            )
            .build_client_verifier()
        )
        try:
            verified = verifier.verify(leaf, [*presented, *self.intermediates])
        except verification.VerificationError as exc:
            return ChainResult(False, _chain_reason(leaf, when, str(exc)))
        except ValueError as exc:  # a malformed extension met while verifying
            return ChainResult(False, f"certificate unreadable: {exc}")
        chain = tuple(verified.chain)
        revoked = self._revocation_problem(chain, when)
        if revoked:
            return ChainResult(False, revoked, chain)
        return ChainResult(True, "", chain)

    def _revocation_problem(self, chain: Sequence[x509.Certificate], when: datetime) -> str:
        for cert, issuer in itertools.pairwise(chain):
            for crl in self.crls:
                if crl.issuer != issuer.subject:
                    continue
                if not crl.is_signature_valid(issuer.public_key()):  # type: ignore[arg-type]
                    return f"the CRL of {subject_text(issuer)} has an invalid signature"
                if crl.next_update_utc is not None and crl.next_update_utc < when:
                    return (
                        f"the CRL of {subject_text(issuer)} expired on "
                        f"{crl.next_update_utc:%Y-%m-%d}: revocation status unknown"
                    )
                entry = crl.get_revoked_certificate_by_serial_number(cert.serial_number)
                if entry is not None:
                    return (
                        f"certificate {subject_text(cert)} was revoked on "
                        f"{entry.revocation_date_utc:%Y-%m-%d}"
                    )
        return ""

    def expiring(self, within_seconds: float, now: datetime) -> list[x509.Certificate]:
        when = now
        return [
            c
            for c in (*self.roots, *self.intermediates)
            if (c.not_valid_after_utc - when).total_seconds() < within_seconds
        ]


def _chain_reason(leaf: x509.Certificate, when: datetime, detail: str) -> str:
    if when > leaf.not_valid_after_utc:
        return f"certificate expired on {leaf.not_valid_after_utc:%Y-%m-%d}"
    if when < leaf.not_valid_before_utc:
        return f"certificate not valid before {leaf.not_valid_before_utc:%Y-%m-%d}"
    return f"certificate not trusted: {detail}"
