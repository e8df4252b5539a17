"""Loading keys and certificates (PEM or PKCS#12), and facts about certificates.

Keys are loaded once at start: parsing an RSA key costs ~29 ms, using a loaded
one ~0.5 ms per signature.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import NameOID

from broker.core.errors import ConfigError

PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey


@dataclass(frozen=True)
class KeyMaterial:
    """A private key with its certificate and the chain up to (not including) a root."""

    key: PrivateKey
    certificate: x509.Certificate
    chain: tuple[x509.Certificate, ...] = ()

    @property
    def algorithm(self) -> str:
        """The XML-DSig signature method this key signs with."""
        return "ecdsa-sha256" if isinstance(self.key, ec.EllipticCurvePrivateKey) else "rsa-sha256"


def fingerprint(cert: x509.Certificate) -> str:
    """SHA-256 of the DER certificate, lower-case hex (how bindings name certificates)."""
    return hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).hexdigest()


def subject_text(cert: x509.Certificate) -> str:
    try:
        return cert.subject.rfc4514_string()
    except ValueError:
        return "<unreadable subject>"


def subject_uid(cert: x509.Certificate) -> str | None:
    """The subject's UID attribute: docbroker's certificates carry the agency code there."""
    try:
        attrs = cert.subject.get_attributes_for_oid(NameOID.USER_ID)
    except ValueError:
        return None
    return str(attrs[0].value) if attrs else None


def seconds_left(cert: x509.Certificate, now: datetime | None = None) -> float:
    return (cert.not_valid_after_utc - (now or datetime.now(UTC))).total_seconds()


def _read(path: Path, what: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read {what} {path}: {exc.strerror or exc}") from None


def load_certificates(path: Path) -> list[x509.Certificate]:
    """Every certificate in a PEM file (or one DER certificate)."""
    data = _read(path, "certificate file")
    try:
        if b"-----BEGIN" in data:
            return x509.load_pem_x509_certificates(data)
        return [x509.load_der_x509_certificate(data)]
    except ValueError as exc:
        raise ConfigError(f"{path}: not a certificate file: {exc}") from None


def load_crl(path: Path) -> x509.CertificateRevocationList:
    data = _read(path, "CRL")
    try:
        if b"-----BEGIN" in data:
            return x509.load_pem_x509_crl(data)
        return x509.load_der_x509_crl(data)
    except ValueError as exc:
        raise ConfigError(f"{path}: not a CRL: {exc}") from None


def load_key_material(
    key_path: Path, cert_path: Path | None, passphrase: bytes | None
) -> KeyMaterial:
    """A key and its certificate: PKCS#12 (.p12/.pfx: one file holds both) or PEM."""
    data = _read(key_path, "private key")
    if key_path.suffix.lower() in (".p12", ".pfx"):
        try:
            key, cert, extra = pkcs12.load_key_and_certificates(data, passphrase)
        except ValueError as exc:
            raise ConfigError(f"{key_path}: cannot open the PKCS#12 file: {exc}") from None
        if key is None or cert is None:
            raise ConfigError(f"{key_path}: the PKCS#12 file needs a key and a certificate")
        return _checked(key, cert, tuple(extra or ()), key_path)
    try:
        key = serialization.load_pem_private_key(data, passphrase)
    except TypeError:
        raise ConfigError(
            f"{key_path}: the key is encrypted: give its passphrase (keys.passphrase_file "
            "or the variable named by keys.passphrase_env)"
        ) from None
    except ValueError as exc:
        raise ConfigError(f"{key_path}: cannot load the private key: {exc}") from None
    if cert_path is None:
        raise ConfigError(f"{key_path}: a PEM key needs keys.certificate")
    certs = load_certificates(cert_path)
    return _checked(key, certs[0], tuple(certs[1:]), key_path)


def _checked(
    key: object, cert: x509.Certificate, chain: Sequence[x509.Certificate], where: Path
) -> KeyMaterial:
    if isinstance(key, ed25519.Ed25519PrivateKey) or not isinstance(
        key, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey
    ):
        raise ConfigError(f"{where}: only RSA and ECDSA keys sign edXML envelopes")
    pub = serialization.PublicFormat.SubjectPublicKeyInfo
    enc = serialization.Encoding.DER
    if key.public_key().public_bytes(enc, pub) != cert.public_key().public_bytes(enc, pub):
        raise ConfigError(f"{where}: the certificate does not belong to this private key")
    return KeyMaterial(key, cert, tuple(chain))
