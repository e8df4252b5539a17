"""Reading key, certificate and CRL files (PEM, DER or PKCS#12) into broker.trust values."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from cryptography import x509

from broker.core.errors import ConfigError
from broker.keys.secrets import read_private
from broker.trust.certs import (
    KeyMaterial,
    key_material,
    parse_certificates,
    parse_crl,
    parse_pem_key,
    parse_pkcs12,
)
from broker.trust.store import TrustStore


def read(path: Path, what: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read {what} {path}: {exc.strerror or exc}") from None


def load_certificates(path: Path) -> list[x509.Certificate]:
    """Every certificate in a PEM file (or one DER certificate)."""
    return parse_certificates(read(path, "certificate file"), str(path))


def load_crl(path: Path) -> x509.CertificateRevocationList:
    return parse_crl(read(path, "CRL"), str(path))


def load_key_material(
    key_path: Path, cert_path: Path | None, passphrase: bytes | None
) -> KeyMaterial:
    """A key and its certificate: PKCS#12 (.p12/.pfx: one file holds both) or PEM."""
    data = read_private(key_path, "the private key")
    if key_path.suffix.lower() in (".p12", ".pfx"):
        return parse_pkcs12(data, passphrase, str(key_path))
    key = parse_pem_key(data, passphrase, str(key_path))
    if cert_path is None:
        raise ConfigError(f"{key_path}: a PEM key needs keys.certificate")
    return key_material(key, load_certificates(cert_path), str(key_path))


def trust_store_from_files(
    ca_files: Sequence[Path],
    crl_files: Sequence[Path] = (),
    *,
    unchecked_revocation: str = "refuse",
) -> TrustStore:
    """The trust store of these CA files (roots: the self-signed ones) and CRLs, read
    once (a command's; the daemon's are kept current: broker.keys.trust)."""
    certificates = [c for path in ca_files for c in load_certificates(path)]
    return TrustStore.of(
        certificates,
        [load_crl(p) for p in crl_files],
        unchecked_revocation="accept" if unchecked_revocation == "accept" else "refuse",
    )
