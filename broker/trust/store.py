"""The trust store: CA certificates and CRLs, and chain validation.

Chains are built and checked by cryptography's X.509 verification (path
building, validity periods, CA constraints) at a given time; revocation is
checked here for each certificate of the chain but the root, against its issuer's
CRLs (broker.trust.revocation), and, when its issuer has no current one, by the
OCSP responder the certificate names, if a lookup is given (broker.trust.ocsp).
It fails closed: no CA, an expired CA, a revoked certificate, a CRL its issuer did
not sign, an unreadable certificate make the chain untrusted, with the reason; a
revocation that could not be checked does too, unless the policy accepts it
(`unchecked_revocation`) or the caller only records it (`enforce_revocation`).
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Literal, Protocol

from cryptography import x509
from cryptography.x509 import verification

from broker.trust.certs import fingerprint
from broker.trust.revocation import (
    Revocation,
    chain_status,
    crl_status,
    signed_by,
    unchecked_refusal,
)

Unchecked = Literal["refuse", "accept"]


class CrlSource(Protocol):
    """The CRLs in force now; `generation` changes whenever they do."""

    @property
    def generation(self) -> int: ...

    def current(self) -> Sequence[x509.CertificateRevocationList]: ...


class OcspLookup(Protocol):
    """The OCSP verdict on `cert` (issued by `issuer`) at `when`."""

    def __call__(
        self, cert: x509.Certificate, issuer: x509.Certificate, when: datetime
    ) -> Revocation: ...


class FixedCrls:
    """CRLs that never change (given as values)."""

    generation = 0

    def __init__(self, crls: Sequence[x509.CertificateRevocationList]) -> None:
        self._crls = tuple(crls)

    def current(self) -> Sequence[x509.CertificateRevocationList]:
        return self._crls


@dataclass(frozen=True, slots=True)
class ChainResult:
    """Whether a certificate chains to a trusted CA at a time, and why not."""

    ok: bool
    reason: str = ""
    chain: tuple[x509.Certificate, ...] = ()
    # the chain's revocation status: good, unchecked (why in revocation_detail), revoked,
    # refused; "" when the chain failed before revocation was looked at
    revocation: str = ""
    revocation_detail: str = ""  # why unchecked, or what said good ("crl", "ocsp")


def _digital_signature(_policy: object, _cert: x509.Certificate, usage: x509.KeyUsage) -> None:
    if not usage.digital_signature:
        raise ValueError("the certificate's KeyUsage does not allow digitalSignature")


class TrustStore:
    """CA certificates (roots), optional intermediates, CRLs (values, or a source that
    reloads them), an optional OCSP lookup, and what an unchecked revocation does."""

    def __init__(
        self,
        roots: Sequence[x509.Certificate],
        *,
        intermediates: Sequence[x509.Certificate] = (),
        crls: Sequence[x509.CertificateRevocationList] | CrlSource = (),
        ocsp: OcspLookup | None = None,
        unchecked_revocation: Unchecked = "refuse",
    ) -> None:
        self.roots = tuple(roots)
        self.intermediates = tuple(intermediates)
        self.crl_source: CrlSource = (
            FixedCrls(crls) if isinstance(crls, Sequence) else crls  # type: ignore[arg-type]
        )
        self.ocsp = ocsp
        self.unchecked_revocation: Unchecked = unchecked_revocation
        # CRL signatures checked once per (CRL, issuer) of a CRL generation
        self._signed: dict[tuple[int, str], tuple[x509.CertificateRevocationList, bool]] = {}
        self._signed_generation = -1
        self._lock = threading.Lock()
        self._store = verification.Store(list(self.roots)) if self.roots else None
        self._ee_policy = verification.ExtensionPolicy.permit_all().require_present(
            x509.KeyUsage, verification.Criticality.AGNOSTIC, _digital_signature
        )

    @classmethod
    def of(
        cls,
        certificates: Sequence[x509.Certificate],
        crls: Sequence[x509.CertificateRevocationList] | CrlSource = (),
        *,
        ocsp: OcspLookup | None = None,
        unchecked_revocation: Unchecked = "refuse",
    ) -> TrustStore:
        """Roots are the self-signed certificates; the others are intermediates."""
        roots = [c for c in certificates if c.issuer == c.subject]
        intermediates = [c for c in certificates if c.issuer != c.subject]
        return cls(
            roots,
            intermediates=intermediates,
            crls=crls,
            ocsp=ocsp,
            unchecked_revocation=unchecked_revocation,
        )

    @property
    def crls(self) -> tuple[x509.CertificateRevocationList, ...]:
        """The CRLs in force now."""
        return tuple(self.crl_source.current())

    def verify(
        self,
        leaf: x509.Certificate,
        presented: Sequence[x509.Certificate] = (),
        *,
        at: datetime,
        enforce_revocation: bool = True,
    ) -> ChainResult:
        """Check `leaf` (with the intermediates it came with) at time `at`. A revocation
        that could not be checked refuses the chain when `enforce_revocation` and the
        policy is to refuse; otherwise the result says so (`revocation`)."""
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
        status = self.revocation(chain, when)
        if status.state in ("revoked", "refused"):
            return ChainResult(False, status.reason, chain, status.state, status.reason)
        if status.state == "unchecked":
            if enforce_revocation and self.unchecked_revocation == "refuse":
                return ChainResult(
                    False, unchecked_refusal(status.reason), chain, "unchecked", status.reason
                )
            return ChainResult(True, "", chain, "unchecked", status.reason)
        return ChainResult(True, "", chain, "good", status.source)

    def revocation(self, chain: Sequence[x509.Certificate], when: datetime) -> Revocation:
        """The revocation status of a verified chain (leaf first, root last) at `when`."""
        crls = self.crl_source.current()
        links = []
        for cert, issuer in itertools.pairwise(chain):
            link = crl_status(cert, issuer, crls, when, signed=self._signed_by)
            if link.state == "unchecked" and self.ocsp is not None:
                answer = self.ocsp(cert, issuer, when)
                if answer.state != "unchecked":
                    link = answer
                else:
                    link = Revocation("unchecked", f"{link.reason}; {answer.reason}")
            links.append(link)
        return chain_status(links)

    def _signed_by(self, crl: x509.CertificateRevocationList, issuer: x509.Certificate) -> bool:
        """`signed_by`, remembered for the CRLs of the current generation (a large CRL's
        signature costs its hash each time)."""
        key = (id(crl), fingerprint(issuer))
        with self._lock:
            if self._signed_generation != self.crl_source.generation:
                self._signed, self._signed_generation = {}, self.crl_source.generation
            known = self._signed.get(key)
        if known is not None and known[0] is crl:
            return known[1]
        ok = signed_by(crl, issuer)
        with self._lock:
            self._signed[key] = (crl, ok)  # holding the CRL: its id is not reused meanwhile
        return ok

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
