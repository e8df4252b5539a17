"""What signing and verification need, built once: the broker's key material, the trust
store, the policies (loading them from files is broker.keys.trust)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from cryptography import x509

from broker.trust.certs import KeyMaterial, subject_text
from broker.trust.policy import PolicyBook
from broker.trust.store import TrustStore
from broker.trust.xmldsig import BrokerSigner, SignatureVerifier


@dataclass(frozen=True)
class TrustContext:
    """Everything signing and verification need, built once."""

    material: KeyMaterial
    store: TrustStore
    book: PolicyBook
    organ_id: str
    expiry_warning_seconds: float
    signer: BrokerSigner = field(init=False)
    verifier: SignatureVerifier = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "signer", BrokerSigner(self.material))
        object.__setattr__(self, "verifier", SignatureVerifier(self.store))

    def certificates(self) -> list[tuple[str, x509.Certificate]]:
        """(role, certificate) of every certificate docbroker depends on."""
        out = [("broker", self.material.certificate)]
        out += [("chain", c) for c in self.material.chain]
        out += [("ca", c) for c in self.store.roots + self.store.intermediates]
        return out

    def expiring(self, now: datetime) -> list[tuple[str, x509.Certificate]]:
        when = now
        return [
            (role, c)
            for role, c in self.certificates()
            if (c.not_valid_after_utc - when).total_seconds() < self.expiry_warning_seconds
        ]

    def problems_now(self, now: datetime) -> list[str]:
        """Why this material cannot be used at `now` (fail closed), if it cannot."""
        when = now
        out = []
        cert = self.material.certificate
        if cert.not_valid_after_utc < when:
            out.append(
                f"the broker's certificate {subject_text(cert)} expired on "
                f"{cert.not_valid_after_utc:%Y-%m-%d}"
            )
        if cert.not_valid_before_utc > when:
            out.append(
                f"the broker's certificate is not valid before {cert.not_valid_before_utc:%Y-%m-%d}"
            )
        roots = [c for c in self.store.roots if c.not_valid_after_utc > when]
        if not roots:
            out.append("no trusted CA certificate is valid now (trust.ca_files)")
        return out
