"""Trust material loaded once at start: the broker's key, the trust store, policies."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from cryptography import x509

from broker.config import Settings
from broker.core.errors import ConfigError
from broker.trust.certs import KeyMaterial, load_key_material, subject_text
from broker.trust.policy import PolicyBook, SenderPolicy
from broker.trust.store import TrustStore
from broker.trust.xmldsig import BrokerSigner, SignatureVerifier

DEV_HINT = "for development keys run: docbroker keys init"


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

    def expiring(self, now: datetime | None = None) -> list[tuple[str, x509.Certificate]]:
        when = now or datetime.now(UTC)
        return [
            (role, c)
            for role, c in self.certificates()
            if (c.not_valid_after_utc - when).total_seconds() < self.expiry_warning_seconds
        ]

    def problems_now(self, now: datetime | None = None) -> list[str]:
        """Why this material cannot be used now (fail closed), if it cannot."""
        when = now or datetime.now(UTC)
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


def _passphrase(settings: Settings) -> bytes | None:
    keys = settings.keys
    if keys.passphrase_file:
        try:
            return Path(keys.passphrase_file).read_bytes().strip()
        except OSError as exc:
            raise ConfigError(f"cannot read keys.passphrase_file: {exc.strerror}") from None
    value = os.environ.get(keys.passphrase_env) if keys.passphrase_env else None
    return value.encode() if value else None


def load_trust(settings: Settings) -> TrustContext:
    """Load the broker's key and certificate, the CAs and CRLs, and the policies."""
    key_path = settings.key_file(settings.keys.private_key, "broker.key.pem")
    cert_path = settings.key_file(settings.keys.certificate, "broker.cert.pem")
    if not key_path.exists():
        raise ConfigError(f"the broker's private key {key_path} does not exist; {DEV_HINT}")
    material = load_key_material(
        key_path,
        None if key_path.suffix.lower() in (".p12", ".pfx") else cert_path,
        _passphrase(settings),
    )
    trust = settings.trust
    ca_files = settings.trusted_ca_files
    missing = [str(p) for p in ca_files if not p.exists()]
    if missing:
        raise ConfigError(f"trusted CA file(s) missing: {', '.join(missing)}; {DEV_HINT}")
    store = TrustStore.from_files(ca_files, [Path(p) for p in trust.crl_files])
    if not store.roots:
        raise ConfigError(f"no self-signed CA certificate in {', '.join(map(str, ca_files))}")
    book = PolicyBook(
        SenderPolicy(trust.default_policy, trust.allow_legacy_sha1), {}, trust.bind_by_subject_uid
    )
    context = TrustContext(
        material, store, book, settings.organ_id, settings.keys.expiry_warning_days * 86400.0
    )
    problems = context.problems_now()
    if problems:
        raise ConfigError("trust material cannot be used: " + "; ".join(problems))
    return context
